// Anchors in float32 exactly as torchvision computes them (ratios' square roots, round half to even).
#include "maskrcnn/anchor_generator.h"

#include <cmath>

namespace mrcnn::detection {

AnchorGenerator::AnchorGenerator(std::vector<std::vector<double>> sizes, std::vector<std::vector<double>> aspect_ratios)
    : sizes_(std::move(sizes)), aspect_ratios_(std::move(aspect_ratios)) {
  check(!sizes_.empty() && (aspect_ratios_.size() == 1 || aspect_ratios_.size() == sizes_.size()),
        "AnchorGenerator: ", sizes_.size(), " size lists but ", aspect_ratios_.size(), " aspect ratio lists");
  if (aspect_ratios_.size() == 1) aspect_ratios_.resize(sizes_.size(), aspect_ratios_[0]);
}

int64_t AnchorGenerator::num_anchors_per_location() const {
  return static_cast<int64_t>(sizes_[0].size() * aspect_ratios_[0].size());
}

Tensor AnchorGenerator::cell_anchors(size_t level) const {
  const auto& scales = sizes_.at(level);
  const auto& ratios = aspect_ratios_.at(level);
  Tensor out = empty({static_cast<int64_t>(scales.size() * ratios.size()), 4});
  float* a = out.data<float>();
  for (double ratio : ratios) {
    const float h_ratio = std::sqrt(static_cast<float>(ratio));
    const float w_ratio = 1.0f / h_ratio;
    for (double scale : scales) {
      const float ws = w_ratio * static_cast<float>(scale), hs = h_ratio * static_cast<float>(scale);
      *a++ = std::nearbyint(-ws / 2);
      *a++ = std::nearbyint(-hs / 2);
      *a++ = std::nearbyint(ws / 2);
      *a++ = std::nearbyint(hs / 2);
    }
  }
  return out;
}

Tensor AnchorGenerator::grid_anchors(std::pair<int64_t, int64_t> batch_size,
                                     const std::vector<std::pair<int64_t, int64_t>>& feature_sizes) const {
  check(feature_sizes.size() == sizes_.size(), "AnchorGenerator: ", sizes_.size(), " anchor levels but ",
        feature_sizes.size(), " feature maps");
  const int64_t per_location = num_anchors_per_location();
  int64_t total = 0;
  for (auto [h, w] : feature_sizes) total += h * w * per_location;
  Tensor out = empty({total, 4});
  float* dst = out.data<float>();
  for (size_t level = 0; level < feature_sizes.size(); ++level) {
    const auto [grid_h, grid_w] = feature_sizes[level];
    const int64_t stride_h = batch_size.first / grid_h, stride_w = batch_size.second / grid_w;
    const Tensor cell = cell_anchors(level);
    const float* base = cell.data<float>();
    for (int64_t y = 0; y < grid_h; ++y)
      for (int64_t x = 0; x < grid_w; ++x) {
        const float sx = static_cast<float>(x * stride_w), sy = static_cast<float>(y * stride_h);
        for (int64_t a = 0; a < per_location; ++a) {
          *dst++ = sx + base[a * 4 + 0];
          *dst++ = sy + base[a * 4 + 1];
          *dst++ = sx + base[a * 4 + 2];
          *dst++ = sy + base[a * 4 + 3];
        }
      }
  }
  return out;
}

}  // namespace mrcnn::detection
