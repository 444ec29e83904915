// Level mapping in float32 as torchvision computes it, then one roi_align per level; the pooled rows
// are put back in box order with an index_select (differentiable, unlike an in-place scatter), by
// forward() here or by the RoI heads on their smaller outputs (forward_grouped).
#include "maskrcnn/poolers.h"

#include <cmath>
#include <functional>
#include <numeric>

#include "autograd/node.h"
#include "ops/ops.h"

namespace mrcnn::detection {

std::vector<double> MultiScaleRoIAlign::infer_scales(const std::vector<Tensor>& features,
                                                     const std::vector<ImageSize>& image_sizes) {
  int64_t max_h = 0, max_w = 0;
  for (auto [h, w] : image_sizes) max_h = std::max(max_h, h), max_w = std::max(max_w, w);
  std::vector<double> scales;
  for (const auto& f : features) {
    // 2 ** round(log2(feature size / image size)), from the height (torchvision asserts the width agrees).
    const float approx = static_cast<float>(static_cast<double>(f.size(2)) / static_cast<double>(max_h));
    scales.push_back(std::exp2(std::nearbyint(std::log2(approx))));
  }
  return scales;
}

std::vector<int64_t> MultiScaleRoIAlign::map_levels(const std::vector<Tensor>& boxes, int64_t k_min,
                                                    int64_t k_max) const {
  std::vector<int64_t> levels;
  for (const auto& b : boxes) {
    const Tensor c = copy_as(b, kFloat32, kCPU);
    const float* p = c.data<float>();
    for (int64_t i = 0; i < c.size(0); ++i) {
      const float area = (p[i * 4 + 2] - p[i * 4 + 0]) * (p[i * 4 + 3] - p[i * 4 + 1]);
      const float s = std::sqrt(area);
      float level = std::floor(4.0f + std::log2(s / 224.0f) + 1e-6f);
      level = std::clamp(level, static_cast<float>(k_min), static_cast<float>(k_max));
      levels.push_back(static_cast<int64_t>(level) - k_min);
    }
  }
  return levels;
}

Tensor MultiScaleRoIAlign::forward(const std::vector<Tensor>& features, const std::vector<Tensor>& boxes,
                                   const std::vector<ImageSize>& image_sizes) const {
  const Grouped grouped = forward_grouped(features, boxes, image_sizes);
  return ops::index_select(grouped.rows, 0, grouped.position);
}

Tensor MultiScaleRoIAlign::pool_each_level(const std::vector<Tensor>& features, const std::vector<Tensor>& boxes,
                                           const std::vector<ImageSize>& image_sizes, int64_t max_rows,
                                           const std::function<void(const Tensor&)>& visit) const {
  check(!features.empty(), "MultiScaleRoIAlign: no feature maps");
  const auto scales = infer_scales(features, image_sizes);
  // rois [R, 5]: (image index, x1, y1, x2, y2), like torchvision's _convert_to_roi_format.
  std::vector<Tensor> rows;
  for (size_t i = 0; i < boxes.size(); ++i) {
    const Tensor b = boxes[i].detach();
    rows.push_back(ops::cat({full({b.size(0), 1}, static_cast<double>(i), b.dtype()), b}, 1));
  }
  // The boxes come from the host's index work and the RoIs stay there: roi_align and index_select
  // check host RoIs and indices in place and upload them (checking GPU ones would wait for the GPU).
  const Tensor rois = ops::contiguous(ops::cat(rows, 0));
  const int64_t num_rois = rois.size(0);
  const ops::Size2 size(output_size_, output_size_);
  // The boxes of one level, max_rows at a time (all at once for 0), pooled and visited.
  const auto pool = [&](size_t level, const std::vector<int64_t>& in_level) {
    const int64_t count = static_cast<int64_t>(in_level.size());
    const int64_t step = max_rows > 0 ? max_rows : count;
    for (int64_t first = 0; first < count; first += step) {
      const int64_t n = std::min(step, count - first);
      const std::vector<int64_t> part(in_level.begin() + first, in_level.begin() + first + n);
      visit(ops::roi_align(features[level], ops::index_select(rois, 0, from_vector(part, {n})), size, scales[level],
                           sampling_ratio_, false));
    }
  };
  std::vector<int64_t> position(static_cast<size_t>(num_rois));  // row of each roi in level order
  if (features.size() == 1) {
    std::iota(position.begin(), position.end(), int64_t{0});
    // Every box at once is visited even when there are none, as roi_align pools none.
    if (max_rows == 0 || num_rois <= max_rows) visit(ops::roi_align(features[0], rois, size, scales[0], sampling_ratio_, false));
    else pool(0, position);
    return from_vector(position, {num_rois});
  }
  const int64_t k_min = static_cast<int64_t>(std::lround(-std::log2(scales.front())));
  const int64_t k_max = static_cast<int64_t>(std::lround(-std::log2(scales.back())));
  const auto levels = map_levels(boxes, k_min, k_max);
  int64_t next = 0;
  for (size_t level = 0; level < features.size(); ++level) {
    std::vector<int64_t> in_level;
    for (int64_t r = 0; r < num_rois; ++r)
      if (levels[r] == static_cast<int64_t>(level)) in_level.push_back(r), position[r] = next++;
    if (!in_level.empty()) pool(level, in_level);
  }
  return from_vector(position, {num_rois});
}

MultiScaleRoIAlign::Grouped MultiScaleRoIAlign::forward_grouped(const std::vector<Tensor>& features,
                                                                const std::vector<Tensor>& boxes,
                                                                const std::vector<ImageSize>& image_sizes) const {
  std::vector<Tensor> pooled;
  const Tensor position = pool_each_level(features, boxes, image_sizes, 0, [&](const Tensor& rows) { pooled.push_back(rows); });
  if (pooled.empty()) return {empty_rows(features), position};
  return {pooled.size() == 1 ? pooled[0] : ops::cat(pooled, 0), position};
}

Tensor MultiScaleRoIAlign::forward_per_level(const std::vector<Tensor>& features, const std::vector<Tensor>& boxes,
                                             const std::vector<ImageSize>& image_sizes, int64_t max_rows,
                                             const std::function<Tensor(const Tensor&)>& head) const {
  std::vector<Tensor> outputs;
  const Tensor position =
      pool_each_level(features, boxes, image_sizes, max_rows, [&](const Tensor& rows) { outputs.push_back(head(rows)); });
  if (outputs.empty()) outputs.push_back(head(empty_rows(features)));
  return ops::index_select(outputs.size() == 1 ? outputs[0] : ops::cat(outputs, 0), 0, position);
}

Tensor MultiScaleRoIAlign::run_head(const std::vector<Tensor>& features, const std::vector<Tensor>& boxes,
                                    const std::vector<ImageSize>& image_sizes, int64_t max_rows,
                                    const std::function<Tensor(const Tensor&)>& head) const {
  if (!autograd::grad_enabled()) return forward_per_level(features, boxes, image_sizes, max_rows, head);
  const Grouped pooled = forward_grouped(features, boxes, image_sizes);
  return ops::index_select(head(pooled.rows), 0, pooled.position);
}

Tensor MultiScaleRoIAlign::empty_rows(const std::vector<Tensor>& features) const {
  return zeros({0, features[0].size(1), output_size_, output_size_}, features[0].dtype(), features[0].device());
}

}  // namespace mrcnn::detection
