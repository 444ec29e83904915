// CUDA paste_masks for ops/paste_masks.cpp. Plain C++: implemented in paste_masks.cu, or by stubs.cpp.
#pragma once
#include <vector>

#include "ops/paste_kernels.h"
#include "tensor/tensor.h"

namespace mrcnn::cuda {

// masks: contiguous [D, .., M, M] float32 on the GPU; boxes: one per detection (host); out: [D, 1, H, W].
void paste_masks(const Tensor& masks, const std::vector<PasteBox>& boxes, int64_t padding, const Tensor& out);

}  // namespace mrcnn::cuda
