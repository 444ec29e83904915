// Box and mask head layers; Linear layers keep PyTorch's default init, mask head convs get
// kaiming_normal(fan_out, relu) with zero bias as torchvision sets them.
#include "maskrcnn/heads.h"

#include "autograd/node.h"
#include "nn/init.h"
#include "ops/elementwise.h"
#include "ops/view.h"

namespace mrcnn::detection {

TwoMLPHead::TwoMLPHead(int64_t in_features, int64_t representation_size) {
  fc6 = register_module("fc6", std::make_shared<nn::Linear>(in_features, representation_size));
  fc7 = register_module("fc7", std::make_shared<nn::Linear>(representation_size, representation_size));
}

Tensor TwoMLPHead::forward(const Tensor& x) {
  return ops::relu((*fc7)(ops::relu((*fc6)(ops::flatten(x, 1)))));
}

FastRCNNPredictor::FastRCNNPredictor(int64_t in_features, int64_t num_classes) {
  cls_score = register_module("cls_score", std::make_shared<nn::Linear>(in_features, num_classes));
  bbox_pred = register_module("bbox_pred", std::make_shared<nn::Linear>(in_features, num_classes * 4));
}

std::pair<Tensor, Tensor> FastRCNNPredictor::forward(const Tensor& x) {
  const Tensor flat = ops::flatten(x, 1);
  return {(*cls_score)(flat), (*bbox_pred)(flat)};
}

std::shared_ptr<nn::Sequential> make_mask_head(int64_t in_channels, const std::vector<int64_t>& layers, int64_t dilation) {
  auto head = std::make_shared<nn::Sequential>();
  int64_t next = in_channels;
  for (int64_t width : layers) {
    nn::Conv2dSpec spec{next, width, 3, {}, true};
    spec.options.padding = dilation;
    spec.options.dilation = dilation;
    head->push_back(nn::conv_relu(spec));
    next = width;
  }
  for (auto& [name, t] : head->named_parameters()) {
    if (t.dim() == 4) nn::init::kaiming_normal_fan_out_(t);
    else nn::init::constant_(t, 0.0);
  }
  return head;
}

MaskRCNNPredictor::MaskRCNNPredictor(int64_t in_channels, int64_t dim_reduced, int64_t num_classes) {
  ops::ConvTranspose2dOptions up;
  up.stride = 2;
  conv5_mask = register_module("conv5_mask", std::make_shared<nn::ConvTranspose2d>(in_channels, dim_reduced, 2, up));
  mask_fcn_logits = register_module("mask_fcn_logits",
                                    std::make_shared<nn::Conv2d>(nn::Conv2dSpec{dim_reduced, num_classes, 1, {}, true}));
  // torchvision re-initialises only the weights here; the biases keep PyTorch's default.
  for (auto& [name, t] : named_parameters())
    if (t.dim() == 4) nn::init::kaiming_normal_fan_out_(t);
}

Tensor MaskRCNNPredictor::forward(const Tensor& x) {
  Tensor upsampled = (*conv5_mask)(x);  // [R, 256, 28, 28]: the head's largest activation
  // Inference: relu in place, so the head never holds two of them (160 MB for 200 RoIs).
  if (autograd::grad_enabled()) upsampled = ops::relu(upsampled);
  else ops::relu_(upsampled);
  return (*mask_fcn_logits)(upsampled);
}

}  // namespace mrcnn::detection
