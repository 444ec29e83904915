// CUDA RoIAlign for ops/roi_align.cpp. Plain C++: implemented in roi_align.cu, or by stubs.cpp.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace mrcnn::cuda {

struct RoiAlignShape {
  int64_t batch = 0, channels = 0, height = 0, width = 0, rois = 0, pooled_h = 1, pooled_w = 1;
  double spatial_scale = 1;
  int64_t sampling_ratio = -1;
  bool aligned = false;
};

// Backward with atomic adds (fast; float sums in arrival order) or, when deterministic, one thread
// per channel visiting RoIs in order (the CPU's order: bit-identical run to run, slower).
void set_deterministic(bool deterministic);
bool deterministic();

void roi_align_forward(const RoiAlignShape& s, const Tensor& x, const Tensor& rois, const Tensor& out);
void roi_align_backward(const RoiAlignShape& s, const Tensor& dout, const Tensor& rois, const Tensor& dx);

}  // namespace mrcnn::cuda
