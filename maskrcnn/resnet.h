// ResNet (torchvision.models.resnet, v1.5: the stride sits on the 3x3 conv) as the detector's body:
// forward returns the outputs of layer1..layer4 (strides 4, 8, 16, 32), like IntermediateLayerGetter.
// Norm layers are chosen by the config: FrozenBatchNorm2d, BatchNorm2d or GroupNorm.
#pragma once
#include "maskrcnn/config.h"
#include "nn/layers.h"

namespace mrcnn::detection {

std::shared_ptr<nn::Layer> make_norm(const Config& config, int64_t channels);

class ResNet : public nn::Module {
 public:
  explicit ResNet(const Config& config);
  std::vector<Tensor> forward(const Tensor& x);  // [C2, C3, C4, C5]
  std::vector<int64_t> stage_channels() const { return stage_channels_; }

 private:
  std::shared_ptr<nn::Conv2d> conv1_;
  std::shared_ptr<nn::Layer> bn1_;
  std::vector<std::shared_ptr<nn::Sequential>> stages_;
  std::vector<int64_t> stage_channels_;
};

// resnet_fpn_backbone's freezing: of ["layer4", "layer3", "layer2", "layer1", "conv1"] the first
// trainable_layers stay trainable (and "bn1" with all 5); every other parameter stops requiring grad.
void freeze_backbone_layers(nn::Module& body, int64_t trainable_layers);

}  // namespace mrcnn::detection
