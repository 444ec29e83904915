// RPN head, proposal filtering and losses, step by step as torchvision's rpn.py.
#include "maskrcnn/rpn.h"

#include <algorithm>
#include <optional>

#include "autograd/node.h"
#include "maskrcnn/profile.h"
#include "nn/init.h"
#include "ops/ops.h"

namespace mrcnn::detection {

RPNHead::RPNHead(int64_t in_channels, int64_t num_anchors) {
  nn::Conv2dSpec conv{in_channels, in_channels, 3, {}, true};
  conv.options.padding = 1;
  conv_ = register_module("conv", std::make_shared<nn::Sequential>());
  conv_->push_back(nn::conv_relu(conv));
  cls_logits_ = register_module("cls_logits", std::make_shared<nn::Conv2d>(nn::Conv2dSpec{in_channels, num_anchors, 1, {}, true}));
  bbox_pred_ = register_module("bbox_pred", std::make_shared<nn::Conv2d>(nn::Conv2dSpec{in_channels, num_anchors * 4, 1, {}, true}));
  for (auto& [name, t] : named_parameters()) {
    if (t.dim() == 4) nn::init::normal_(t, 0.0, 0.01);
    else nn::init::constant_(t, 0.0);
  }
}

std::pair<std::vector<Tensor>, std::vector<Tensor>> RPNHead::forward(const std::vector<Tensor>& features) {
  std::vector<Tensor> logits, deltas;
  for (const auto& feature : features) {
    const Tensor t = conv_->forward(feature);
    logits.push_back(cls_logits_->forward(t));
    deltas.push_back(bbox_pred_->forward(t));
  }
  return {logits, deltas};
}

Tensor flatten_predictions(const std::vector<Tensor>& per_level, int64_t values_per_anchor) {
  std::vector<Tensor> flat;
  for (const auto& x : per_level) {
    const int64_t n = x.size(0), a = x.size(1) / values_per_anchor, h = x.size(2), w = x.size(3);
    Tensor t = ops::reshape(x, {n, a, values_per_anchor, h, w});
    t = ops::permute(t, {0, 3, 4, 1, 2});
    flat.push_back(ops::reshape(t, {n, h * w * a, values_per_anchor}));
  }
  Tensor all = ops::cat(flat, 1);
  return ops::reshape(all, {-1, values_per_anchor});
}

RegionProposalNetwork::RegionProposalNetwork(const Config& config)
    : config_(config),
      anchor_generator_(config.anchor_sizes, config.aspect_ratios),
      box_coder_({1.0, 1.0, 1.0, 1.0}),
      matcher_(config.rpn_fg_iou_thresh, config.rpn_bg_iou_thresh, true),
      sampler_(config.rpn_batch_size_per_image, config.rpn_positive_fraction),
      generator_(config.seed * 2 + 1) {
  head = register_module("head", std::make_shared<RPNHead>(config.fpn_out_channels,
                                                           anchor_generator_.num_anchors_per_location()));
}

std::pair<std::vector<Tensor>, std::vector<Tensor>> RegionProposalNetwork::filter_proposals(
    const std::vector<Tensor>& objectness, const std::vector<Tensor>& pred_bbox_deltas, const Tensor& anchors,
    const std::vector<ImageSize>& image_sizes, Device nms_device) const {
  autograd::NoGradGuard no_grad;
  const int64_t num_images = static_cast<int64_t>(image_sizes.size());
  const Tensor scores_all = ops::contiguous(ops::reshape(flatten_predictions(objectness, 1).detach(), {num_images, -1}));
  const Tensor deltas = ops::contiguous(flatten_predictions(pred_bbox_deltas, 4).detach());
  const int64_t total = anchors.size(0);
  check(scores_all.size(1) == total, "RPN: ", scores_all.size(1), " predictions for ", total, " anchors");
  std::optional<Stage> stage(std::in_place, "  rpn proposals: decode");
  std::vector<Tensor> anchors_per_image(static_cast<size_t>(num_images), anchors);
  const Tensor proposals =
      box_coder_.decode(deltas, ops::contiguous(ops::cat(anchors_per_image, 0))).detach();  // [N*total, 1, 4]
  const float* all_boxes = proposals.data<float>();

  std::vector<int64_t> level_counts;
  for (const auto& o : objectness) level_counts.push_back(o.size(1) * o.size(2) * o.size(3));
  const int64_t pre_nms_top_n = is_training() ? config_.rpn_pre_nms_top_n_train : config_.rpn_pre_nms_top_n_test;
  const int64_t post_nms_top_n = is_training() ? config_.rpn_post_nms_top_n_train : config_.rpn_post_nms_top_n_test;

  std::vector<Tensor> boxes_out, scores_out;
  for (int64_t image = 0; image < num_images; ++image) {
    stage.emplace("  rpn proposals: top-k per level");
    const Tensor image_scores = ops::select(scores_all, 0, image);
    std::vector<int64_t> picked, level_of;
    int64_t offset = 0;
    for (size_t level = 0; level < level_counts.size(); ++level) {
      const int64_t count = level_counts[level];
      const int64_t k = std::min(pre_nms_top_n, count);
      const Tensor top = ops::topk(ops::narrow(image_scores, 0, offset, count), k).indices;
      for (int64_t i : to_vector<int64_t>(top)) {
        picked.push_back(offset + i);
        level_of.push_back(static_cast<int64_t>(level));
      }
      offset += count;
    }
    const float* logits = image_scores.data<float>();
    Tensor boxes = empty({static_cast<int64_t>(picked.size()), 4});
    std::vector<float> scores;
    for (size_t i = 0; i < picked.size(); ++i) {
      std::copy_n(all_boxes + (image * total + picked[i]) * 4, 4, boxes.data<float>() + i * 4);
      scores.push_back(1.0f / (1.0f + std::exp(-logits[picked[i]])));
    }
    clip_boxes_to_image(boxes, image_sizes[image].first, image_sizes[image].second);
    std::vector<int64_t> keep;
    for (int64_t i : small_boxes_removed(boxes, 1e-3))
      if (scores[i] >= static_cast<float>(config_.rpn_score_thresh)) keep.push_back(i);
    const Tensor keep_index = from_vector(keep, {static_cast<int64_t>(keep.size())});
    std::vector<float> kept_scores;
    std::vector<int64_t> kept_levels;
    for (int64_t i : keep) kept_scores.push_back(scores[i]), kept_levels.push_back(level_of[i]);
    const Tensor kept_boxes = ops::index_select(boxes, 0, keep_index);
    const Tensor score_tensor = from_vector(kept_scores, {static_cast<int64_t>(keep.size())});
    stage.emplace("  rpn proposals: nms");
    const Tensor level_tensor = from_vector(kept_levels, {static_cast<int64_t>(keep.size())});
    Tensor nms_keep = ops::to(ops::batched_nms(ops::to(kept_boxes, nms_device), ops::to(score_tensor, nms_device),
                                               ops::to(level_tensor, nms_device), config_.rpn_nms_thresh),
                              kCPU);
    nms_keep = ops::narrow(nms_keep, 0, 0, std::min(post_nms_top_n, nms_keep.size(0)));
    boxes_out.push_back(ops::contiguous(ops::index_select(kept_boxes, 0, nms_keep)));
    scores_out.push_back(ops::contiguous(ops::index_select(score_tensor, 0, nms_keep)));
  }
  return {boxes_out, scores_out};
}

std::pair<Tensor, Tensor> RegionProposalNetwork::compute_loss(const std::vector<Tensor>& objectness,
                                                              const std::vector<Tensor>& pred_bbox_deltas,
                                                              const Tensor& anchors,
                                                              const std::vector<Target>& targets) {
  std::vector<float> labels;
  std::vector<Tensor> regression_targets;
  std::vector<int64_t> positive, sampled;
  {
    autograd::NoGradGuard no_grad;
    const int64_t total = anchors.size(0);
    std::vector<int64_t> negative;
    for (size_t image = 0; image < targets.size(); ++image) {
      const Tensor& gt = targets[image].boxes;
      std::vector<int64_t> image_labels(static_cast<size_t>(total), 0);
      Tensor matched_gt = zeros({total, 4});
      if (gt.size(0) > 0) {
        const auto matches = matcher_(ops::box_iou(gt, anchors));
        std::vector<int64_t> clamped(matches.size());
        for (size_t i = 0; i < matches.size(); ++i) {
          clamped[i] = std::max<int64_t>(matches[i], 0);
          image_labels[i] = matches[i] >= 0 ? 1 : (matches[i] == Matcher::kBelowLowThreshold ? 0 : -1);
        }
        matched_gt = ops::contiguous(ops::index_select(gt, 0, from_vector(clamped, {total})));
      }
      regression_targets.push_back(box_coder_.encode(matched_gt, anchors));
      const auto masks = sampler_(image_labels, generator_);
      const int64_t base = static_cast<int64_t>(image) * total;
      for (int64_t i = 0; i < total; ++i) {
        labels.push_back(static_cast<float>(image_labels[i]));
        if (masks.positive[i]) positive.push_back(base + i);
        if (masks.negative[i]) negative.push_back(base + i);
      }
    }
    sampled = positive;
    sampled.insert(sampled.end(), negative.begin(), negative.end());
  }
  const Tensor scores = ops::reshape(flatten_predictions(objectness, 1), {-1});
  const Tensor deltas = flatten_predictions(pred_bbox_deltas, 4);
  const Tensor positive_index = from_vector(positive, {static_cast<int64_t>(positive.size())});
  const Tensor sampled_index = from_vector(sampled, {static_cast<int64_t>(sampled.size())});
  const Tensor targets_all = ops::cat(regression_targets, 0);
  const Tensor box_loss =
      ops::smooth_l1_loss(ops::index_select(deltas, 0, positive_index), ops::index_select(targets_all, 0, positive_index),
                          1.0 / 9, ops::Reduction::Sum) /
      static_cast<double>(sampled.size());
  const Tensor label_tensor = from_vector(labels, {static_cast<int64_t>(labels.size())});
  const Tensor objectness_loss = ops::binary_cross_entropy_with_logits(
      ops::index_select(scores, 0, sampled_index), ops::index_select(label_tensor, 0, sampled_index));
  return {objectness_loss, box_loss};
}

RPNOutput RegionProposalNetwork::forward(const ImageList& images, const std::vector<Tensor>& features,
                                         const std::vector<Target>* targets) {
  RPNOutput out;
  {
    const Stage stage("rpn head");
    std::tie(out.objectness, out.pred_bbox_deltas) = head->forward(features);
  }
  std::optional<Stage> stage(std::in_place, "rpn outputs to host");
  // Proposal selection and the losses run on the host: a GPU's predictions come back through
  // differentiable copies, so the loss gradients flow back to the device head.
  for (auto* outputs : {&out.objectness, &out.pred_bbox_deltas})
    for (Tensor& t : *outputs) t = ops::to(t, kCPU);
  stage.emplace("rpn anchors (host)");
  std::vector<std::pair<int64_t, int64_t>> feature_sizes;
  for (const auto& f : features) feature_sizes.emplace_back(f.size(2), f.size(3));
  out.anchors = anchor_generator_.grid_anchors({images.tensors.size(2), images.tensors.size(3)}, feature_sizes);
  stage.emplace("rpn proposals (host)");
  std::tie(out.boxes, out.scores) =
      filter_proposals(out.objectness, out.pred_bbox_deltas, out.anchors, images.image_sizes, features[0].device());
  stage.reset();
  if (is_training()) {
    const Stage loss_stage("rpn loss (host)");
    check(targets != nullptr && targets->size() == images.image_sizes.size(), "RPN: training needs one target per image");
    std::tie(out.loss_objectness, out.loss_rpn_box_reg) =
        compute_loss(out.objectness, out.pred_bbox_deltas, out.anchors, *targets);
  }
  return out;
}

}  // namespace mrcnn::detection
