// CUDA max pooling for ops/pool.cpp. Plain C++: implemented in pool.cu, or by stubs.cpp.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace mrcnn::cuda {

struct PoolShape {
  int64_t planes = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
};

// out and argmax (int64, flat position in the plane) are [planes, out_h, out_w]; x is contiguous.
void max_pool2d_forward(const PoolShape& s, const Tensor& x, const Tensor& out, const Tensor& argmax);
// dx [planes, in_h, in_w] = dout scattered to argmax (atomic adds: overlapping windows share maxima).
void max_pool2d_backward(const PoolShape& s, const Tensor& dout, const Tensor& argmax, const Tensor& dx);

}  // namespace mrcnn::cuda
