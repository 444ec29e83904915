// FPN with torchvision's names (inner_blocks.i.0, layer_blocks.i.0) and init (kaiming_uniform a=1,
// bias 0).
#include "maskrcnn/fpn.h"

#include "nn/init.h"
#include "ops/elementwise.h"
#include "ops/interpolate.h"

namespace mrcnn::detection {

FeaturePyramidNetwork::FeaturePyramidNetwork(const std::vector<int64_t>& in_channels, int64_t out_channels) {
  inner_blocks_ = register_module("inner_blocks", std::make_shared<nn::Sequential>());
  layer_blocks_ = register_module("layer_blocks", std::make_shared<nn::Sequential>());
  for (int64_t channels : in_channels) {
    nn::Conv2dSpec inner{channels, out_channels, 1, {}, true};
    nn::Conv2dSpec layer{out_channels, out_channels, 3, {}, true};
    layer.options.padding = 1;
    inner_blocks_->push_back(nn::conv_relu(inner, false));
    layer_blocks_->push_back(nn::conv_relu(layer, false));
  }
  for (auto& [name, t] : named_parameters()) {
    if (t.dim() == 4) nn::init::kaiming_uniform_(t, 1.0);
    else nn::init::constant_(t, 0.0);
  }
}

std::vector<Tensor> FeaturePyramidNetwork::forward(const std::vector<Tensor>& x) {
  const size_t levels = x.size();
  check(levels == inner_blocks_->size(), "FPN: expected ", inner_blocks_->size(), " feature maps, got ", levels);
  std::vector<Tensor> results(levels);
  Tensor last_inner = (*(*inner_blocks_)[levels - 1])(x[levels - 1]);
  results[levels - 1] = (*(*layer_blocks_)[levels - 1])(last_inner);
  for (size_t i = levels - 1; i-- > 0;) {
    Tensor lateral = (*(*inner_blocks_)[i])(x[i]);
    Tensor top_down = ops::interpolate(last_inner, {lateral.size(2), lateral.size(3)}, ops::InterpolateMode::Nearest);
    last_inner = lateral + top_down;
    results[i] = (*(*layer_blocks_)[i])(last_inner);
  }
  ops::MaxPool2dOptions pool;
  pool.kernel_size = 1;
  pool.stride = 2;
  results.push_back(ops::max_pool2d(results.back(), pool));
  return results;
}

BackboneWithFPN::BackboneWithFPN(const Config& config) : out_channels(config.fpn_out_channels) {
  body = register_module("body", std::make_shared<ResNet>(config));
  freeze_backbone_layers(*body, config.trainable_layers);
  fpn = register_module("fpn", std::make_shared<FeaturePyramidNetwork>(body->stage_channels(), out_channels));
}

std::vector<Tensor> BackboneWithFPN::forward(const Tensor& images) { return fpn->forward(body->forward(images)); }

}  // namespace mrcnn::detection
