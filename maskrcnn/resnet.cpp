// ResNet blocks with torchvision's names (conv1, bn1, ..., downsample.0/.1) and initialisation
// (kaiming_normal fan_out for convs, norms weight 1 bias 0).
#include "maskrcnn/resnet.h"

#include "nn/init.h"
#include "ops/elementwise.h"

namespace mrcnn::detection {

namespace {

nn::Conv2dSpec conv_spec(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  nn::Conv2dSpec spec;
  spec.in_channels = in;
  spec.out_channels = out;
  spec.kernel_size = kernel;
  spec.options.stride = stride;
  spec.options.padding = kernel / 2;
  spec.bias = false;
  return spec;
}

// BasicBlock (expansion 1) and Bottleneck (expansion 4) in one class: the same residual wiring.
class Block : public nn::Layer {
 public:
  Block(const Config& config, bool bottleneck, int64_t in, int64_t planes, int64_t stride) {
    const int64_t out = bottleneck ? planes * 4 : planes;
    if (bottleneck) {
      add(config, conv_spec(in, planes, 1, 1));
      add(config, conv_spec(planes, planes, 3, stride));
      add(config, conv_spec(planes, out, 1, 1));
    } else {
      add(config, conv_spec(in, planes, 3, stride));
      add(config, conv_spec(planes, planes, 3, 1));
    }
    if (stride != 1 || in != out) {
      downsample_ = std::make_shared<nn::Sequential>();
      downsample_->push_back(std::make_shared<nn::Conv2d>(conv_spec(in, out, 1, stride)));
      downsample_->push_back(make_norm(config, out));
      register_module("downsample", downsample_);
    }
  }

  Tensor forward(const Tensor& x) override {
    // Each norm + relu, and the last norm + identity + relu, in one op where the norm can fuse them.
    Tensor y = x;
    const size_t last = convs_.size() - 1;
    for (size_t i = 0; i < last; ++i) y = norms_[i]->relu_of((*convs_[i])(y));
    const Tensor z = (*convs_[last])(y);
    const Tensor identity = downsample_ ? (*downsample_)(x) : x;
    return norms_[last]->relu_of(z, identity);
  }

 private:
  void add(const Config& config, const nn::Conv2dSpec& spec) {
    const std::string index = std::to_string(convs_.size() + 1);
    convs_.push_back(register_module("conv" + index, std::make_shared<nn::Conv2d>(spec)));
    norms_.push_back(register_module("bn" + index, make_norm(config, spec.out_channels)));
  }
  std::vector<std::shared_ptr<nn::Conv2d>> convs_;
  std::vector<std::shared_ptr<nn::Layer>> norms_;
  std::shared_ptr<nn::Sequential> downsample_;
};

void init_resnet(nn::Module& module) {
  for (auto& [name, t] : module.named_parameters()) {
    if (t.dim() == 4) nn::init::kaiming_normal_fan_out_(t);
  }
}

}  // namespace

std::shared_ptr<nn::Layer> make_norm(const Config& config, int64_t channels) {
  if (config.norm == "frozen_bn") return std::make_shared<nn::FrozenBatchNorm2d>(channels);
  if (config.norm == "bn") return std::make_shared<nn::BatchNorm2d>(channels);
  return std::make_shared<nn::GroupNorm>(config.gn_groups, channels);
}

ResNet::ResNet(const Config& config) {
  const bool bottleneck = config.block_kind() == "bottleneck";
  conv1_ = register_module("conv1", std::make_shared<nn::Conv2d>(conv_spec(config.in_channels, 64, 7, 2)));
  bn1_ = register_module("bn1", make_norm(config, 64));
  const auto blocks = config.stage_blocks();
  int64_t in = 64;
  for (int64_t stage = 0; stage < 4; ++stage) {
    const int64_t planes = 64 << stage;
    auto layer = std::make_shared<nn::Sequential>();
    for (int64_t b = 0; b < blocks[stage]; ++b) {
      layer->push_back(std::make_shared<Block>(config, bottleneck, in, planes, b == 0 && stage > 0 ? 2 : 1));
      in = bottleneck ? planes * 4 : planes;
    }
    stages_.push_back(register_module("layer" + std::to_string(stage + 1), layer));
    stage_channels_.push_back(in);
  }
  init_resnet(*this);
}

std::vector<Tensor> ResNet::forward(const Tensor& x) {
  ops::MaxPool2dOptions pool;
  pool.kernel_size = 3;
  pool.stride = 2;
  pool.padding = 1;
  Tensor y = ops::max_pool2d(bn1_->relu_of((*conv1_)(x)), pool);
  std::vector<Tensor> outputs;
  for (auto& stage : stages_) {
    y = (*stage)(y);
    outputs.push_back(y);
  }
  return outputs;
}

void freeze_backbone_layers(nn::Module& body, int64_t trainable_layers) {
  std::vector<std::string> trainable = {"layer4", "layer3", "layer2", "layer1", "conv1"};
  trainable.resize(static_cast<size_t>(trainable_layers));
  if (trainable_layers == 5) trainable.push_back("bn1");
  for (auto& [name, t] : body.named_parameters()) {
    bool keep = false;
    for (const auto& prefix : trainable) keep = keep || name.rfind(prefix, 0) == 0;
    if (!keep) t.set_requires_grad(false);
  }
}

}  // namespace mrcnn::detection
