// Max pooling: one thread per output element scans its window in the CPU's order (first maximum
// wins, NaN propagates), so values and argmax positions equal the CPU's.
#include "cuda/launch.cuh"
#include "cuda/pool.h"
#include "tensor/dispatch.h"

namespace mrcnn::cuda {

namespace {

// (Device lambdas may not live inside the generic lambdas of dispatch_*: each kernel body sits in a
// function template, and the dispatch lambda only picks T.)
template <typename T>
void forward(const PoolShape& s, const T* in, T* o, int64_t* am, int64_t n) {
  for_each_index(n, [=] __device__(int64_t i) {
    const int64_t ox = i % s.out_w, oy = (i / s.out_w) % s.out_h, p = i / (s.out_w * s.out_h);
    const T* src = in + p * s.in_h * s.in_w;
    int64_t y0 = oy * s.stride_h - s.pad_h;
    const int64_t y_end = y0 + (s.kernel_h - 1) * s.dilation_h + 1, y1 = y_end < s.in_h ? y_end : s.in_h;
    while (y0 < 0) y0 += s.dilation_h;
    int64_t x0 = ox * s.stride_w - s.pad_w;
    const int64_t x_end = x0 + (s.kernel_w - 1) * s.dilation_w + 1, x1 = x_end < s.in_w ? x_end : s.in_w;
    while (x0 < 0) x0 += s.dilation_w;
    int64_t best = y0 * s.in_w + x0;
    T best_value = -INFINITY;
    for (int64_t iy = y0; iy < y1; iy += s.dilation_h)
      for (int64_t ix = x0; ix < x1; ix += s.dilation_w) {
        const T v = src[iy * s.in_w + ix];
        if (v > best_value || v != v) {
          best_value = v;
          best = iy * s.in_w + ix;
        }
      }
    o[i] = best_value;
    am[i] = best;
  });
}

template <typename T>
void backward(const T* d, const int64_t* am, T* g, int64_t n, int64_t out_plane, int64_t in_plane) {
  for_each_index(n, [=] __device__(int64_t i) { atomic_add(g + (i / out_plane) * in_plane + am[i], d[i]); });
}

}  // namespace

void max_pool2d_forward(const PoolShape& s, const Tensor& x, const Tensor& out, const Tensor& argmax) {
  dispatch_floating(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    forward<T>(s, static_cast<const T*>(x.raw_data()), static_cast<T*>(out.raw_data()), static_cast<int64_t*>(argmax.raw_data()),
               out.numel());
  });
}

void max_pool2d_backward(const PoolShape& s, const Tensor& dout, const Tensor& argmax, const Tensor& dx) {
  MRCNN_CUDA_CHECK(cudaMemsetAsync(dx.raw_data(), 0, static_cast<size_t>(dx.numel()) * dtype_size(dx.dtype()), stream()));
  dispatch_floating(dout.dtype(), "max_pool2d backward", [&](auto tag) {
    using T = decltype(tag);
    backward<T>(static_cast<const T*>(dout.raw_data()), static_cast<const int64_t*>(argmax.raw_data()),
                static_cast<T*>(dx.raw_data()), dout.numel(), s.out_h * s.out_w, s.in_h * s.in_w);
  });
}

}  // namespace mrcnn::cuda
