// Bilinear/nearest resize: one thread per output element, the CPU's blend and scatter bodies
// (ops/interpolate_kernels.h: PyTorch's order of operations, zero-weight taps skipped).
#include "cuda/interpolate.h"
#include "cuda/launch.cuh"
#include "ops/interpolate_kernels.h"
#include "tensor/dispatch.h"

namespace mrcnn::cuda {

namespace {
template <typename T>
struct DeviceTaps {
  int64_t in_h, in_w, out_h, out_w;
  const int64_t *y0, *y1, *x0, *x1;
  const T *hy0, *hy1, *wx0, *wx1;
};

template <typename T>
DeviceTaps<T> device_taps(const ResizeTaps& r) {
  return {r.in_h,
          r.in_w,
          r.out_h,
          r.out_w,
          static_cast<const int64_t*>(r.y0.raw_data()),
          static_cast<const int64_t*>(r.y1.raw_data()),
          static_cast<const int64_t*>(r.x0.raw_data()),
          static_cast<const int64_t*>(r.x1.raw_data()),
          static_cast<const T*>(r.hy0.raw_data()),
          static_cast<const T*>(r.hy1.raw_data()),
          static_cast<const T*>(r.wx0.raw_data()),
          static_cast<const T*>(r.wx1.raw_data())};
}
// Kernel bodies live in function templates: device lambdas may not sit inside dispatch's generic lambdas.
template <typename T>
void forward(const DeviceTaps<T> t, const T* in, T* o, int64_t n) {
    for_each_index(n, [=] __device__(int64_t i) {
      const int64_t ox = i % t.out_w, oy = (i / t.out_w) % t.out_h, p = i / (t.out_w * t.out_h);
      const T* top = in + (p * t.in_h + t.y0[oy]) * t.in_w;
      const T* bottom = in + (p * t.in_h + t.y1[oy]) * t.in_w;
      const int64_t a = t.x0[ox], b = t.x1[ox];
      o[i] = resize_value(t.hy0[oy], t.hy1[oy], t.wx0[ox], t.wx1[ox], top[a], top[b], bottom[a], bottom[b]);
    });
}

template <typename T>
void backward(const DeviceTaps<T> t, const T* g, T* d, int64_t n) {
    for_each_index(n, [=] __device__(int64_t i) {
      const int64_t ox = i % t.out_w, oy = (i / t.out_w) % t.out_h, p = i / (t.out_w * t.out_h);
      T* top = d + (p * t.in_h + t.y0[oy]) * t.in_w;
      T* bottom = d + (p * t.in_h + t.y1[oy]) * t.in_w;
      const int64_t a = t.x0[ox], b = t.x1[ox];
      resize_scatter(t.hy0[oy], t.hy1[oy], t.wx0[ox], t.wx1[ox], top, bottom, a, b, g[i],
                     [](T* at, T v) { atomic_add(at, v); });
    });
}

}  // namespace

void interpolate_forward(const ResizeTaps& r, const Tensor& x, const Tensor& out) {
  dispatch_floating(x.dtype(), "interpolate", [&](auto tag) {
    using T = decltype(tag);
    forward<T>(device_taps<T>(r), static_cast<const T*>(x.raw_data()), static_cast<T*>(out.raw_data()), out.numel());
  });
}

void interpolate_backward(const ResizeTaps& r, const Tensor& dout, const Tensor& dx) {
  MRCNN_CUDA_CHECK(cudaMemsetAsync(dx.raw_data(), 0, static_cast<size_t>(dx.numel()) * dtype_size(dx.dtype()), stream()));
  dispatch_floating(dout.dtype(), "interpolate backward", [&](auto tag) {
    using T = decltype(tag);
    backward<T>(device_taps<T>(r), static_cast<const T*>(dout.raw_data()), static_cast<T*>(dx.raw_data()), dout.numel());
  });
}

}  // namespace mrcnn::cuda
