// RoIAlign on the GPU, torchvision's kernel structure: forward one thread per output element,
// backward one thread per output gradient adding into its sample taps (atomicAdd), or a
// deterministic variant. Grid and taps come from ops/roi_align_kernels.h, the body the CPU runs too.
#include "cuda/launch.cuh"
#include "cuda/roi_align.h"
#include "ops/roi_align_kernels.h"
#include "tensor/dispatch.h"

namespace mrcnn::cuda {

namespace {

bool deterministic_backward = false;

RoiAlignParams params_of(const RoiAlignShape& s) {
  return {s.height, s.width, s.pooled_h, s.pooled_w, s.spatial_scale, s.sampling_ratio, s.aligned};
}

template <typename T>
void forward(const RoiAlignShape s, const T* in, const T* boxes, T* o, int64_t total) {
  const RoiAlignParams p = params_of(s);
    for_each_index(total, [=] __device__(int64_t i) {
      const int64_t pw = i % s.pooled_w, ph = (i / s.pooled_w) % s.pooled_h;
      const int64_t c = (i / (s.pooled_w * s.pooled_h)) % s.channels, n = i / (s.pooled_w * s.pooled_h * s.channels);
      const RoiGrid<T> r = roi_grid(p, boxes + n * 5);
      const T* src = in + (r.batch_index * s.channels + c) * s.height * s.width;
      T value = 0;
      int64_t pos[4];
      T w[4];
      for (int64_t iy = 0; iy < r.grid_h; ++iy)
        for (int64_t ix = 0; ix < r.grid_w; ++ix) {
          sample_taps(p, r, ph, pw, iy, ix, pos, w);
          value += w[0] * src[pos[0]] + w[1] * src[pos[1]] + w[2] * src[pos[2]] + w[3] * src[pos[3]];
        }
      o[i] = value / r.count;
    });
}

template <typename T>
void backward(const RoiAlignShape s, const T* g, const T* boxes, T* d, int64_t total, bool deterministic_order) {
  const RoiAlignParams p = params_of(s);
  const int64_t plane = s.height * s.width, bins = s.pooled_h * s.pooled_w;
    if (!deterministic_order) {
      for_each_index(total, [=] __device__(int64_t i) {
        const int64_t pw = i % s.pooled_w, ph = (i / s.pooled_w) % s.pooled_h;
        const int64_t c = (i / bins) % s.channels, n = i / (bins * s.channels);
        const RoiGrid<T> r = roi_grid(p, boxes + n * 5);
        T* dst = d + (r.batch_index * s.channels + c) * plane;
        int64_t pos[4];
        T w[4];
        for (int64_t iy = 0; iy < r.grid_h; ++iy)
          for (int64_t ix = 0; ix < r.grid_w; ++ix) {
            sample_taps(p, r, ph, pw, iy, ix, pos, w);
            for (int k = 0; k < 4; ++k) atomic_add(dst + pos[k], divide_by_count(r, g[i] * w[k]));
          }
      });
      return;
    }
    // Deterministic: thread c owns channel c of every image and adds RoI by RoI, bin by bin, as the CPU.
    for_each_index(s.channels, [=] __device__(int64_t c) {
      int64_t pos[4];
      T w[4];
      for (int64_t n = 0; n < s.rois; ++n) {
        const RoiGrid<T> r = roi_grid(p, boxes + n * 5);
        T* dst = d + (r.batch_index * s.channels + c) * plane;
        const T* grad = g + (n * s.channels + c) * bins;
        for (int64_t ph = 0; ph < s.pooled_h; ++ph)
          for (int64_t pw = 0; pw < s.pooled_w; ++pw)
            for (int64_t iy = 0; iy < r.grid_h; ++iy)
              for (int64_t ix = 0; ix < r.grid_w; ++ix) {
                sample_taps(p, r, ph, pw, iy, ix, pos, w);
                for (int k = 0; k < 4; ++k) dst[pos[k]] += divide_by_count(r, grad[ph * s.pooled_w + pw] * w[k]);
              }
      }
    });
}

}  // namespace

void set_deterministic(bool value) { deterministic_backward = value; }
bool deterministic() { return deterministic_backward; }

void roi_align_forward(const RoiAlignShape& s, const Tensor& x, const Tensor& rois, const Tensor& out) {
  dispatch_floating(x.dtype(), "roi_align", [&](auto tag) {
    using T = decltype(tag);
    forward<T>(s, static_cast<const T*>(x.raw_data()), static_cast<const T*>(rois.raw_data()), static_cast<T*>(out.raw_data()),
               out.numel());
  });
}

void roi_align_backward(const RoiAlignShape& s, const Tensor& dout, const Tensor& rois, const Tensor& dx) {
  MRCNN_CUDA_CHECK(cudaMemsetAsync(dx.raw_data(), 0, static_cast<size_t>(dx.numel()) * dtype_size(dx.dtype()), stream()));
  dispatch_floating(dout.dtype(), "roi_align backward", [&](auto tag) {
    using T = decltype(tag);
    backward<T>(s, static_cast<const T*>(dout.raw_data()), static_cast<const T*>(rois.raw_data()), static_cast<T*>(dx.raw_data()),
                dout.numel(), deterministic_backward);
  });
}

}  // namespace mrcnn::cuda
