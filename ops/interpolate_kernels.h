// interpolate's per-output blend and its adjoint, shared by the CPU loops (ops/interpolate.cpp) and
// the CUDA kernels (cuda/interpolate.cu): PyTorch's order of operations, h0 * (w0 * a + w1 * b) +
// h1 * (w0 * c + w1 * d). A tap of weight exactly zero (nearest mode, an axis whose size does not
// change, a source on a pixel centre) takes no part: 0 * inf would turn an infinite pixel into NaN
// next to it (PyTorch reads only the taps it needs), and the backward would pay four scattered adds
// where nearest needs one.
#pragma once
#include "cuda/host_device.h"

namespace mrcnn {

// The output value from the two source rows (top: a, b; bottom: c, d). Sources behind a zero
// weight are read as 0 instead of skipped, so the expression, and the compiler's FMA fusion of it,
// is the full formula's: nonzero results keep their bits.
template <typename T>
MRCNN_HD inline T resize_value(T h0, T h1, T w0, T w1, T a, T b, T c, T d) {
  if (w0 == T(0)) a = T(0), c = T(0);
  if (w1 == T(0)) b = T(0), d = T(0);
  if (h0 == T(0)) a = T(0), b = T(0);
  if (h1 == T(0)) c = T(0), d = T(0);
  return h0 * (w0 * a + w1 * b) + h1 * (w0 * c + w1 * d);
}

// Backward: `add(pointer, value)` for each tap of nonzero weight (a += on the CPU, an atomic add on
// the GPU), in the order top-left, top-right, bottom-left, bottom-right.
template <typename T, typename Add>
MRCNN_HD inline void resize_scatter(T h0, T h1, T w0, T w1, T* top, T* bottom, int64_t a, int64_t b, T g, Add add) {
  if (h0 != T(0)) {
    if (w0 != T(0)) add(top + a, h0 * w0 * g);
    if (w1 != T(0)) add(top + b, h0 * w1 * g);
  }
  if (h1 != T(0)) {
    if (w0 != T(0)) add(bottom + a, h1 * w0 * g);
    if (w1 != T(0)) add(bottom + b, h1 * w1 * g);
  }
}

}  // namespace mrcnn
