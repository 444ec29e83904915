// Augmentations on contiguous CPU tensors, not recorded by autograd (they precede the model).
#include "maskrcnn/augment.h"

#include <algorithm>

#include "ops/ops.h"

namespace mrcnn::detection {

namespace {
// Mirrors the last dim of a contiguous [..., W] tensor of 1-byte or 4-byte elements.
template <typename T>
Tensor mirrored(const Tensor& t) {
  const Tensor src = copy_as(t, t.dtype(), kCPU);
  Tensor out = empty_like(src);
  const int64_t w = src.size(-1), rows = w ? src.numel() / w : 0;
  const T* s = src.data<T>();
  T* d = out.data<T>();
  for (int64_t r = 0; r < rows; ++r) std::reverse_copy(s + r * w, s + (r + 1) * w, d + r * w);
  return out;
}
}  // namespace

Tensor mirrored_boxes(const Tensor& boxes, float width) {
  Tensor out = copy_as(boxes, kFloat32, kCPU);
  float* b = out.data<float>();
  for (int64_t i = 0; i < out.size(0); ++i) {
    const float x1 = b[i * 4], x2 = b[i * 4 + 2];
    b[i * 4] = width - x2;
    b[i * 4 + 2] = width - x1;
  }
  return out;
}

Tensor mirrored_image(const Tensor& image) {
  autograd::NoGradGuard no_grad;
  return mirrored<float>(image);
}

void horizontal_flip(Tensor& image, Target& target) {
  autograd::NoGradGuard no_grad;
  const float width = static_cast<float>(image.size(-1));
  image = mirrored<float>(image);
  if (target.masks.defined()) target.masks = mirrored<uint8_t>(target.masks);
  target.boxes = mirrored_boxes(target.boxes, width);
}

void augment(Tensor& image, Target& target, const AugmentOptions& options, Generator& generator) {
  autograd::NoGradGuard no_grad;
  // Three draws per image, always, so the stream does not depend on which branches were taken.
  const auto u = to_vector<double>(rand({3}, kFloat64, kCPU, &generator));
  if (u[0] < options.flip_probability) horizontal_flip(image, target);
  const double brightness = (2 * u[1] - 1) * options.brightness;
  const double contrast = 1 + (2 * u[2] - 1) * options.contrast;
  if (brightness != 0 || contrast != 1) {
    Tensor out = copy_as(image, kFloat32, kCPU);
    float* p = out.data<float>();
    const int64_t n = out.numel();
    double mean = 0;
    for (int64_t i = 0; i < n; ++i) mean += p[i];
    mean /= std::max<int64_t>(n, 1);
    for (int64_t i = 0; i < n; ++i)
      p[i] = static_cast<float>(std::clamp((p[i] - mean) * contrast + mean + brightness, 0.0, 1.0));
    image = out;
  }
}

}  // namespace mrcnn::detection
