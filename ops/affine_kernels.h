// Per-element bodies of the affine norms over a contiguous [batch, channels, inner] tensor, shared by
// the CPU loops (ops/norm.cpp, which hoist the per-row parts) and the CUDA kernels (cuda/norm.cu,
// one thread per element): channel_affine's y = x * scale[c] + shift[c], and group norm's output
// and input gradient from its group's statistics.
#pragma once
#include <cstdint>

#include "cuda/host_device.h"
#include "cuda/index_divider.h"
#include "ops/elementwise_functors.h"

namespace mrcnn {

// Where element i lies: channel (i / inner) % channels, and (sample, group) block i / group_block
// (group_block = channels / groups * inner). By plain division...
struct ChannelLocator {
  int64_t channels = 1, inner = 1, group_block = 1;
  MRCNN_HD int64_t channel(int64_t i) const { return i / inner % channels; }
  MRCNN_HD int64_t group(int64_t i) const { return i / group_block; }
};

// ... or, in GPU kernels over fewer than 2^31 elements, by multiply-high dividers (a 64-bit division
// per element is a long emulated sequence there).
struct FastChannelLocator {
  cuda::IndexDivider inner, channels, group_block;
  FastChannelLocator() = default;
  explicit FastChannelLocator(const ChannelLocator& l) : inner(l.inner), channels(l.channels), group_block(l.group_block) {}
  MRCNN_HD int64_t channel(int64_t i) const { return channels.remainder(inner.quotient(static_cast<uint32_t>(i))); }
  MRCNN_HD int64_t group(int64_t i) const { return group_block.quotient(static_cast<uint32_t>(i)); }
};

// y[i] = x[i] * scale[c] + shift[c] for i's channel c; shift may be null (zero).
template <typename T, typename Locator>
MRCNN_HD inline T channel_affine_element(const T* x, const T* scale, const T* shift, int64_t i, const Locator& at) {
  const int64_t c = at.channel(i);
  return x[i] * scale[c] + (shift ? shift[c] : T(0));
}

template <typename T>
MRCNN_HD inline T channel_affine_element(const T* x, const T* scale, const T* shift, int64_t i, int64_t channels,
                                         int64_t inner) {
  return channel_affine_element(x, scale, shift, i, ChannelLocator{channels, inner, 1});
}

// channel_affine_relu's input gradient at one element with output y and its channel's scale:
// relu's backward (relu_grad, ops/elementwise_functors.h), then channel_affine's (times scale, plus
// the zero of an absent shift, which turns -0 into +0 as the two ops do).
template <typename T>
MRCNN_HD inline T channel_affine_relu_grad(T dy, T y, T scale) {
  return relu_grad(dy, y) * scale + T(0);
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
