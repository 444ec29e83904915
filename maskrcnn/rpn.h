// The region proposal network (torchvision.models.detection.rpn): a shared 3x3 conv head predicts
// objectness and box deltas for every anchor of every FPN level; proposals are the decoded anchors
// after per-level top-k, clipping, small-box removal and per-level NMS. In training it also matches
// anchors to ground truth and returns loss_objectness and loss_rpn_box_reg.
#pragma once
#include "maskrcnn/anchor_generator.h"
#include "maskrcnn/box_coder.h"
#include "maskrcnn/config.h"
#include "maskrcnn/image_list.h"
#include "maskrcnn/matcher.h"
#include "nn/layers.h"

namespace mrcnn::detection {

class RPNHead : public nn::Module {
 public:
  RPNHead(int64_t in_channels, int64_t num_anchors);
  // Per level: objectness [N, A, H, W] and deltas [N, 4A, H, W].
  std::pair<std::vector<Tensor>, std::vector<Tensor>> forward(const std::vector<Tensor>& features);

 private:
  std::shared_ptr<nn::Sequential> conv_;
  std::shared_ptr<nn::Conv2d> cls_logits_, bbox_pred_;
};

struct RPNOutput {
  std::vector<Tensor> boxes, scores;             // per image: proposals [P, 4] and their sigmoid scores
  std::vector<Tensor> objectness, pred_bbox_deltas;  // the head's raw outputs per level
  Tensor anchors;                                // [A_total, 4], the same for every image
  Tensor loss_objectness, loss_rpn_box_reg;      // defined in training only
};

class RegionProposalNetwork : public nn::Module {
 public:
  explicit RegionProposalNetwork(const Config& config);
  // `features` are the FPN levels the RPN uses (all five); targets required in training.
  RPNOutput forward(const ImageList& images, const std::vector<Tensor>& features,
                    const std::vector<Target>* targets);
  // The inference part alone, from the head's outputs: top-k per level, decode, NMS, all on the
  // predictions' device (on a GPU, one wait, for the kept rows); anchors are host tensors.
  std::pair<std::vector<Tensor>, std::vector<Tensor>> filter_proposals(
      const std::vector<Tensor>& objectness, const std::vector<Tensor>& pred_bbox_deltas, const Tensor& anchors,
      const std::vector<ImageSize>& image_sizes) const;
  // What the losses need from anchors and ground truth alone (matching and sampling, on the host):
  // flat rows (image * anchors + anchor) of the sampled anchors, the `positives` first (label 1, the
  // rest 0), and the positives' regression targets [positives, 4].
  struct SampledTargets {
    std::vector<int64_t> sampled;
    int64_t positives = 0;
    Tensor regression_targets;
  };
  SampledTargets sample_targets(const Tensor& anchors, const std::vector<Target>& targets);
  const AnchorGenerator& anchor_generator() const { return anchor_generator_; }
  // Run the GPU's proposal NMS (ops::nms_in_order: per image and level, candidates in top-k order,
  // invalid ones excluded) on the CPU too, instead of batched_nms over the valid candidates. The two
  // keep the same proposals whenever an image has over 1000 valid candidates (below that batched_nms
  // offsets the levels' coordinates, as torchvision's does, which rounds IoUs differently); tests
  // use it to check the GPU's path on the CPU.
  void use_in_order_nms(bool on) { in_order_nms_ = on; }
  Generator& generator() { return generator_; }

  std::shared_ptr<RPNHead> head;

 private:
  Config config_;
  AnchorGenerator anchor_generator_;
  BoxCoder box_coder_;
  Matcher matcher_;
  BalancedPositiveNegativeSampler sampler_;
  Generator generator_;
  bool in_order_nms_ = false;
  // The anchors of the last (padded size, feature sizes), on the host and on the predictions' device:
  // they depend on nothing else, and a GPU then gets them uploaded once, not at every step.
  std::vector<int64_t> anchors_key_;
  Tensor anchors_, device_anchors_;

  // Proposals and losses from the predictions flattened once (flatten_predictions) for both.
  // device_anchors: `anchors` already on the predictions' device, or undefined (then copied there).
  std::pair<std::vector<Tensor>, std::vector<Tensor>> proposals_from_flat(const Tensor& flat_scores, const Tensor& flat_deltas,
                                                                          const std::vector<int64_t>& level_counts,
                                                                          const Tensor& anchors, const Tensor& device_anchors,
                                                                          const std::vector<ImageSize>& image_sizes) const;
  std::pair<Tensor, Tensor> loss_from_flat(const Tensor& flat_scores, const Tensor& deltas, const SampledTargets& sampled) const;
};

// [N, A*C, H, W] per level -> [N * sum(H*W*A), C] rows in (image, level, y, x, anchor) order, like
// torchvision's concat_box_prediction_layers; differentiable.
Tensor flatten_predictions(const std::vector<Tensor>& per_level, int64_t values_per_anchor);

}  // namespace mrcnn::detection
