// CUDA max/min with indices for ops/reduce.cpp (sum is in cuda/elementwise.h). Plain C++:
// implemented in reduce.cu, or by stubs.cpp.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace mrcnn::cuda {

// For contiguous x viewed as [outer, reduced, inner]: values/indices [outer, inner] of the first
// maximum (largest) or minimum; NaN wins, as on the CPU and in PyTorch.
void arg_extreme(const Tensor& x, int64_t outer, int64_t reduced, int64_t inner, bool largest, const Tensor& values,
                 const Tensor& indices);

}  // namespace mrcnn::cuda
