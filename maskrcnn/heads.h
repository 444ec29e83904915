// The RoI heads' layers (torchvision.models.detection.faster_rcnn / mask_rcnn): TwoMLPHead and
// FastRCNNPredictor for boxes, MaskRCNNHeads and MaskRCNNPredictor for masks. Names and
// initialisations are torchvision's.
#pragma once
#include "nn/layers.h"

namespace mrcnn::detection {

class TwoMLPHead : public nn::Layer {
 public:
  TwoMLPHead(int64_t in_features, int64_t representation_size);
  Tensor forward(const Tensor& x) override;  // [R, C, 7, 7] -> [R, representation]
  std::shared_ptr<nn::Linear> fc6, fc7;
};

class FastRCNNPredictor : public nn::Module {
 public:
  FastRCNNPredictor(int64_t in_features, int64_t num_classes);
  std::pair<Tensor, Tensor> forward(const Tensor& x);  // class logits [R, K], box deltas [R, 4K]
  std::shared_ptr<nn::Linear> cls_score, bbox_pred;
};

// Children "0".."n-1", each a 3x3 conv + ReLU (Conv2dNormActivation without norm): names
// mask_head.0.0.weight, like torchvision 0.14.
std::shared_ptr<nn::Sequential> make_mask_head(int64_t in_channels, const std::vector<int64_t>& layers, int64_t dilation);

class MaskRCNNPredictor : public nn::Layer {
 public:
  MaskRCNNPredictor(int64_t in_channels, int64_t dim_reduced, int64_t num_classes);
  Tensor forward(const Tensor& x) override;  // [R, C, 14, 14] -> logits [R, K, 28, 28]
  std::shared_ptr<nn::ConvTranspose2d> conv5_mask;
  std::shared_ptr<nn::Conv2d> mask_fcn_logits;
};

}  // namespace mrcnn::detection
