// CUDA kernels of the elementwise family and the strided copies/fills that tensor/ needs for memory.
// Plain C++ declarations: implemented in elementwise.cu, or by stubs.cpp when CUDA is off.
// Every output tensor passed here is contiguous and already allocated on the device.
#pragma once
#include <cstdint>

#include "ops/elementwise_functors.h"
#include "tensor/tensor.h"

namespace mrcnn::cuda {

void fill(const Tensor& out, double value);
void copy_strided(const Tensor& dst, const Tensor& src);  // same shape; dtype cast allowed
void unary_forward(UnaryOp op, double p0, double p1, const Tensor& x, const Tensor& out);
void binary_forward(BinaryOp op, double param, const Tensor& a, const Tensor& b, const Tensor& out);
void compare_forward(CompareOp op, const Tensor& a, const Tensor& b, const Tensor& out);
void where_forward(const Tensor& condition, const Tensor& a, const Tensor& b, const Tensor& out);
// out[o, i] = sum_r x[o, r, i] for a contiguous x viewed as [outer, reduced, inner].
void sum_reduce(const Tensor& x, int64_t outer, int64_t reduced, int64_t inner, const Tensor& out);

}  // namespace mrcnn::cuda
