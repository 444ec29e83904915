// FeaturePyramidNetwork with LastLevelMaxPool (torchvision.ops.feature_pyramid_network) and the
// BackboneWithFPN that joins it to the ResNet body: image batch -> features "0".."3", "pool"
// (strides 4..64), each with out_channels channels.
#pragma once
#include "maskrcnn/resnet.h"

namespace mrcnn::detection {

class FeaturePyramidNetwork : public nn::Module {
 public:
  FeaturePyramidNetwork(const std::vector<int64_t>& in_channels, int64_t out_channels);
  // Top-down: each level adds the nearest-upsampled coarser level to its 1x1 lateral, then a 3x3
  // conv; the last output is max_pool2d(P5, 1, stride 2) (LastLevelMaxPool).
  std::vector<Tensor> forward(const std::vector<Tensor>& x);

 private:
  std::shared_ptr<nn::Sequential> inner_blocks_, layer_blocks_;
};

class BackboneWithFPN : public nn::Module {
 public:
  explicit BackboneWithFPN(const Config& config);
  std::vector<Tensor> forward(const Tensor& images);
  int64_t out_channels;
  std::shared_ptr<ResNet> body;
  std::shared_ptr<FeaturePyramidNetwork> fpn;
};

}  // namespace mrcnn::detection
