// BoxCoder (torchvision.models.detection._utils): boxes <-> regression deltas (dx, dy, dw, dh)
// relative to reference boxes, each divided by its weight; widths are x2 - x1 (no +1). Index work:
// float32 arithmetic in torchvision's order, not differentiable (the losses compare deltas).
#pragma once
#include <algorithm>
#include <array>
#include <cmath>

#include "tensor/tensor.h"

namespace mrcnn::detection {

class BoxCoder {
 public:
  explicit BoxCoder(std::array<double, 4> weights, double bbox_xform_clip = std::log(1000.0 / 16))
      : weights_(weights), clip_(bbox_xform_clip) {}
  // The deltas that take each `proposals` row to the matching `reference_boxes` row: [N, 4].
  Tensor encode(const Tensor& reference_boxes, const Tensor& proposals) const;
  // rel_codes [N, K * 4] applied to boxes [N, 4] -> [N, K, 4]; dw and dh clamped to the clip first.
  Tensor decode(const Tensor& rel_codes, const Tensor& boxes) const;
  // One box: `code` (4 deltas) applied to `box` (x1, y1, x2, y2), into out. decode() runs this per
  // row, so a caller decoding box by box gets the same bits.
  void decode_one(const float* box, const float* code, float* out) const {
    const float wx = static_cast<float>(weights_[0]), wy = static_cast<float>(weights_[1]);
    const float ww = static_cast<float>(weights_[2]), wh = static_cast<float>(weights_[3]);
    const float clip = static_cast<float>(clip_);
    const float width = box[2] - box[0], height = box[3] - box[1];
    const float ctr_x = box[0] + 0.5f * width, ctr_y = box[1] + 0.5f * height;
    const float dx = code[0] / wx, dy = code[1] / wy;
    const float dw = std::min(code[2] / ww, clip), dh = std::min(code[3] / wh, clip);
    const float pred_x = dx * width + ctr_x, pred_y = dy * height + ctr_y;
    const float half_w = 0.5f * (std::exp(dw) * width), half_h = 0.5f * (std::exp(dh) * height);
    out[0] = pred_x - half_w;
    out[1] = pred_y - half_h;
    out[2] = pred_x + half_w;
    out[3] = pred_y + half_h;
  }

 private:
  std::array<double, 4> weights_;
  double clip_;
};

// Clip [N, 4] boxes to [0, width] x [0, height] (torchvision.ops.clip_boxes_to_image), in place.
void clip_boxes_to_image(const Tensor& boxes, int64_t height, int64_t width);
// Indices of boxes with width and height >= min_size (remove_small_boxes).
std::vector<int64_t> small_boxes_removed(const Tensor& boxes, double min_size);
// The same two for one box (x1, y1, x2, y2).
inline void clip_box_to_image(float* box, float height, float width) {
  box[0] = std::clamp(box[0], 0.0f, width);
  box[1] = std::clamp(box[1], 0.0f, height);
  box[2] = std::clamp(box[2], 0.0f, width);
  box[3] = std::clamp(box[3], 0.0f, height);
}
inline bool box_is_large_enough(const float* box, float min_size) {
  return box[2] - box[0] >= min_size && box[3] - box[1] >= min_size;
}

}  // namespace mrcnn::detection
