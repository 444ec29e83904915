// COCO-format datasets as the Make Sense labelling tool exports them: images, polygon (or RLE)
// annotations with float xywh boxes, categories. Category ids map to contiguous labels 1..K in id
// order; images without annotations stay in the set as negatives. Structural problems (not JSON,
// missing keys, wrong types) are fatal errors naming the file and the entry; unusable annotations
// (polygon with < 3 points, zero area, box outside the image, unknown category) are skipped, each
// with one warning line, and counted.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "maskrcnn/image_list.h"
#include "maskrcnn/rle.h"

namespace mrcnn::detection {

struct CocoCategory {
  int64_t id = 0;
  std::string name;
};

struct CocoAnnotation {
  int64_t id = 0, category_id = 0, label = 0;  // label: 1..K
  std::array<double, 4> bbox{};                // x, y, w, h in pixels
  double area = 0;                              // the JSON's "area" (COCO evaluation's size ranges use it)
  bool iscrowd = false;
  std::vector<std::vector<double>> polygons;    // each [x0, y0, x1, y1, ...]
  Rle rle;                                       // used when polygons is empty
};

struct CocoImage {
  int64_t id = 0, width = 0, height = 0;
  std::string file_name;
  std::vector<CocoAnnotation> annotations;
};

struct CocoDataset {
  std::vector<CocoImage> images;
  std::vector<CocoCategory> categories;  // by label - 1
  std::vector<std::string> warnings;     // one line per skipped annotation
};

CocoDataset load_coco(const std::string& path);
CocoDataset parse_coco(const std::string& json_text, const std::string& name);  // name: for messages

// The annotation's mask (its polygons' union, or its RLE) at the image's size, row-major bytes.
std::vector<uint8_t> annotation_mask(const CocoAnnotation& annotation, int64_t height, int64_t width);
// Training target of an image: boxes (x1, y1, x2, y2), labels, masks; crowd annotations left out.
Target coco_target(const CocoImage& image);

// Patient-grouped split of a COCO JSON: images are grouped by the first capture group of
// `group_regex` on their file_name (the whole match without one); groups, in an order shuffled from
// `seed`, go to val until it holds at least val_fraction of the images. No group is in both halves.
// Other top-level keys (info, licenses, categories) are kept in both. Errors name unmatched files.
struct CocoSplit {
  std::string train_json, val_json;
  int64_t train_groups = 0, val_groups = 0, train_images = 0, val_images = 0;
};
CocoSplit split_coco(const std::string& json_text, const std::string& name, double val_fraction,
                     const std::string& group_regex, uint64_t seed);

}  // namespace mrcnn::detection
