// Per-element bodies of the affine norms over a contiguous [batch, channels, inner] tensor, shared by
// the CPU loops (ops/norm.cpp, which hoist the per-row parts) and the CUDA kernels (cuda/norm.cu,
// one thread per element): channel_affine's y = x * scale[c] + shift[c], and group norm's output
// and input gradient from its group's statistics.
#pragma once
#include <cstdint>

#include "cuda/host_device.h"

namespace mrcnn {

// Element i lies in channel (i / inner) % channels. shift may be null (zero).
template <typename T>
MRCNN_HD inline T channel_affine_element(const T* x, const T* scale, const T* shift, int64_t i, int64_t channels,
                                         int64_t inner) {
  const int64_t c = i / inner % channels;
  return x[i] * scale[c] + (shift ? shift[c] : T(0));
}

// Group norm's output is x * a + shift with a = invstd * weight, shift = bias - mean * a (the group's
// statistics, the channel's affine; weight 1 and bias 0 when absent).
template <typename T>
MRCNN_HD inline void group_norm_affine(T mean, T invstd, T weight, T bias, T& a, T& shift) {
  a = invstd * weight;
  shift = bias - mean * a;
}

// Group norm's input gradient: invstd * (dy * w - mean(dxhat) - xhat * mean(dxhat * xhat)) with
// dxhat = dy * w, xhat = (x - mean) * invstd, the two means taken over the element's group.
template <typename T>
MRCNN_HD inline T group_norm_dx(T dy, T x, T mean, T invstd, T weight, T mean_dxhat, T mean_dxhat_xhat) {
  return invstd * (dy * weight - mean_dxhat - (x - mean) * invstd * mean_dxhat_xhat);
}

// The (sample, group) of element i: groups of channels / groups consecutive channels.
MRCNN_HD inline int64_t group_of(int64_t i, int64_t channels, int64_t groups, int64_t inner) {
  return i / (channels / groups * inner);
}

}  // namespace mrcnn
