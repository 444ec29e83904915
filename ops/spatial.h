// Shared pieces of the 2-D spatial ops (conv, pooling, interpolation, norms, RoIAlign): the (h, w)
// pair their options take, and the argument checks they start with.
#pragma once
#include <algorithm>
#include <cstdint>

#include "tensor/tensor.h"

namespace mrcnn::ops {

// A (height, width) pair; one integer means the same value for both, as in PyTorch (`stride=2`).
struct Size2 {
  int64_t h = 0, w = 0;
  constexpr Size2(int64_t both = 0) : h(both), w(both) {}  // NOLINT(google-explicit-constructor)
  constexpr Size2(int64_t h_, int64_t w_) : h(h_), w(w_) {}
  bool operator==(const Size2& o) const { return h == o.h && w == o.w; }
};

// Checks that x is a CPU float tensor of `dims` dimensions ("[N, C, H, W]" names them in the message).
void check_spatial_input(const Tensor& x, int64_t dims, const char* layout, const char* op);
// The dtype and device half of that check, for ops whose inputs vary in rank (the norms).
void check_float_input(const Tensor& x, const char* op);

// Output positions [lo, hi) along one axis whose input coordinate o * stride + start is inside [0, in)
// (the window tap at offset `start` of outputs 0..out-1): conv's im2col and max pooling's taps.
inline void valid_range(int64_t in, int64_t out, int64_t stride, int64_t start, int64_t& lo, int64_t& hi) {
  lo = start >= 0 ? 0 : (-start + stride - 1) / stride;
  hi = in - 1 - start < 0 ? 0 : std::min(out, (in - 1 - start) / stride + 1);
  lo = std::min(lo, hi);
}

}  // namespace mrcnn::ops
