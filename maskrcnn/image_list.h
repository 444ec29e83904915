// What flows between the detector's stages: the padded image batch with each image's size before
// padding (torchvision's ImageList), per-image training targets, and per-image detections.
#pragma once
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace mrcnn::detection {

using ImageSize = std::pair<int64_t, int64_t>;  // (height, width)

struct ImageList {
  Tensor tensors;                     // [N, C, H, W], zero-padded to a multiple of size_divisible
  std::vector<ImageSize> image_sizes; // each image's resized size inside the padding
};

struct Target {
  Tensor boxes;   // [G, 4] float32 (x1, y1, x2, y2) in the image's pixels
  Tensor labels;  // [G] int64 in 1..num_classes-1
  Tensor masks;   // [G, H, W] bool at the image's resolution
};

// boxes, scores and labels are host tensors; masks stay where the model runs (on a GPU, [D, 1, H, W]
// floats are too large to download when the caller only wants them thresholded: see predict_image).
struct Detections {
  Tensor boxes;   // [D, 4] float32
  Tensor scores;  // [D]
  Tensor labels;  // [D] int64
  Tensor masks;   // [D, 1, 28, 28] probabilities before postprocess; [D, 1, H, W] pasted after
};

}  // namespace mrcnn::detection
