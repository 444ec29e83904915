// softmax and log_softmax along a dim, max-subtracted for stability.
#pragma once
#include "tensor/tensor.h"

namespace mrcnn::ops {

Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

}  // namespace mrcnn::ops
