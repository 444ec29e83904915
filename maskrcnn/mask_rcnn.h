// MaskRCNN (torchvision.models.detection.MaskRCNN / GeneralizedRCNN): transform -> backbone (ResNet +
// FPN) -> RPN -> RoI heads -> postprocess. Parameter names are torchvision's state_dict keys
// ("backbone.body.layer1.0.conv1.weight", "rpn.head.cls_logits.bias", "roi_heads.mask_head.0.0.weight").
#pragma once
#include <map>

#include "maskrcnn/fpn.h"
#include "maskrcnn/roi_heads.h"
#include "maskrcnn/rpn.h"
#include "maskrcnn/transform.h"

namespace mrcnn::detection {

struct MaskRCNNOutput {
  std::vector<Detections> detections;     // eval: in original image pixels, masks pasted [D, 1, H, W]
  std::map<std::string, Tensor> losses;   // training: loss_classifier, loss_box_reg, loss_mask,
                                          // loss_objectness, loss_rpn_box_reg
  // Every stage's result, for inspection and the parity tests.
  ImageList images;
  std::vector<Tensor> features;           // FPN "0".."3", "pool"
  RPNOutput rpn;
  RoIHeadsOutput roi;
};

class MaskRCNN : public nn::Module {
 public:
  explicit MaskRCNN(const Config& config);
  // images: [C, H, W] float32 in [0, 1], any sizes; targets in those images' pixels (training).
  MaskRCNNOutput forward(const std::vector<Tensor>& images, const std::vector<Target>* targets = nullptr);
  const Config& config() const { return config_; }
  const GeneralizedRCNNTransform& transform() const { return transform_; }
  Generator& transform_generator() { return transform_generator_; }
  // Eval mode: also run every image mirrored left-right and combine the two views (test-time
  // augmentation, maskrcnn/flip_test.cpp; about twice the inference time). Starts as the config's
  // flip_test (off by default).
  void set_flip_test(bool on) { flip_test_ = on; }
  bool flip_test() const { return flip_test_; }

  std::shared_ptr<BackboneWithFPN> backbone;
  std::shared_ptr<RegionProposalNetwork> rpn;
  std::shared_ptr<RoIHeads> roi_heads;

 private:
  // The stages forward and forward_flip_test share: transform (resizing targets in place), backbone +
  // FPN, RPN (its losses in training mode).
  MaskRCNNOutput forward_to_proposals(const std::vector<Tensor>& images, std::vector<Target>* targets);
  MaskRCNNOutput forward_flip_test(const std::vector<Tensor>& images);

  Config config_;
  GeneralizedRCNNTransform transform_;
  Generator transform_generator_;
  bool flip_test_;
};

// The sum of the five losses (what training minimises).
Tensor total_loss(const std::map<std::string, Tensor>& losses);

}  // namespace mrcnn::detection
