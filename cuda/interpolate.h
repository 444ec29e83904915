// CUDA resize for ops/interpolate.cpp. Plain C++: implemented in interpolate.cu, or by stubs.cpp.
// The per-axis taps (source rows/columns and weights) are computed on the host by the CPU code and
// uploaded, so both backends use bit-identical indices and weights.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace mrcnn::cuda {

struct ResizeTaps {
  int64_t planes = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  Tensor y0, y1, hy0, hy1;  // [out_h]: int64 source rows, weights in the data dtype
  Tensor x0, x1, wx0, wx1;  // [out_w]
};

void interpolate_forward(const ResizeTaps& r, const Tensor& x, const Tensor& out);
// Adjoint: every output gradient is added to the four pixels it read (atomic adds).
void interpolate_backward(const ResizeTaps& r, const Tensor& dout, const Tensor& dx);

}  // namespace mrcnn::cuda
