// CUDA softmax/log_softmax forward for ops/softmax.cpp (backward is composed from ops). Plain C++:
// implemented in softmax.cu, or by stubs.cpp.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace mrcnn::cuda {

// x contiguous, viewed as [outer, n, inner]; out the same shape.
void softmax_forward(const Tensor& x, int64_t outer, int64_t n, int64_t inner, bool log_output, const Tensor& out);

}  // namespace mrcnn::cuda
