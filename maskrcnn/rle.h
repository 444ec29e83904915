// COCO run-length encoding of binary masks, as pycocotools writes it: runs over the mask in
// column-major order starting with a run of zeros, and the compressed string form ("counts" in
// COCO JSON: each run as a difference to the run two back, 5 bits per character plus a
// continuation bit, offset by 48).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mrcnn::detection {

struct Rle {
  int64_t height = 0, width = 0;
  std::vector<uint32_t> counts;
};

// mask: height * width bytes, row-major, nonzero = inside.
Rle rle_encode(const uint8_t* mask, int64_t height, int64_t width);
// Row-major; throws when the runs exceed height * width (fewer runs leave the rest zero).
std::vector<uint8_t> rle_decode(const Rle& rle);
std::string rle_to_string(const Rle& rle);
// Throws on a malformed string (bad characters, runs past height * width).
Rle rle_from_string(const std::string& counts, int64_t height, int64_t width);
int64_t rle_area(const Rle& rle);
// A polygon [x0, y0, x1, y1, ...] in pixel coordinates rasterised with pycocotools' rule (frPyObjects /
// rleFrPoly): vertices scaled by 5 and rounded, edges walked densely, and a pixel (x, y) is inside
// when its centre column crosses the outline above it; the result equals pycocotools' bit for bit.
Rle rle_from_polygon(const std::vector<double>& xy, int64_t height, int64_t width);
// Union of masks of one size (pycocotools' rleMerge with intersect=0): an annotation's polygons.
Rle rle_union(const std::vector<Rle>& rles);

}  // namespace mrcnn::detection
