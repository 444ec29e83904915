// paste_masks' per-pixel body, shared by the CPU loop (ops/paste_masks.cpp) and the CUDA kernel
// (cuda/paste_masks.cu). It is torchvision's paste_masks_in_image folded into one pass: the M x M
// mask, padded by `padding` zero pixels, is resized bilinearly (align_corners=False, in float, in
// PyTorch's order of operations: what ops::interpolate computes) to its expanded box, and each image
// pixel inside the box reads its value there; every other pixel is 0.
#pragma once
#include <cmath>
#include <cstdint>

#include "cuda/host_device.h"

namespace mrcnn {

// Where one detection lands: the expanded box truncated to ints (x0, y0, w, h) and its part inside
// the image, [cx0, cx1) x [cy0, cy1). Computed on the host (paste_box), read by every pixel.
struct PasteBox {
  int64_t x0 = 0, y0 = 0, w = 1, h = 1;
  int64_t cx0 = 0, cx1 = 0, cy0 = 0, cy1 = 0;
};

// A coordinate as int64 by truncation, like .to(int64); values beyond +-1e9 (a diverged model's
// boxes) saturate instead of being cast (undefined behaviour past int64's range).
inline int64_t paste_coordinate(float v) {
  if (v >= -1e9f && v <= 1e9f) return static_cast<int64_t>(v);
  return v > 0 ? int64_t{1000000000} : int64_t{-1000000000};
}

// torchvision's expand_boxes (in float32) scaled by (M + 2 * padding) / M, then .to(int64).
inline PasteBox paste_box(const float box[4], int64_t m, int64_t padding, int64_t im_h, int64_t im_w) {
  for (int k = 0; k < 4; ++k)
    if (!std::isfinite(box[k])) return PasteBox{};  // NaN or infinite: nothing to paste (cx0 == cx1)
  const float scale = static_cast<float>(static_cast<double>(m + 2 * padding) / static_cast<double>(m));
  const float w_half = (box[2] - box[0]) * 0.5f * scale;
  const float h_half = (box[3] - box[1]) * 0.5f * scale;
  const float x_c = (box[2] + box[0]) * 0.5f, y_c = (box[3] + box[1]) * 0.5f;
  PasteBox b;
  b.x0 = paste_coordinate(x_c - w_half), b.y0 = paste_coordinate(y_c - h_half);
  const int64_t x1 = paste_coordinate(x_c + w_half), y1 = paste_coordinate(y_c + h_half);
  b.w = x1 - b.x0 + 1 > 1 ? x1 - b.x0 + 1 : 1;
  b.h = y1 - b.y0 + 1 > 1 ? y1 - b.y0 + 1 : 1;
  b.cx0 = b.x0 > 0 ? b.x0 : 0, b.cx1 = x1 + 1 < im_w ? x1 + 1 : im_w;
  b.cy0 = b.y0 > 0 ? b.y0 : 0, b.cy1 = y1 + 1 < im_h ? y1 + 1 : im_h;
  return b;
}

// Output index i of an axis resized from `in` to `out` samples: PyTorch's linear taps for
// align_corners=False (source max(in/out * (i + 0.5) - 0.5, 0) in float; an unchanged size copies).
MRCNN_HD inline void paste_taps(int64_t i, int64_t in, int64_t out, int64_t& i0, int64_t& i1, float& w0, float& w1) {
  if (in == out) {
    i0 = i1 = i, w0 = 1, w1 = 0;
    return;
  }
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  float src = scale * (static_cast<float>(i) + 0.5f) - 0.5f;
  if (src < 0) src = 0;
  i0 = static_cast<int64_t>(src);
  float lambda = src - static_cast<float>(i0);
  lambda = lambda < 0 ? 0.0f : (lambda > 1 ? 1.0f : lambda);
  i1 = i0 + (i0 < in - 1 ? 1 : 0);
  w0 = 1.0f - lambda, w1 = lambda;
}

// The value of image pixel (y, x) for one detection whose M x M mask is `mask`.
MRCNN_HD inline float paste_pixel(const float* mask, int64_t m, int64_t padding, const PasteBox& b, int64_t y, int64_t x) {
  if (y < b.cy0 || y >= b.cy1 || x < b.cx0 || x >= b.cx1) return 0.0f;
  const int64_t padded = m + 2 * padding;
  int64_t r0, r1, c0, c1;
  float h0, h1, w0, w1;
  paste_taps(y - b.y0, padded, b.h, r0, r1, h0, h1);
  paste_taps(x - b.x0, padded, b.w, c0, c1, w0, w1);
  // The zero border is implicit: padded (r, c) is mask (r - padding, c - padding) inside, else 0.
  const auto at = [&](int64_t r, int64_t c) {
    r -= padding, c -= padding;
    return r >= 0 && r < m && c >= 0 && c < m ? mask[r * m + c] : 0.0f;
  };
  return h0 * (w0 * at(r0, c0) + w1 * at(r0, c1)) + h1 * (w0 * at(r1, c0) + w1 * at(r1, c1));
}

}  // namespace mrcnn
