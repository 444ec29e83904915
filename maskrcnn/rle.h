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
std::vector<uint8_t> rle_decode(const Rle& rle);  // row-major
std::string rle_to_string(const Rle& rle);
// Throws on a malformed string (bad characters, runs past height * width).
Rle rle_from_string(const std::string& counts, int64_t height, int64_t width);
int64_t rle_area(const Rle& rle);

}  // namespace mrcnn::detection
