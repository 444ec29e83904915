// Shared pieces of the 2-D spatial ops (conv, pooling, interpolation, norms, RoIAlign): the (h, w)
// pair their options take, and the argument checks they start with.
#pragma once
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

}  // namespace mrcnn::ops
