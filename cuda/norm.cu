// channel_affine in one pass (the frozen batch norm of every ResNet layer, with its relu and a
// block's residual fused where asked, forward and backward), and group norm's output and input
// gradient: the CPU's per-element bodies (ops/affine_kernels.h), one thread per element, each
// element's channel and group found by multiply-high dividers (cuda/index_divider.h).
// (Group norm's statistics and sums come from the CUDA reductions, in ops/norm.cpp.)
#include "cuda/launch.cuh"
#include "cuda/norm.h"
#include "ops/affine_kernels.h"
#include "tensor/dispatch.h"

namespace mrcnn::cuda {

namespace {
// Kernel bodies live in function templates: device lambdas may not sit inside dispatch's generic
// lambdas. Each runs with multiply-high index dividers when the tensor has fewer than 2^31 elements.
// The affine value is rounded to T before the residual is added, as the separate ops store it.
template <typename T, typename Locator>
void affine(const T* x, const T* scale, const T* shift, Locator at, T* y, int64_t n, bool relu, const T* residual) {
  if (residual)
    for_each_index(n, [=] __device__(int64_t i) {
      const T v = channel_affine_element(x, scale, shift, i, at);
      y[i] = relu_of(v + residual[i]);
    });
  else if (relu)
    for_each_index(n, [=] __device__(int64_t i) { y[i] = relu_of(channel_affine_element(x, scale, shift, i, at)); });
  else
    for_each_index(n, [=] __device__(int64_t i) { y[i] = channel_affine_element(x, scale, shift, i, at); });
}
template <typename T, typename Locator>
void affine_relu_grad(const T* dy, const T* y, const T* scale, Locator at, T* dx, T* gated, int64_t n) {
  if (gated)
    for_each_index(n, [=] __device__(int64_t i) {
      dx[i] = channel_affine_relu_grad(dy[i], y[i], scale[at.channel(i)]);
      gated[i] = relu_grad(dy[i], y[i]);
    });
  else
    for_each_index(n, [=] __device__(int64_t i) { dx[i] = channel_affine_relu_grad(dy[i], y[i], scale[at.channel(i)]); });
}
template <typename T, typename Locator>
void group_forward(const T* x, const T* mean, const T* invstd, const T* weight, const T* bias, Locator at, T* y, int64_t n) {
  for_each_index(n, [=] __device__(int64_t i) {
    const int64_t c = at.channel(i), b = at.group(i);
    T a, shift;
    group_norm_affine(mean[b], invstd[b], weight ? weight[c] : T(1), bias ? bias[c] : T(0), a, shift);
    y[i] = x[i] * a + shift;
  });
}

template <typename T, typename Locator>
void group_input_grad(const T* dy, const T* x, const T* mean, const T* invstd, const T* weight, const T* mean_dxhat,
                      const T* mean_dxhat_xhat, Locator at, T* dx, int64_t n) {
  for_each_index(n, [=] __device__(int64_t i) {
    const int64_t c = at.channel(i), b = at.group(i);
    dx[i] = group_norm_dx(dy[i], x[i], mean[b], invstd[b], weight ? weight[c] : T(1), mean_dxhat[b], mean_dxhat_xhat[b]);
  });
}

// Calls run(locator) with the fast locator when every index fits the dividers, else the plain one.
template <typename Run>
void with_locator(int64_t n, const ChannelLocator& plain, const Run& run) {
  if (n == 0) return;  // nothing to write (and a zero divisor would be undefined)
  if (n <= kMaxDividedIndex) run(FastChannelLocator(plain));
  else run(plain);
}

template <typename T>
const T* data_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr;
}

}  // namespace

void group_norm_forward(const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight, const Tensor& bias,
                        int64_t groups, int64_t channels, int64_t inner, const Tensor& y) {
  const ChannelLocator plain{channels, inner, channels / groups * inner};
  dispatch_floating(x.dtype(), "group_norm", [&](auto tag) {
    using T = decltype(tag);
    with_locator(y.numel(), plain, [&](auto at) {
      group_forward<T>(data_or_null<T>(x), data_or_null<T>(mean), data_or_null<T>(invstd), data_or_null<T>(weight),
                       data_or_null<T>(bias), at, static_cast<T*>(y.raw_data()), y.numel());
    });
  });
}

void group_norm_input_grad(const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                           const Tensor& mean_dxhat, const Tensor& mean_dxhat_xhat, int64_t groups, int64_t channels,
                           int64_t inner, const Tensor& dx) {
  const ChannelLocator plain{channels, inner, channels / groups * inner};
  dispatch_floating(x.dtype(), "group_norm backward", [&](auto tag) {
    using T = decltype(tag);
    with_locator(dx.numel(), plain, [&](auto at) {
      group_input_grad<T>(data_or_null<T>(dy), data_or_null<T>(x), data_or_null<T>(mean), data_or_null<T>(invstd),
                          data_or_null<T>(weight), data_or_null<T>(mean_dxhat), data_or_null<T>(mean_dxhat_xhat), at,
                          static_cast<T*>(dx.raw_data()), dx.numel());
    });
  });
}

void channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift, int64_t channels, int64_t inner,
                    const Tensor& y, bool relu, const Tensor& residual) {
  const ChannelLocator plain{channels, inner, 1};
  dispatch_floating(x.dtype(), "channel_affine", [&](auto tag) {
    using T = decltype(tag);
    with_locator(y.numel(), plain, [&](auto at) {
      affine<T>(data_or_null<T>(x), data_or_null<T>(scale), data_or_null<T>(shift), at, static_cast<T*>(y.raw_data()),
                y.numel(), relu, data_or_null<T>(residual));
    });
  });
}

void channel_affine_relu_input_grad(const Tensor& dy, const Tensor& y, const Tensor& scale, int64_t channels, int64_t inner,
                                    const Tensor& dx, const Tensor& gated) {
  const ChannelLocator plain{channels, inner, 1};
  dispatch_floating(dy.dtype(), "channel_affine_relu backward", [&](auto tag) {
    using T = decltype(tag);
    with_locator(dx.numel(), plain, [&](auto at) {
      affine_relu_grad<T>(data_or_null<T>(dy), data_or_null<T>(y), data_or_null<T>(scale), at, static_cast<T*>(dx.raw_data()),
                          gated.defined() ? static_cast<T*>(gated.raw_data()) : nullptr, dx.numel());
    });
  });
}

}  // namespace mrcnn::cuda
