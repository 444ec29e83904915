// CUDA kernels for ops/norm.cpp. Plain C++: implemented in norm.cu, or by stubs.cpp.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace mrcnn::cuda {

// y = x * scale[c] + shift[c] for contiguous x, y [batch, channels, inner]; shift may be undefined.
void channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift, int64_t channels, int64_t inner,
                    const Tensor& y);

}  // namespace mrcnn::cuda
