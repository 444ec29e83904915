// channel_affine in one pass (the frozen batch norm of every ResNet layer): the CPU's per-element
// body (ops/affine_kernels.h), one thread per element. Composed from ops it took two kernels and an
// activation-sized intermediate.
#include "cuda/launch.cuh"
#include "cuda/norm.h"
#include "ops/affine_kernels.h"
#include "tensor/dispatch.h"

namespace mrcnn::cuda {

namespace {
// Kernel bodies live in function templates: device lambdas may not sit inside dispatch's generic lambdas.
template <typename T>
void affine(const T* x, const T* scale, const T* shift, int64_t channels, int64_t inner, T* y, int64_t n) {
  for_each_index(n, [=] __device__(int64_t i) { y[i] = channel_affine_element(x, scale, shift, i, channels, inner); });
}
}  // namespace

void channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift, int64_t channels, int64_t inner,
                    const Tensor& y) {
  dispatch_floating(x.dtype(), "channel_affine", [&](auto tag) {
    using T = decltype(tag);
    affine<T>(static_cast<const T*>(x.raw_data()), static_cast<const T*>(scale.raw_data()),
              shift.defined() ? static_cast<const T*>(shift.raw_data()) : nullptr, channels, inner,
              static_cast<T*>(y.raw_data()), y.numel());
  });
}

}  // namespace mrcnn::cuda
