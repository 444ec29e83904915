// RPN head, proposal filtering and losses, step by step as torchvision's rpn.py.
#include "maskrcnn/rpn.h"

#include <algorithm>
#include <numeric>
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
    const Tensor t = (*conv_)(feature);
    logits.push_back((*cls_logits_)(t));
    deltas.push_back((*bbox_pred_)(t));
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

namespace {

// Anchors per image on each level: A * H * W.
std::vector<int64_t> level_counts(const std::vector<Tensor>& objectness) {
  std::vector<int64_t> counts;
  for (const auto& o : objectness) counts.push_back(o.size(1) * o.size(2) * o.size(3));
  return counts;
}

}  // namespace

std::pair<std::vector<Tensor>, std::vector<Tensor>> RegionProposalNetwork::filter_proposals(
    const std::vector<Tensor>& objectness, const std::vector<Tensor>& pred_bbox_deltas, const Tensor& anchors,
    const std::vector<ImageSize>& image_sizes) const {
  autograd::NoGradGuard no_grad;
  return proposals_from_flat(flatten_predictions(objectness, 1), flatten_predictions(pred_bbox_deltas, 4),
                             level_counts(objectness), anchors, Tensor(), image_sizes);
}

std::pair<std::vector<Tensor>, std::vector<Tensor>> RegionProposalNetwork::proposals_from_flat(
    const Tensor& flat_scores, const Tensor& flat_deltas, const std::vector<int64_t>& counts, const Tensor& anchors,
    const Tensor& device_anchors, const std::vector<ImageSize>& image_sizes) const {
  autograd::NoGradGuard no_grad;
  const int64_t num_images = static_cast<int64_t>(image_sizes.size());
  const Device device = flat_scores.device();
  const Tensor scores_all = ops::reshape(flat_scores.detach(), {num_images, -1});
  const int64_t total = anchors.size(0);
  check(scores_all.size(1) == total, "RPN: ", scores_all.size(1), " predictions for ", total, " anchors");
  check(!anchors.device().is_cuda(), "RPN: anchors must be on the host");
  const int64_t pre_nms_top_n = is_training() ? config_.rpn_pre_nms_top_n_train : config_.rpn_pre_nms_top_n_test;
  const int64_t post_nms_top_n = is_training() ? config_.rpn_post_nms_top_n_train : config_.rpn_post_nms_top_n_test;

  // Top-k per level where the predictions are, all images at once: candidates [N, P], each level's
  // columns sorted by descending logit.
  std::optional<Stage> stage(std::in_place, "  rpn proposals: top-k per level");
  std::vector<ops::ProposalLevel> levels;
  std::vector<Tensor> top_values, top_indices;
  int64_t offset = 0;
  for (const int64_t count : counts) {
    const auto top = ops::topk(ops::narrow(scores_all, 1, offset, count), std::min(pre_nms_top_n, count), 1);
    top_values.push_back(top.values);
    top_indices.push_back(top.indices);
    levels.push_back({top.indices.size(1), offset});
    offset += count;
  }
  const Tensor logits = ops::cat(top_values, 1), within = ops::cat(top_indices, 1);
  const int64_t columns = logits.size(1);

  // Decode, clip, score and the size / score tests where the predictions are (the same bits on
  // either device, ops/box_coding.h).
  stage.emplace("  rpn proposals: decode");
  const ProposalRule rule{box_coder_.coding(), 1e-3f, static_cast<float>(config_.rpn_score_thresh)};
  const Tensor anchors_there = device_anchors.defined() && device_anchors.device() == device ? device_anchors : ops::to(anchors, device);
  const ops::ProposalCandidates candidates = ops::decode_proposals(anchors_there, flat_deltas.detach(), logits, within, levels,
                                                                   image_sizes, rule);
  stage.emplace("  rpn proposals: nms");
  // NMS per image and level. On a GPU the candidates stay there: each (image, level) is one segment
  // of rows already in score order, invalid rows excluded by the kernel, one launch and one wait;
  // only the kept rows' indices, and the candidates, come back. On the CPU the valid candidates go
  // through batched_nms as torchvision's do (up to 1000 boxes it offsets the levels' coordinates
  // instead, which rounds IoUs differently: in_order_nms_ lets tests compare the two paths above that).
  std::vector<std::vector<int64_t>> kept_rows(static_cast<size_t>(num_images));  // per image, ascending
  const bool in_order = device.is_cuda() || in_order_nms_;
  if (in_order) {
    std::vector<int64_t> offsets{0};
    for (int64_t image = 0; image < num_images; ++image)
      for (const auto& level : levels) offsets.push_back(offsets.back() + level.columns);
    const auto kept = ops::nms_in_order(candidates.boxes, candidates.valid, offsets, config_.rpn_nms_thresh);
    for (int64_t image = 0; image < num_images; ++image)
      for (size_t level = 0; level < levels.size(); ++level) {
        const auto& rows = kept[static_cast<size_t>(image) * levels.size() + level];
        kept_rows[image].insert(kept_rows[image].end(), rows.begin(), rows.end());
      }
  }
  const Tensor boxes = ops::contiguous(ops::to(candidates.boxes, kCPU)), scores = ops::contiguous(ops::to(candidates.scores, kCPU));
  const float* box_data = boxes.data<float>();
  const float* score_data = scores.data<float>();
  if (!in_order) {
    const Tensor valid = ops::contiguous(ops::to(candidates.valid, kCPU));
    const uint8_t* valid_data = valid.data<uint8_t>();
    std::vector<ops::NmsProblem> problems;
    std::vector<std::vector<int64_t>> rows_of(static_cast<size_t>(num_images));
    for (int64_t image = 0; image < num_images; ++image) {
      std::vector<float> kept_boxes, kept_scores;
      std::vector<int64_t> kept_levels;
      for (int64_t level = 0, column = 0; level < static_cast<int64_t>(levels.size()); ++level)
        for (int64_t j = 0; j < levels[level].columns; ++j, ++column) {
          const int64_t r = image * columns + column;
          if (!valid_data[r]) continue;
          rows_of[image].push_back(r);
          kept_boxes.insert(kept_boxes.end(), box_data + 4 * r, box_data + 4 * r + 4);
          kept_scores.push_back(score_data[r]);
          kept_levels.push_back(level);
        }
      const int64_t count = static_cast<int64_t>(kept_scores.size());
      problems.push_back({from_vector(kept_boxes, {count, 4}), from_vector(kept_scores, {count}), from_vector(kept_levels, {count})});
    }
    const std::vector<Tensor> keep = ops::batched_nms_each(problems, config_.rpn_nms_thresh, kCPU);
    for (int64_t image = 0; image < num_images; ++image) {
      for (const int64_t k : to_vector<int64_t>(keep[image])) kept_rows[image].push_back(rows_of[image][k]);
      std::sort(kept_rows[image].begin(), kept_rows[image].end());
    }
  }
  // torchvision's order: the kept set by index, then stably by descending score; the first
  // post_nms_top_n of each image.
  std::vector<Tensor> boxes_out, scores_out;
  for (int64_t image = 0; image < num_images; ++image) {
    std::vector<int64_t>& rows = kept_rows[image];
    std::stable_sort(rows.begin(), rows.end(), [&](int64_t x, int64_t y) { return score_data[x] > score_data[y]; });
    rows.resize(static_cast<size_t>(std::min<int64_t>(post_nms_top_n, static_cast<int64_t>(rows.size()))));
    const int64_t count = static_cast<int64_t>(rows.size());
    std::vector<float> image_boxes, image_scores;
    for (const int64_t r : rows) {
      image_boxes.insert(image_boxes.end(), box_data + 4 * r, box_data + 4 * r + 4);
      image_scores.push_back(score_data[r]);
    }
    boxes_out.push_back(from_vector(image_boxes, {count, 4}));
    scores_out.push_back(from_vector(image_scores, {count}));
  }
  return {boxes_out, scores_out};
}

// Targets depend only on anchors and ground truth: matching and sampling run on the host, and only
// the sampled rows (indices, labels, the positives' regression targets) go to the predictions'
// device, where the losses gather their few hundred rows.
RegionProposalNetwork::SampledTargets RegionProposalNetwork::sample_targets(const Tensor& anchors,
                                                                            const std::vector<Target>& targets) {
  autograd::NoGradGuard no_grad;
  const int64_t total = anchors.size(0), images = static_cast<int64_t>(targets.size());
  struct PerImage {
    std::vector<int64_t> labels, matches, positive, negative;  // positive: anchors; negative: flat rows
    Tensor regression_targets;
  };
  std::vector<PerImage> per_image(static_cast<size_t>(images));
  // Images side by side (on a GPU this host work overlaps the backbone; at batch 8 it is ~4x batch 2's).
  for_each_image_in_parallel(images, [&](int64_t image) {
    PerImage& p = per_image[image];
    const Tensor& gt = targets[image].boxes;
    p.labels.assign(static_cast<size_t>(total), 0);
    if (gt.size(0) > 0) {
      p.matches = matcher_(ops::box_iou(gt, anchors));
      for (size_t i = 0; i < p.matches.size(); ++i)
        p.labels[i] = p.matches[i] >= 0 ? 1 : (p.matches[i] == Matcher::kBelowLowThreshold ? 0 : -1);
    }
  });
  // Each image draws from a copy of the generator taken where sampling one image after another would
  // have left it: the same bits as sequential sampling, whatever the thread count.
  std::vector<Generator> draws;
  for (const PerImage& p : per_image) {
    draws.push_back(generator_);
    sampler_.skip_draws(p.labels, generator_);
  }
  for_each_image_in_parallel(images, [&](int64_t image) {
    PerImage& p = per_image[image];
    const auto masks = sampler_(p.labels, draws[image]);
    const int64_t base = image * total;
    std::vector<int64_t> matched;
    for (int64_t i = 0; i < total; ++i) {
      if (masks.positive[i]) p.positive.push_back(i), matched.push_back(p.matches[i]);
      if (masks.negative[i]) p.negative.push_back(base + i);
    }
    const int64_t count = static_cast<int64_t>(p.positive.size());
    if (count > 0)  // positives exist only when the image has ground truth boxes
      p.regression_targets =
          box_coder_.encode(ops::contiguous(ops::index_select(targets[image].boxes, 0, from_vector(matched, {count}))),
                            ops::contiguous(ops::index_select(anchors, 0, from_vector(p.positive, {count}))));
  });
  SampledTargets out;
  std::vector<Tensor> positive_targets;
  for (int64_t image = 0; image < images; ++image) {
    for (const int64_t i : per_image[image].positive) out.sampled.push_back(image * total + i);
    if (per_image[image].regression_targets.defined()) positive_targets.push_back(per_image[image].regression_targets);
  }
  out.positives = static_cast<int64_t>(out.sampled.size());
  for (const PerImage& p : per_image) out.sampled.insert(out.sampled.end(), p.negative.begin(), p.negative.end());
  out.regression_targets = positive_targets.empty() ? zeros({0, 4}) : ops::cat(positive_targets, 0);
  return out;
}

std::pair<Tensor, Tensor> RegionProposalNetwork::loss_from_flat(const Tensor& flat_scores, const Tensor& deltas,
                                                                const SampledTargets& sampled) const {
  const Device device = flat_scores.device();
  const Tensor scores = ops::reshape(flat_scores, {-1});
  const int64_t num_sampled = static_cast<int64_t>(sampled.sampled.size());
  // Host indices: index_select checks them in place and uploads them (no wait for the GPU).
  const Tensor sampled_index = from_vector(sampled.sampled, {num_sampled});
  const Tensor positive_index = ops::narrow(sampled_index, 0, 0, sampled.positives);
  const Tensor box_loss = ops::smooth_l1_loss(ops::index_select(deltas, 0, positive_index),
                                              ops::to(sampled.regression_targets, device), 1.0 / 9, ops::Reduction::Sum) /
                          static_cast<double>(num_sampled);
  std::vector<float> labels(static_cast<size_t>(num_sampled), 0.0f);
  std::fill(labels.begin(), labels.begin() + sampled.positives, 1.0f);
  const Tensor objectness_loss = ops::binary_cross_entropy_with_logits(ops::index_select(scores, 0, sampled_index),
                                                                       from_vector(labels, {num_sampled}, device));
  return {objectness_loss, box_loss};
}

RPNOutput RegionProposalNetwork::forward(const ImageList& images, const std::vector<Tensor>& features,
                                         const std::vector<Target>* targets) {
  check(!features.empty(), "RPN: no feature maps");
  RPNOutput out;
  {
    const Stage stage("rpn head");
    std::tie(out.objectness, out.pred_bbox_deltas) = head->forward(features);
  }
  std::optional<Stage> stage(std::in_place, "rpn anchors (host)");
  std::vector<std::pair<int64_t, int64_t>> feature_sizes;
  std::vector<int64_t> key{images.tensors.size(2), images.tensors.size(3)};
  for (const auto& f : features) {
    feature_sizes.emplace_back(f.size(2), f.size(3));
    key.insert(key.end(), {f.size(2), f.size(3)});
  }
  if (key != anchors_key_ || !anchors_.defined()) {
    anchors_ = anchor_generator_.grid_anchors({images.tensors.size(2), images.tensors.size(3)}, feature_sizes);
    anchors_key_ = key;
    device_anchors_ = Tensor();
  }
  out.anchors = anchors_;
  const Device device = features.front().device();
  if (device.is_cuda() && !(device_anchors_.defined() && device_anchors_.device() == device)) device_anchors_ = ops::to(anchors_, device);
  // The training targets first: host work that needs no prediction, so on a GPU it overlaps the
  // head still running there (proposal selection below waits for the head's top-k).
  SampledTargets sampled;
  if (is_training()) {
    check(targets != nullptr && targets->size() == images.image_sizes.size(), "RPN: training needs one target per image");
    stage.emplace("rpn targets: matching and sampling (host)");
    sampled = sample_targets(out.anchors, *targets);
  }
  // Flattened once for both the proposals (detached) and the losses.
  stage.emplace("rpn proposals");
  const Tensor scores = flatten_predictions(out.objectness, 1), deltas = flatten_predictions(out.pred_bbox_deltas, 4);
  std::tie(out.boxes, out.scores) =
      proposals_from_flat(scores, deltas, level_counts(out.objectness), out.anchors,
                          device.is_cuda() ? device_anchors_ : Tensor(), images.image_sizes);
  stage.reset();
  if (is_training()) {
    const Stage loss_stage("rpn loss");
    std::tie(out.loss_objectness, out.loss_rpn_box_reg) = loss_from_flat(scores, deltas, sampled);
  }
  return out;
}

}  // namespace mrcnn::detection
