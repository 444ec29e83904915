// Argument checks and small helpers shared by the normalisation ops (ops/norm.cpp,
// ops/group_norm.cpp). Internal to ops/.
#pragma once
#include <string>
#include <vector>

#include "ops/channel_kernels.h"
#include "ops/spatial.h"
#include "ops/view.h"
#include "tensor/tensor.h"

namespace mrcnn::ops::norm_detail {

inline cpu::ChannelLayout channel_layout(const Tensor& x) {
  cpu::ChannelLayout l;
  l.batch = x.size(0), l.channels = x.size(1), l.inner = 1;
  for (int64_t d = 2; d < x.dim(); ++d) l.inner *= x.size(d);
  return l;
}

inline void check_norm_input(const Tensor& x, const char* op) {
  check(x.defined() && x.dim() >= 2, op, ": expected an input [N, C, *] with at least 2 dims, got ",
        x.defined() ? shape_str(x.sizes()) : std::string("an undefined tensor"));
  check_float_input(x, op);
}

// A per-channel parameter or buffer: undefined (when allowed) or a [C] vector of x's dtype.
inline void check_channel_vector(const Tensor& v, const Tensor& x, const char* name, bool required, const char* op) {
  if (!v.defined()) {
    check(!required, op, ": ", name, " is required");
    return;
  }
  check(v.dim() == 1 && v.size(0) == x.size(1) && v.dtype() == x.dtype() && v.device() == x.device(), op, ": ", name,
        " must be a ", dtype_name(x.dtype()), " vector of ", x.size(1), " elements (channels of ", shape_str(x.sizes()),
        "), got ", dtype_name(v.dtype()), " ", shape_str(v.sizes()));
}

// The fused norm + relu ops' residual: undefined, or x's shape, dtype and device.
inline void check_residual(const Tensor& residual, const Tensor& x, const char* op) {
  if (!residual.defined()) return;
  check(residual.sizes() == x.sizes() && residual.dtype() == x.dtype() && residual.device() == x.device(), op,
        ": residual must be ", dtype_name(x.dtype()), " ", shape_str(x.sizes()), " on ", x.device().str(), " like x, got ",
        dtype_name(residual.dtype()), " ", shape_str(residual.sizes()), " on ", residual.device().str());
}

// [C] -> [1, C, 1, ...] so it broadcasts against x.
inline Tensor per_channel(const Tensor& v, const Tensor& x) {
  Shape shape(static_cast<size_t>(x.dim()), 1);
  shape[1] = x.size(1);
  return reshape(v, shape);
}

// Dims 0, 2, 3, ... of x: everything but the channel.
inline std::vector<int64_t> non_channel_dims(const Tensor& x) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  return dims;
}

template <typename T>
inline const T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

}  // namespace mrcnn::ops::norm_detail
