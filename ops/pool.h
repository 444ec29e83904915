// 2-D max pooling (NCHW) with PyTorch's semantics: -inf padding, first maximum wins, NaN propagates.
#pragma once
#include "ops/spatial.h"
#include "tensor/tensor.h"

namespace mrcnn::ops {

struct MaxPool2dOptions {
  Size2 kernel_size = 1;
  Size2 stride = 0;  // 0: same as kernel_size, like PyTorch's stride=None
  Size2 padding = 0, dilation = 1;
  bool ceil_mode = false;
};

// x [N, C, H, W] -> [N, C, H', W']; the gradient goes to the arg-max of each window.
Tensor max_pool2d(const Tensor& x, const MaxPool2dOptions& options);

}  // namespace mrcnn::ops
