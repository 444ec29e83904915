// COCO detection metrics with pycocotools' COCOeval algorithm: per image and category, detections
// sorted by score (top 100) are matched greedily to the best unmatched ground truth at each IoU
// threshold .50:.05:.95 (crowd regions may match many, and matches with ignored ground truth are
// ignored); precision is made monotone and read at 101 recall points; AP averages over thresholds,
// categories and recall points, for all sizes and for small/medium/large by the annotation's area.
#pragma once
#include <array>
#include <vector>

#include "maskrcnn/coco.h"

namespace mrcnn::detection {

struct EvalDetection {
  int64_t image_id = 0, category_id = 0;
  std::array<double, 4> bbox{};  // x, y, w, h
  double score = 0;
  Rle segmentation;              // for segm evaluation, at the image's size
};

// stats: AP, AP50, AP75, AP small, AP medium, AP large (-1 where no ground truth qualifies), as
// COCOeval.summarize prints them first.
struct CocoEvalResult {
  std::array<double, 6> stats{};
};

// Detections in COCO results format (what `mrcnn predict` writes): a JSON list of {image_id,
// category_id, bbox, score, segmentation: {size, counts}}; `segmentation` is optional for bbox
// evaluation. An entry with a "file_name" (as `mrcnn predict` writes) is matched to the truth image
// of that name and its image_id ignored. Errors name the file and the entry.
std::vector<EvalDetection> parse_results(const std::string& json_text, const std::string& name, const CocoDataset& truth);

enum class IouType { Bbox, Segm };
CocoEvalResult coco_evaluate(const CocoDataset& truth, const std::vector<EvalDetection>& detections, IouType type);

// IoU of two masks; with crowd truth, intersection over the detection's area (pycocotools' rule).
double rle_iou(const Rle& detection, const Rle& truth, bool crowd);

}  // namespace mrcnn::detection
