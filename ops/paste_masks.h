// paste_masks: Mask R-CNN's per-detection M x M mask probabilities placed into full-size images at
// their boxes (torchvision's paste_masks_in_image, in one pass over the output; body in
// ops/paste_kernels.h). Not differentiable: it only runs on detections.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace mrcnn::ops {

// masks [D, 1, M, M] (or [D, M, M]) float32 on the CPU or a GPU; boxes [D, 4] (x1, y1, x2, y2) in
// image pixels, on any device. Returns [D, 1, height, width] float32 on the masks' device. The
// masks are padded by `padding` zero pixels and the boxes expanded to match, as torchvision does.
Tensor paste_masks(const Tensor& masks, const Tensor& boxes, int64_t height, int64_t width, int64_t padding = 1);

}  // namespace mrcnn::ops
