// RoIAlign on the GPU, torchvision's kernel structure: forward one thread per output element,
// backward one thread per output gradient adding into its sample taps (atomicAdd), or a
// deterministic variant. The arithmetic follows ops/roi_align.cpp (and torchvision) step by step.
#include "cuda/launch.cuh"
#include "cuda/roi_align.h"
#include "tensor/dispatch.h"

namespace mrcnn::cuda {

namespace {

bool deterministic_backward = false;

template <typename T>
struct RoiGrid {
  int64_t batch_index, grid_h, grid_w;
  T start_h, start_w, bin_h, bin_w, count;
};

template <typename T>
__device__ RoiGrid<T> roi_grid(const RoiAlignShape& s, const T* roi) {
  const T scale = static_cast<T>(s.spatial_scale);
  const T offset = s.aligned ? T(0.5) : T(0);
  RoiGrid<T> r;
  r.start_w = roi[1] * scale - offset;
  r.start_h = roi[2] * scale - offset;
  T roi_w = roi[3] * scale - offset - r.start_w, roi_h = roi[4] * scale - offset - r.start_h;
  if (!s.aligned) {
    roi_w = max(roi_w, T(1));
    roi_h = max(roi_h, T(1));
  }
  r.bin_h = roi_h / static_cast<T>(s.pooled_h);
  r.bin_w = roi_w / static_cast<T>(s.pooled_w);
  r.batch_index = static_cast<int64_t>(roi[0]);
  r.grid_h = s.sampling_ratio > 0 ? s.sampling_ratio : static_cast<int64_t>(ceil(roi_h / static_cast<T>(s.pooled_h)));
  r.grid_w = s.sampling_ratio > 0 ? s.sampling_ratio : static_cast<int64_t>(ceil(roi_w / static_cast<T>(s.pooled_w)));
  r.count = static_cast<T>(r.grid_h * r.grid_w > 1 ? r.grid_h * r.grid_w : 1);
  return r;
}

// The four pixel offsets and weights of sample (iy, ix) of bin (ph, pw); weights 0 outside the map.
template <typename T>
__device__ void sample_taps(const RoiAlignShape& s, const RoiGrid<T>& r, int64_t ph, int64_t pw, int64_t iy, int64_t ix,
                            int64_t pos[4], T w[4]) {
  const T yy = r.start_h + static_cast<T>(ph) * r.bin_h +
               static_cast<T>(static_cast<float>(iy) + .5f) * r.bin_h / static_cast<T>(r.grid_h);
  const T xx = r.start_w + static_cast<T>(pw) * r.bin_w +
               static_cast<T>(static_cast<float>(ix) + .5f) * r.bin_w / static_cast<T>(r.grid_w);
  if (!(yy >= -1 && yy <= static_cast<T>(s.height) && xx >= -1 && xx <= static_cast<T>(s.width))) {
    for (int k = 0; k < 4; ++k) pos[k] = 0, w[k] = 0;
    return;
  }
  T y = yy <= 0 ? T(0) : yy, x = xx <= 0 ? T(0) : xx;
  int64_t y_low = static_cast<int64_t>(y), x_low = static_cast<int64_t>(x), y_high, x_high;
  if (y_low >= s.height - 1) {
    y_high = y_low = s.height - 1;
    y = static_cast<T>(y_low);
  } else {
    y_high = y_low + 1;
  }
  if (x_low >= s.width - 1) {
    x_high = x_low = s.width - 1;
    x = static_cast<T>(x_low);
  } else {
    x_high = x_low + 1;
  }
  const T ly = y - static_cast<T>(y_low), lx = x - static_cast<T>(x_low);
  const T hy = T(1) - ly, hx = T(1) - lx;
  pos[0] = y_low * s.width + x_low, pos[1] = y_low * s.width + x_high;
  pos[2] = y_high * s.width + x_low, pos[3] = y_high * s.width + x_high;
  w[0] = hy * hx, w[1] = hy * lx, w[2] = ly * hx, w[3] = ly * lx;
}

template <typename T>
void forward(const RoiAlignShape s, const T* in, const T* boxes, T* o, int64_t total) {
    for_each_index(total, [=] __device__(int64_t i) {
      const int64_t pw = i % s.pooled_w, ph = (i / s.pooled_w) % s.pooled_h;
      const int64_t c = (i / (s.pooled_w * s.pooled_h)) % s.channels, n = i / (s.pooled_w * s.pooled_h * s.channels);
      const RoiGrid<T> r = roi_grid(s, boxes + n * 5);
      const T* src = in + (r.batch_index * s.channels + c) * s.height * s.width;
      T value = 0;
      int64_t pos[4];
      T w[4];
      for (int64_t iy = 0; iy < r.grid_h; ++iy)
        for (int64_t ix = 0; ix < r.grid_w; ++ix) {
          sample_taps(s, r, ph, pw, iy, ix, pos, w);
          value += w[0] * src[pos[0]] + w[1] * src[pos[1]] + w[2] * src[pos[2]] + w[3] * src[pos[3]];
        }
      o[i] = value / r.count;
    });
}

template <typename T>
void backward(const RoiAlignShape s, const T* g, const T* boxes, T* d, int64_t total, bool deterministic_order) {
  const int64_t plane = s.height * s.width, bins = s.pooled_h * s.pooled_w;
    if (!deterministic_order) {
      for_each_index(total, [=] __device__(int64_t i) {
        const int64_t pw = i % s.pooled_w, ph = (i / s.pooled_w) % s.pooled_h;
        const int64_t c = (i / bins) % s.channels, n = i / (bins * s.channels);
        const RoiGrid<T> r = roi_grid(s, boxes + n * 5);
        T* dst = d + (r.batch_index * s.channels + c) * plane;
        int64_t pos[4];
        T w[4];
        for (int64_t iy = 0; iy < r.grid_h; ++iy)
          for (int64_t ix = 0; ix < r.grid_w; ++ix) {
            sample_taps(s, r, ph, pw, iy, ix, pos, w);
            for (int k = 0; k < 4; ++k) atomic_add(dst + pos[k], g[i] * w[k] / r.count);
          }
      });
      return;
    }
    // Deterministic: thread c owns channel c of every image and adds RoI by RoI, bin by bin, as the CPU.
    for_each_index(s.channels, [=] __device__(int64_t c) {
      int64_t pos[4];
      T w[4];
      for (int64_t n = 0; n < s.rois; ++n) {
        const RoiGrid<T> r = roi_grid(s, boxes + n * 5);
        T* dst = d + (r.batch_index * s.channels + c) * plane;
        const T* grad = g + (n * s.channels + c) * bins;
        for (int64_t ph = 0; ph < s.pooled_h; ++ph)
          for (int64_t pw = 0; pw < s.pooled_w; ++pw)
            for (int64_t iy = 0; iy < r.grid_h; ++iy)
              for (int64_t ix = 0; ix < r.grid_w; ++ix) {
                sample_taps(s, r, ph, pw, iy, ix, pos, w);
                for (int k = 0; k < 4; ++k) dst[pos[k]] += grad[ph * s.pooled_w + pw] * w[k] / r.count;
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
