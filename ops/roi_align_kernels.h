// RoIAlign's per-RoI sampling grid and per-sample bilinear taps: the one body the CPU kernels
// (ops/roi_align.cpp) and the CUDA kernels (cuda/roi_align.cu) share, so the arithmetic the GPU runs
// is the one the CPU tests and torchvision's fixture check. torchvision's arithmetic, in T and in
// its order: y = start + bin * size + (iy + 0.5f) * size / grid.
#pragma once
#include <cmath>
#include <cstdint>

#include "cuda/host_device.h"

namespace mrcnn {

struct RoiAlignParams {
  int64_t height = 0, width = 0, pooled_h = 1, pooled_w = 1;
  double spatial_scale = 1;
  int64_t sampling_ratio = -1;
  bool aligned = false;
};

template <typename T>
struct RoiGrid {
  int64_t batch_index = 0, grid_h = 0, grid_w = 0;
  T start_h = 0, start_w = 0, bin_h = 0, bin_w = 0, count = 1;
  T reciprocal = 1;               // 1 / count
  bool exact_reciprocal = true;   // count is a power of two: x / count == x * reciprocal, bit for bit
};

// torchvision's share of one tap in backward, (grad * w) / count, given grad * w. A power-of-two
// count (the heads' 2 x 2 samples) divides exactly as a multiplication by its reciprocal, which
// costs far less than a division on either device.
template <typename T>
MRCNN_HD inline T divide_by_count(const RoiGrid<T>& r, T value) {
  return r.exact_reciprocal ? value * r.reciprocal : value / r.count;
}

// roi: (batch_index, x1, y1, x2, y2) in input pixels.
template <typename T>
MRCNN_HD inline RoiGrid<T> roi_grid(const RoiAlignParams& p, const T* roi) {
  const T scale = static_cast<T>(p.spatial_scale);
  const T offset = p.aligned ? T(0.5) : T(0);
  RoiGrid<T> r;
  r.start_w = roi[1] * scale - offset;
  r.start_h = roi[2] * scale - offset;
  T roi_w = roi[3] * scale - offset - r.start_w, roi_h = roi[4] * scale - offset - r.start_h;
  if (!p.aligned) {  // malformed RoIs are forced to 1x1 (std::max's rule)
    roi_w = roi_w < T(1) ? T(1) : roi_w;
    roi_h = roi_h < T(1) ? T(1) : roi_h;
  }
  r.bin_h = roi_h / static_cast<T>(p.pooled_h);
  r.bin_w = roi_w / static_cast<T>(p.pooled_w);
  r.batch_index = static_cast<int64_t>(roi[0]);
  // ceil in double: exact for a float argument, and the same overload on host and device.
  r.grid_h = p.sampling_ratio > 0 ? p.sampling_ratio
                                  : static_cast<int64_t>(ceil(static_cast<double>(roi_h / static_cast<T>(p.pooled_h))));
  r.grid_w = p.sampling_ratio > 0 ? p.sampling_ratio
                                  : static_cast<int64_t>(ceil(static_cast<double>(roi_w / static_cast<T>(p.pooled_w))));
  const int64_t samples = r.grid_h * r.grid_w > 1 ? r.grid_h * r.grid_w : 1;
  r.count = static_cast<T>(samples);
  r.reciprocal = T(1) / r.count;
  r.exact_reciprocal = (samples & (samples - 1)) == 0;
  return r;
}

// Sample (iy, ix) of bin (ph, pw): four pixel offsets in a plane and their weights (all zero when the
// sample lies more than one pixel outside the map, NaN included).
template <typename T>
MRCNN_HD inline void sample_taps(const RoiAlignParams& p, const RoiGrid<T>& r, int64_t ph, int64_t pw, int64_t iy,
                                 int64_t ix, int64_t pos[4], T w[4]) {
  const T yy = r.start_h + static_cast<T>(ph) * r.bin_h +
               static_cast<T>(static_cast<float>(iy) + .5f) * r.bin_h / static_cast<T>(r.grid_h);
  const T xx = r.start_w + static_cast<T>(pw) * r.bin_w +
               static_cast<T>(static_cast<float>(ix) + .5f) * r.bin_w / static_cast<T>(r.grid_w);
  if (!(yy >= -1 && yy <= static_cast<T>(p.height) && xx >= -1 && xx <= static_cast<T>(p.width))) {
    for (int k = 0; k < 4; ++k) pos[k] = 0, w[k] = T(0);
    return;
  }
  T y = yy <= 0 ? T(0) : yy, x = xx <= 0 ? T(0) : xx;
  int64_t y_low = static_cast<int64_t>(y), x_low = static_cast<int64_t>(x), y_high, x_high;
  if (y_low >= p.height - 1) {
    y_high = y_low = p.height - 1;
    y = static_cast<T>(y_low);
  } else {
    y_high = y_low + 1;
  }
  if (x_low >= p.width - 1) {
    x_high = x_low = p.width - 1;
    x = static_cast<T>(x_low);
  } else {
    x_high = x_low + 1;
  }
  const T ly = y - static_cast<T>(y_low), lx = x - static_cast<T>(x_low);
  const T hy = T(1) - ly, hx = T(1) - lx;
  pos[0] = y_low * p.width + x_low, pos[1] = y_low * p.width + x_high;
  pos[2] = y_high * p.width + x_low, pos[3] = y_high * p.width + x_high;
  w[0] = hy * hx, w[1] = hy * lx, w[2] = ly * hx, w[3] = ly * lx;
}

}  // namespace mrcnn
