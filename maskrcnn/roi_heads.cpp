// RoI heads training samples, losses and inference postprocessing, following roi_heads.py.
#include "maskrcnn/roi_heads.h"

#include <optional>

#include "autograd/node.h"
#include "maskrcnn/profile.h"
#include "ops/ops.h"

namespace mrcnn::detection {

namespace {
// RoIs per pass through a head at inference (one level at a time, at most this many): bounds what
// the heads hold (512 box RoIs: 25 MB of pooled rows; 64 mask RoIs: 51 MB for the 28x28 maps)
// while each pass stays a large GEMM or convolution. CPU outputs do not depend on it.
constexpr int64_t kInferenceBoxRows = 512;
constexpr int64_t kInferenceMaskRows = 64;
}  // namespace

RoIHeads::RoIHeads(const Config& config)
    : config_(config),
      box_roi_pool_(7, 2),
      mask_roi_pool_(14, 2),
      box_coder_({config.bbox_reg_weights[0], config.bbox_reg_weights[1], config.bbox_reg_weights[2],
                  config.bbox_reg_weights[3]}),
      matcher_(config.box_fg_iou_thresh, config.box_bg_iou_thresh, false),
      sampler_(config.box_batch_size_per_image, config.box_positive_fraction),
      generator_(config.seed * 2 + 2) {
  const int64_t channels = config.fpn_out_channels;
  box_head = register_module("box_head", std::make_shared<TwoMLPHead>(channels * 7 * 7, config.representation_size));
  box_predictor = register_module("box_predictor",
                                  std::make_shared<FastRCNNPredictor>(config.representation_size, config.num_classes));
  mask_head = register_module("mask_head", make_mask_head(channels, config.mask_layers, config.mask_dilation));
  mask_predictor = register_module(
      "mask_predictor",
      std::make_shared<MaskRCNNPredictor>(config.mask_layers.back(), config.mask_dim_reduced, config.num_classes));
}

TrainingSamples RoIHeads::select_training_samples(const std::vector<Tensor>& proposals,
                                                  const std::vector<Target>& targets) {
  autograd::NoGradGuard no_grad;
  check(proposals.size() == targets.size(), "RoIHeads: ", proposals.size(), " proposal sets for ", targets.size(), " targets");
  for (const Target& target : targets)
    check(target.boxes.dtype() == kFloat32 && target.labels.dtype() == kInt64,
          "RoIHeads: target boxes must be float32 and labels int64");
  const int64_t images = static_cast<int64_t>(proposals.size());
  struct PerImage {
    Tensor candidates;
    std::vector<int64_t> matched, labels;
  };
  std::vector<PerImage> per_image(static_cast<size_t>(images));
  // Images side by side: on a GPU this host work sits between the proposals and the box head.
  for_each_image_in_parallel(images, [&](int64_t image) {
    const Target& target = targets[image];
    PerImage& p = per_image[image];
    // add_gt_proposals: the gt boxes join the candidates, so every gt has a perfect match.
    p.candidates = ops::contiguous(ops::cat({proposals[image].detach(), target.boxes}, 0));
    const int64_t n = p.candidates.size(0);
    p.matched.assign(static_cast<size_t>(n), 0);
    p.labels.assign(static_cast<size_t>(n), 0);
    if (target.boxes.size(0) > 0) {
      const auto matches = matcher_(ops::box_iou(target.boxes, p.candidates));
      const auto gt_labels = to_vector<int64_t>(target.labels);
      for (int64_t i = 0; i < n; ++i) {
        p.matched[i] = std::max<int64_t>(matches[i], 0);
        p.labels[i] = matches[i] == Matcher::kBelowLowThreshold ? 0
                      : matches[i] == Matcher::kBetweenThresholds ? -1
                                                                  : gt_labels[p.matched[i]];
      }
    }
  });
  // Each image draws from a copy of the generator taken where sampling one image after another would
  // have left it (the same bits, whatever the thread count).
  std::vector<Generator> draws;
  for (const PerImage& p : per_image) {
    draws.push_back(generator_);
    sampler_.skip_draws(p.labels, generator_);
  }
  TrainingSamples samples;
  samples.proposals.resize(static_cast<size_t>(images));
  samples.matched_idxs.resize(static_cast<size_t>(images));
  samples.labels.resize(static_cast<size_t>(images));
  samples.regression_targets.resize(static_cast<size_t>(images));
  for_each_image_in_parallel(images, [&](int64_t image) {
    const PerImage& p = per_image[image];
    const auto masks = sampler_(p.labels, draws[image]);
    std::vector<int64_t> keep, kept_matched, kept_labels;
    for (int64_t i = 0, n = p.candidates.size(0); i < n; ++i)
      if (masks.positive[i] || masks.negative[i]) keep.push_back(i), kept_matched.push_back(p.matched[i]), kept_labels.push_back(p.labels[i]);
    const Tensor sampled = ops::contiguous(ops::index_select(p.candidates, 0, from_vector(keep)));
    const Tensor& gt = targets[image].boxes;
    const Tensor gt_boxes = gt.size(0) > 0 ? gt : zeros({1, 4});
    const Tensor matched_gt = ops::contiguous(ops::index_select(gt_boxes, 0, from_vector(kept_matched)));
    samples.proposals[image] = sampled;
    samples.matched_idxs[image] = from_vector(kept_matched);
    samples.labels[image] = from_vector(kept_labels);
    samples.regression_targets[image] = box_coder_.encode(matched_gt, sampled);
  });
  return samples;
}

std::pair<Tensor, Tensor> fastrcnn_loss(const Tensor& class_logits, const Tensor& box_regression,
                                        const std::vector<Tensor>& labels, const std::vector<Tensor>& regression_targets) {
  // Labels and targets are host tensors; the losses run where the logits are. The labels go to
  // cross_entropy as host tensors (it checks them there and uploads them), and only the positives'
  // regression targets are uploaded.
  const Device device = class_logits.device();
  const Tensor all_labels = ops::cat(labels, 0);
  const Tensor classification_loss = ops::cross_entropy(class_logits, all_labels);
  const auto label_values = to_vector<int64_t>(all_labels);
  const int64_t n = class_logits.size(0), k = box_regression.size(1) / 4;
  std::vector<int64_t> positive, positive_rows;
  for (int64_t i = 0; i < n; ++i)
    if (label_values[i] > 0) positive.push_back(i), positive_rows.push_back(i * k + label_values[i]);
  const Tensor positive_targets = ops::to(ops::index_select(ops::cat(regression_targets, 0), 0, from_vector(positive)), device);
  const Tensor per_class = ops::reshape(box_regression, {n * k, 4});
  const Tensor box_loss = ops::smooth_l1_loss(ops::index_select(per_class, 0, from_vector(positive_rows)),
                                              positive_targets, 1.0 / 9, ops::Reduction::Sum) /
                          static_cast<double>(n);
  return {classification_loss, box_loss};
}

Tensor maskrcnn_loss(const Tensor& mask_logits, const std::vector<Tensor>& proposals, const std::vector<Target>& targets,
                     const std::vector<Tensor>& matched_idxs) {
  const int64_t m = mask_logits.size(-1), k = mask_logits.size(1);
  const Device device = mask_logits.device();
  std::vector<Tensor> mask_targets;
  std::vector<int64_t> rows;
  int64_t row = 0;
  {
    autograd::NoGradGuard no_grad;
    for (size_t image = 0; image < proposals.size(); ++image) {
      const auto idx = to_vector<int64_t>(matched_idxs[image]);
      const auto gt_labels = to_vector<int64_t>(targets[image].labels);
      for (int64_t i : idx) rows.push_back(row++ * k + gt_labels[i]);
      if (idx.empty()) continue;
      // project_masks_on_boxes: roi_align of the gt mask over each proposal (aligned=false, adaptive
      // sampling), where the logits are: the masks go up as bytes (a GPU samples the up to 128 x 28 x 28
      // x grid points per image that one host core otherwise would).
      const Tensor gt_masks = ops::unsqueeze(ops::to(ops::to(targets[image].masks, device), kFloat32), 1);
      std::vector<float> index_column(idx.begin(), idx.end());
      const Tensor rois =
          ops::contiguous(ops::cat({from_vector(index_column, {static_cast<int64_t>(idx.size()), 1}), proposals[image]}, 1));
      mask_targets.push_back(ops::select(ops::roi_align(gt_masks, rois, {m, m}, 1.0, -1, false), 1, 0));
    }
  }
  if (rows.empty()) return ops::sum(mask_logits) * 0.0;
  // The loss gathers the true class's channel where the logits are ([P, M, M], not [P, K, M, M]).
  const Tensor logits = ops::index_select(ops::reshape(mask_logits, {-1, m, m}), 0, from_vector(rows));
  return ops::binary_cross_entropy_with_logits(logits, ops::cat(mask_targets, 0));
}

std::vector<Tensor> maskrcnn_inference(const Tensor& mask_logits, const std::vector<Tensor>& labels) {
  const int64_t k = mask_logits.size(1), m = mask_logits.size(-1);
  std::vector<int64_t> rows;
  int64_t row = 0;
  for (const auto& l : labels)
    for (int64_t label : to_vector<int64_t>(l)) rows.push_back(row++ * k + label);
  // The detected class's channel is picked where the logits are, and the probabilities stay there
  // (postprocess pastes them into the image on that device).
  const Tensor probs =
      ops::sigmoid(ops::index_select(ops::reshape(mask_logits, {-1, m, m}), 0, from_vector(rows)));
  std::vector<Tensor> out;
  int64_t start = 0;
  for (const auto& l : labels) {
    out.push_back(ops::unsqueeze(ops::narrow(probs, 0, start, l.size(0)), 1));
    start += l.size(0);
  }
  return out;
}

std::vector<Detections> RoIHeads::postprocess_detections(const Tensor& class_logits, const Tensor& box_regression,
                                                         const std::vector<Tensor>& proposals,
                                                         const std::vector<ImageSize>& image_sizes) const {
  autograd::NoGradGuard no_grad;
  const Tensor all_proposals = ops::contiguous(ops::cat(proposals, 0));
  const Tensor pred_boxes = box_coder_.decode(ops::contiguous(box_regression.detach()), all_proposals);  // [N, K, 4]
  const Tensor pred_scores = ops::contiguous(ops::softmax(class_logits.detach(), -1));
  const int64_t k = pred_scores.size(1);
  std::vector<Detections> results;
  int64_t start = 0;
  for (size_t image = 0; image < proposals.size(); ++image) {
    const int64_t n = proposals[image].size(0);
    Tensor boxes = ops::contiguous(ops::reshape(ops::narrow(pred_boxes, 0, start, n), {n * k, 4}));
    clip_boxes_to_image(boxes, image_sizes[image].first, image_sizes[image].second);
    const float* scores = pred_scores.data<float>() + start * k;
    const float* box_values = boxes.data<float>();
    // Background column dropped; rows in (proposal, class) order; score > thresh; width/height >= 1e-2.
    std::vector<int64_t> keep, labels;
    std::vector<float> kept_scores;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 1; c < k; ++c) {
        const int64_t r = i * k + c;
        if (!(scores[r] > static_cast<float>(config_.box_score_thresh))) continue;
        const float* b = box_values + r * 4;
        if (!box_large_enough(b, 1e-2f)) continue;
        keep.push_back(r), labels.push_back(c), kept_scores.push_back(scores[r]);
      }
    const int64_t count = static_cast<int64_t>(keep.size());
    const Tensor kept_boxes = ops::index_select(boxes, 0, from_vector(keep));
    const Tensor score_tensor = from_vector(kept_scores, {count});
    const Tensor label_tensor = from_vector(labels);
    Tensor nms_keep = ops::batched_nms(kept_boxes, score_tensor, label_tensor, config_.box_nms_thresh);
    nms_keep = ops::narrow(nms_keep, 0, 0, std::min(config_.box_detections_per_img, nms_keep.size(0)));
    Detections d;
    d.boxes = ops::contiguous(ops::index_select(kept_boxes, 0, nms_keep));
    d.scores = ops::contiguous(ops::index_select(score_tensor, 0, nms_keep));
    d.labels = ops::contiguous(ops::index_select(label_tensor, 0, nms_keep));
    results.push_back(d);
    start += n;
  }
  return results;
}

std::pair<Tensor, Tensor> RoIHeads::box_predictions(const std::vector<Tensor>& features, const std::vector<Tensor>& proposals,
                                                    const std::vector<ImageSize>& image_sizes) {
  const Stage stage("box RoIAlign + head");
  // The head runs on the pooled rows grouped by level; its [R, 1024] output goes back to proposal
  // order, not the [R, 256 * 7 * 7] pooled rows (a copy 12x larger, forward and backward). Without
  // a gradient to record, one level at a time (the pooled rows of one level held, not of all).
  const Tensor box_features = box_roi_pool_.run_head(features, proposals, image_sizes, kInferenceBoxRows,
                                                     [&](const Tensor& rows) { return (*box_head)(rows); });
  return box_predictor->forward(box_features);
}

Tensor RoIHeads::mask_logits_of(const std::vector<Tensor>& features, const std::vector<Tensor>& boxes,
                                const std::vector<ImageSize>& image_sizes) {
  const Stage stage("mask RoIAlign + head");
  // As the box head: [R, classes, 28, 28] logits go back to proposal order, not the
  // [R, 256, 14, 14] pooled rows.
  return mask_roi_pool_.run_head(features, boxes, image_sizes, kInferenceMaskRows,
                                 [&](const Tensor& rows) { return (*mask_predictor)((*mask_head)(rows)); });
}

std::vector<Detections> RoIHeads::detect(const std::vector<Tensor>& features, const std::vector<Tensor>& proposals,
                                         const std::vector<ImageSize>& image_sizes) {
  const auto [class_logits, box_regression] = box_predictions(features, proposals, image_sizes);
  const Stage stage("box loss / detections");
  return postprocess_detections(ops::to(class_logits, kCPU), ops::to(box_regression, kCPU), proposals, image_sizes);
}

std::vector<Tensor> RoIHeads::mask_probabilities(const std::vector<Tensor>& features, const std::vector<Detections>& detections,
                                                 const std::vector<ImageSize>& image_sizes) {
  std::vector<Tensor> boxes, labels;
  for (const auto& d : detections) boxes.push_back(d.boxes), labels.push_back(d.labels);
  const Tensor logits = mask_logits_of(features, boxes, image_sizes);
  const Stage stage("mask loss / probabilities");
  return maskrcnn_inference(logits, labels);
}

RoIHeadsOutput RoIHeads::forward(const std::vector<Tensor>& features, const std::vector<Tensor>& proposals,
                                 const std::vector<ImageSize>& image_sizes, const std::vector<Target>* targets) {
  RoIHeadsOutput out;
  TrainingSamples samples;
  if (is_training()) {
    check(targets != nullptr && targets->size() == proposals.size(), "RoIHeads: training needs one target per image");
    const Stage stage("roi sampling (host)");
    samples = select_training_samples(proposals, *targets);
    out.proposals = samples.proposals;
  } else {
    out.proposals = proposals;
  }
  std::tie(out.class_logits, out.box_regression) = box_predictions(features, out.proposals, image_sizes);
  // The losses run on the head outputs' device; detection postprocessing on the host.
  std::optional<Stage> host_stage(std::in_place, "box loss / detections");

  std::vector<Tensor> mask_proposals, positive_matched;
  if (is_training()) {
    std::tie(out.loss_classifier, out.loss_box_reg) =
        fastrcnn_loss(out.class_logits, out.box_regression, samples.labels, samples.regression_targets);
    for (size_t image = 0; image < proposals.size(); ++image) {
      std::vector<int64_t> positive;
      const auto labels = to_vector<int64_t>(samples.labels[image]);
      for (size_t i = 0; i < labels.size(); ++i)
        if (labels[i] > 0) positive.push_back(static_cast<int64_t>(i));
      mask_proposals.push_back(ops::contiguous(ops::index_select(samples.proposals[image], 0, from_vector(positive))));
      positive_matched.push_back(ops::index_select(samples.matched_idxs[image], 0, from_vector(positive)));
    }
  } else {
    out.detections = postprocess_detections(ops::to(out.class_logits, kCPU), ops::to(out.box_regression, kCPU), out.proposals,
                                            image_sizes);
    for (const auto& d : out.detections) mask_proposals.push_back(d.boxes);
  }
  host_stage.reset();
  out.mask_logits = mask_logits_of(features, mask_proposals, image_sizes);
  const Stage mask_host_stage("mask loss / probabilities");
  if (is_training()) {
    out.loss_mask = maskrcnn_loss(out.mask_logits, mask_proposals, *targets, positive_matched);
  } else {
    std::vector<Tensor> labels;
    for (const auto& d : out.detections) labels.push_back(d.labels);
    const auto probs = maskrcnn_inference(out.mask_logits, labels);
    for (size_t i = 0; i < probs.size(); ++i) out.detections[i].masks = probs[i];
  }
  return out;
}

}  // namespace mrcnn::detection
