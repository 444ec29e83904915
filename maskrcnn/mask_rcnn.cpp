// The detector's forward: the stages wired in torchvision's order.
#include "maskrcnn/mask_rcnn.h"

#include "ops/elementwise.h"
#include "ops/view.h"
#include "maskrcnn/profile.h"

namespace mrcnn::detection {

MaskRCNN::MaskRCNN(const Config& config)
    : config_(config), transform_(config), transform_generator_(config.seed * 2 + 3), flip_test_(config.flip_test) {
  config_.validate();
  backbone = register_module("backbone", std::make_shared<BackboneWithFPN>(config_));
  rpn = register_module("rpn", std::make_shared<RegionProposalNetwork>(config_));
  roi_heads = register_module("roi_heads", std::make_shared<RoIHeads>(config_));
}

MaskRCNNOutput MaskRCNN::forward(const std::vector<Tensor>& images, const std::vector<Target>* targets) {
  check(!is_training() || targets != nullptr, "MaskRCNN: training mode needs targets");
  if (!is_training() && flip_test_) return forward_flip_test(images);
  std::vector<Target> resized_targets;
  if (targets != nullptr) resized_targets = *targets;
  std::vector<ImageSize> original_sizes;
  for (const auto& image : images) original_sizes.emplace_back(image.size(-2), image.size(-1));
  std::vector<Target>* stage_targets = targets ? &resized_targets : nullptr;
  MaskRCNNOutput out = forward_to_proposals(images, stage_targets);
  const std::vector<Tensor> roi_features(out.features.begin(), out.features.begin() + 4);
  out.roi = roi_heads->forward(roi_features, out.rpn.boxes, out.images.image_sizes,
                               is_training() ? stage_targets : nullptr);
  if (is_training()) {
    out.losses = {{"loss_classifier", out.roi.loss_classifier}, {"loss_box_reg", out.roi.loss_box_reg},
                  {"loss_mask", out.roi.loss_mask}, {"loss_objectness", out.rpn.loss_objectness},
                  {"loss_rpn_box_reg", out.rpn.loss_rpn_box_reg}};
  } else {
    out.detections = out.roi.detections;
    const Stage stage("postprocess (paste masks)");
    transform_.postprocess(out.detections, out.images.image_sizes, original_sizes);
  }
  return out;
}

MaskRCNNOutput MaskRCNN::forward_to_proposals(const std::vector<Tensor>& images, std::vector<Target>* targets) {
  MaskRCNNOutput out;
  {
    const Stage stage("transform");
    out.images = transform_.forward(images, targets, is_training() ? &transform_generator_ : nullptr, device());
  }
  // On a GPU the dense stages (backbone, FPN, heads, RoIAlign), the RPN's proposal selection and the
  // losses run on the device; images and targets arrive on the host, where the index work that needs
  // only anchors, proposals and ground truth (matching, sampling) stays, its images side by side on
  // the threads; only sampled indices and targets go up (see rpn.cpp and roi_heads.cpp).
  {
    const Stage stage("backbone + FPN");
    out.features = backbone->forward(out.images.tensors);
  }
  out.rpn = rpn->forward(out.images, out.features, is_training() ? targets : nullptr);
  return out;
}

Tensor total_loss(const std::map<std::string, Tensor>& losses) {
  Tensor total;
  for (const auto& [name, loss] : losses) total = total.defined() ? ops::add(total, loss) : loss;
  return total;
}

}  // namespace mrcnn::detection
