// Flip test-time augmentation: each image is also run mirrored left-right, as one batch with the
// originals, and the two views are combined, much as Detectron2's GeneralizedRCNNWithTTA does:
// - detections: both views' detections (the mirrored view's boxes mirrored back) merged by the
//   box head's own per-class NMS, each survivor scored by its mean over the two views (where
//   Detectron2 keeps the higher score; merge_flip_views in flip_test.h);
// - masks: for every merged box, the mask head runs on each view (the box mirrored for the
//   mirrored view) and the two 28x28 probability maps, the mirrored one mirrored back, are averaged
//   before pasting.
// The model was trained with flips (brain slices are close to left-right symmetric), so each view is
// an equally good estimate and their average is less noisy than either.
#include "maskrcnn/flip_test.h"

#include <algorithm>

#include "maskrcnn/augment.h"
#include "maskrcnn/mask_rcnn.h"
#include "maskrcnn/profile.h"
#include "ops/ops.h"

namespace mrcnn::detection {

namespace {

// 28x28 maps [D, 1, M, M] mirrored along their last dim, where they are.
Tensor mirrored_maps(const Tensor& maps) {
  const int64_t m = maps.size(-1);
  std::vector<int64_t> reversed(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) reversed[static_cast<size_t>(i)] = m - 1 - i;
  return ops::contiguous(ops::index_select(maps, maps.dim() - 1, from_vector(reversed)));
}

}  // namespace

Detections merge_flip_views(const Detections& a, const Detections& b, const Config& config) {
  const Tensor boxes = ops::contiguous(ops::cat({a.boxes, b.boxes}, 0));
  const Tensor scores = ops::contiguous(ops::cat({a.scores, b.scores}, 0));
  const Tensor labels = ops::contiguous(ops::cat({a.labels, b.labels}, 0));
  const auto kept = to_vector<int64_t>(ops::batched_nms(boxes, scores, labels, config.box_nms_thresh));
  const auto score = to_vector<float>(scores);
  const auto label = to_vector<int64_t>(labels);
  const int64_t from_a = a.boxes.size(0), total = boxes.size(0);
  const Tensor iou = ops::contiguous(ops::box_iou(ops::index_select(boxes, 0, from_vector(kept)), boxes));
  const float* overlap = iou.data<float>();
  std::vector<float> mean_score(kept.size());
  for (size_t k = 0; k < kept.size(); ++k) {
    const int64_t self = kept[k];
    const int64_t other_begin = self < from_a ? from_a : 0, other_end = self < from_a ? total : from_a;
    float other = 0.0f, best_overlap = 0.0f;
    for (int64_t j = other_begin; j < other_end; ++j) {
      const float o = overlap[static_cast<int64_t>(k) * total + j];
      if (label[j] == label[self] && o >= config.box_nms_thresh && o > best_overlap) best_overlap = o, other = score[j];
    }
    mean_score[k] = 0.5f * (score[self] + other);
  }
  std::vector<size_t> order(kept.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;  // stable: ties keep NMS's order
  std::stable_sort(order.begin(), order.end(), [&](size_t p, size_t q) { return mean_score[p] > mean_score[q]; });
  order.resize(std::min(order.size(), static_cast<size_t>(config.box_detections_per_img)));
  std::vector<int64_t> rows;
  std::vector<float> final_scores;
  for (size_t k : order) rows.push_back(kept[k]), final_scores.push_back(mean_score[k]);
  Detections d;
  d.boxes = ops::contiguous(ops::index_select(boxes, 0, from_vector(rows)));
  d.scores = from_vector(final_scores);
  d.labels = ops::contiguous(ops::index_select(labels, 0, from_vector(rows)));
  return d;
}

MaskRCNNOutput MaskRCNN::forward_flip_test(const std::vector<Tensor>& images) {
  autograd::NoGradGuard no_grad;
  const size_t n = images.size();
  std::vector<Tensor> views = images;
  std::vector<ImageSize> original_sizes;
  for (const auto& image : images) {
    original_sizes.emplace_back(image.size(-2), image.size(-1));
    views.push_back(mirrored_image(image));
  }
  MaskRCNNOutput out = forward_to_proposals(views, nullptr);
  const std::vector<Tensor> roi_features(out.features.begin(), out.features.begin() + 4);
  const std::vector<ImageSize>& sizes = out.images.image_sizes;
  const std::vector<Detections> both = roi_heads->detect(roi_features, out.rpn.boxes, sizes);

  // The merged detections for the originals, and the same boxes mirrored for the mirrored views.
  std::vector<Detections> merged(2 * n);
  for (size_t i = 0; i < n; ++i) {
    const float width = static_cast<float>(sizes[i].second);
    Detections mirrored_back = both[n + i];
    mirrored_back.boxes = mirrored_boxes(both[n + i].boxes, width);
    merged[i] = merge_flip_views(both[i], mirrored_back, config_);
    merged[n + i] = merged[i];
    merged[n + i].boxes = mirrored_boxes(merged[i].boxes, width);
  }
  const std::vector<Tensor> probabilities = roi_heads->mask_probabilities(roi_features, merged, sizes);
  for (size_t i = 0; i < n; ++i) {
    const Tensor views_sum = ops::add(probabilities[i], mirrored_maps(probabilities[n + i]));
    merged[i].masks = ops::contiguous(ops::mul(views_sum, 0.5));
  }
  // roi.detections keeps the 28x28 probabilities (as forward leaves them); detections get them pasted.
  out.roi.detections.assign(merged.begin(), merged.begin() + static_cast<std::ptrdiff_t>(n));
  out.detections = out.roi.detections;
  const std::vector<ImageSize> original_view_sizes(sizes.begin(), sizes.begin() + static_cast<std::ptrdiff_t>(n));
  const Stage stage("postprocess (paste masks)");
  transform_.postprocess(out.detections, original_view_sizes, original_sizes);
  return out;
}

}  // namespace mrcnn::detection
