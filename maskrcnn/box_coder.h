// BoxCoder (torchvision.models.detection._utils): boxes <-> regression deltas (dx, dy, dw, dh)
// relative to reference boxes, each divided by its weight; widths are x2 - x1 (no +1). Index work:
// float32 arithmetic in torchvision's order, not differentiable (the losses compare deltas).
#pragma once
#include <algorithm>
#include <array>
#include <cmath>

#include "ops/box_coding.h"
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
  // One box: `code` (4 deltas) applied to `box` (x1, y1, x2, y2), into out. decode() runs it per row;
  // the RPN's proposals (ops::decode_proposals, either device) run the same body, decode_box.
  void decode_one(const float* box, const float* code, float* out) const { decode_box(box, code, coding(), out); }
  // The weights and the clamp in float32, as the shared per-box bodies take them (ops/box_coding.h).
  BoxCoding coding() const {
    return {static_cast<float>(weights_[0]), static_cast<float>(weights_[1]), static_cast<float>(weights_[2]),
            static_cast<float>(weights_[3]), static_cast<float>(clip_)};
  }

 private:
  std::array<double, 4> weights_;
  double clip_;
};

// Clip [N, 4] boxes to [0, width] x [0, height] (torchvision.ops.clip_boxes_to_image), in place.
void clip_boxes_to_image(const Tensor& boxes, int64_t height, int64_t width);

}  // namespace mrcnn::detection
