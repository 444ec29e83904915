// Box coding in float32 exactly as torchvision writes the expressions (same operation order; this
// file is compiled without FMA contraction, so the same rounding).
#include "maskrcnn/box_coder.h"

#include <algorithm>

namespace mrcnn::detection {

namespace {
void check_boxes(const Tensor& boxes, const char* what) {
  check(boxes.dim() == 2 && boxes.size(1) == 4 && boxes.dtype() == kFloat32 && boxes.is_contiguous(),
        "BoxCoder: ", what, " must be contiguous float32 [N, 4], got ", shape_str(boxes.sizes()));
}
}  // namespace

Tensor BoxCoder::encode(const Tensor& reference_boxes, const Tensor& proposals) const {
  check_boxes(reference_boxes, "reference boxes");
  check_boxes(proposals, "proposals");
  check(reference_boxes.size(0) == proposals.size(0), "BoxCoder::encode: ", reference_boxes.size(0),
        " reference boxes for ", proposals.size(0), " proposals");
  const int64_t n = proposals.size(0);
  Tensor out = empty({n, 4});
  const float* gt = reference_boxes.data<float>();
  const float* p = proposals.data<float>();
  float* d = out.data<float>();
  const float wx = static_cast<float>(weights_[0]), wy = static_cast<float>(weights_[1]);
  const float ww = static_cast<float>(weights_[2]), wh = static_cast<float>(weights_[3]);
  for (int64_t i = 0; i < n; ++i) {
    const float* a = p + i * 4;
    const float* g = gt + i * 4;
    const float ex_w = a[2] - a[0], ex_h = a[3] - a[1];
    const float ex_x = a[0] + 0.5f * ex_w, ex_y = a[1] + 0.5f * ex_h;
    const float gt_w = g[2] - g[0], gt_h = g[3] - g[1];
    const float gt_x = g[0] + 0.5f * gt_w, gt_y = g[1] + 0.5f * gt_h;
    d[i * 4 + 0] = wx * (gt_x - ex_x) / ex_w;
    d[i * 4 + 1] = wy * (gt_y - ex_y) / ex_h;
    d[i * 4 + 2] = ww * std::log(gt_w / ex_w);
    d[i * 4 + 3] = wh * std::log(gt_h / ex_h);
  }
  return out;
}

Tensor BoxCoder::decode(const Tensor& rel_codes, const Tensor& boxes) const {
  check_boxes(boxes, "boxes");
  check(rel_codes.dim() == 2 && rel_codes.size(0) == boxes.size(0) && rel_codes.size(1) % 4 == 0 &&
            rel_codes.dtype() == kFloat32,
        "BoxCoder::decode: codes ", shape_str(rel_codes.sizes()), " do not fit boxes ", shape_str(boxes.sizes()));
  const Tensor codes = copy_as(rel_codes, kFloat32, kCPU);
  const int64_t n = boxes.size(0), k = codes.size(1) / 4;
  Tensor out = empty({n, k, 4});
  const float* b = boxes.data<float>();
  const float* c = codes.data<float>();
  float* o = out.data<float>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j) decode_one(b + i * 4, c + (i * k + j) * 4, o + (i * k + j) * 4);
  return out;
}

void clip_boxes_to_image(const Tensor& boxes, int64_t height, int64_t width) {
  check_boxes(boxes, "boxes to clip");
  float* b = boxes.data<float>();
  for (int64_t i = 0, count = boxes.numel(); i < count; i += 4)
    clip_box(b + i, static_cast<float>(height), static_cast<float>(width));
}

}  // namespace mrcnn::detection
