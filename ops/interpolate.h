// Resizing NCHW tensors to a given spatial size, with PyTorch's index rules (F.interpolate with
// `size=`): nearest as used by FPN's top-down path, bilinear for image resizing and mask pasting.
#pragma once
#include "ops/spatial.h"
#include "tensor/tensor.h"

namespace mrcnn::ops {

enum class InterpolateMode { Nearest, Bilinear };

// x [N, C, H, W] -> [N, C, size.h, size.w]. align_corners applies to bilinear only (as in PyTorch).
Tensor interpolate(const Tensor& x, Size2 size, InterpolateMode mode, bool align_corners = false);

// Nearest resizing of host bool masks [K, H, W] to [K, size.h, size.w], straight on the bytes: the
// same pixels as interpolate(masks.float()[:, None], size, Nearest)[:, 0] != 0, the way torchvision
// resizes training targets, without a float copy of every mask in and out.
Tensor resize_masks_nearest(const Tensor& masks, Size2 size);

}  // namespace mrcnn::ops
