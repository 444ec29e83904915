// Layer forwards are thin calls into ops/; constructors allocate parameters with PyTorch's init.
#include "nn/layers.h"

#include "nn/init.h"

#include <cmath>
#include "ops/elementwise.h"
#include "ops/linalg.h"
#include "ops/norm.h"

namespace mrcnn::nn {

Conv2d::Conv2d(const Conv2dSpec& spec_) : spec(spec_) {
  check(spec.in_channels > 0 && spec.out_channels > 0 && spec.options.groups > 0 &&
            spec.in_channels % spec.options.groups == 0 && spec.out_channels % spec.options.groups == 0,
        "Conv2d: channels ", spec.in_channels, " -> ", spec.out_channels, " do not divide into ",
        spec.options.groups, " groups");
  weight = register_parameter(
      "weight", empty({spec.out_channels, spec.in_channels / spec.options.groups, spec.kernel_size.h, spec.kernel_size.w}));
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (spec.bias) {
    bias = register_parameter("bias", empty({spec.out_channels}));
    init::default_bias_(bias, weight);
  }
}

Tensor Conv2d::forward(const Tensor& x) { return ops::conv2d(x, weight, bias, spec.options); }

ConvTranspose2d::ConvTranspose2d(int64_t in_channels, int64_t out_channels, ops::Size2 kernel_size,
                                 const ops::ConvTranspose2dOptions& options_)
    : options(options_) {
  weight = register_parameter("weight", empty({in_channels, out_channels / options.groups, kernel_size.h, kernel_size.w}));
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  bias = register_parameter("bias", empty({out_channels}));
  init::default_bias_(bias, weight);
}

Tensor ConvTranspose2d::forward(const Tensor& x) { return ops::conv_transpose2d(x, weight, bias, options); }

Linear::Linear(int64_t in_features, int64_t out_features, bool with_bias) {
  weight = register_parameter("weight", empty({out_features, in_features}));
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (with_bias) {
    bias = register_parameter("bias", empty({out_features}));
    init::default_bias_(bias, weight);
  }
}

Tensor Linear::forward(const Tensor& x) { return ops::linear(x, weight, bias); }

BatchNorm2d::BatchNorm2d(int64_t channels, double eps_, double momentum_) : eps(eps_), momentum(momentum_) {
  weight = register_parameter("weight", ones({channels}));
  bias = register_parameter("bias", zeros({channels}));
  running_mean = register_buffer("running_mean", zeros({channels}));
  running_var = register_buffer("running_var", ones({channels}));
  num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, kInt64));
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  if (is_training()) {
    // A one-element counter: bumped on the host (a copy each way when the module is on a GPU).
    Tensor host = copy_as(num_batches_tracked, kInt64, kCPU);
    host.data<int64_t>()[0] += 1;
    copy_into(num_batches_tracked, host);
  }
  return ops::batch_norm(x, running_mean, running_var, weight, bias, is_training(), momentum, eps);
}

FrozenBatchNorm2d::FrozenBatchNorm2d(int64_t channels, double eps_) : eps(eps_) {
  weight = register_buffer("weight", ones({channels}));
  bias = register_buffer("bias", zeros({channels}));
  running_mean = register_buffer("running_mean", zeros({channels}));
  running_var = register_buffer("running_var", ones({channels}));
}

Tensor FrozenBatchNorm2d::forward(const Tensor& x) {
  return ops::frozen_batch_norm(x, weight, bias, running_mean, running_var, eps);
}

Tensor FrozenBatchNorm2d::forward_relu(const Tensor& x, const Tensor& residual) {
  return ops::frozen_batch_norm_relu(x, weight, bias, running_mean, running_var, eps, residual);
}

GroupNorm::GroupNorm(int64_t num_groups_, int64_t channels, double eps_) : num_groups(num_groups_), eps(eps_) {
  check(num_groups > 0 && channels % num_groups == 0, "GroupNorm: ", channels, " channels do not divide into ",
        num_groups, " groups");
  weight = register_parameter("weight", ones({channels}));
  bias = register_parameter("bias", zeros({channels}));
}

Tensor GroupNorm::forward(const Tensor& x) { return ops::group_norm(x, num_groups, weight, bias, eps); }

Tensor GroupNorm::forward_relu(const Tensor& x, const Tensor& residual) {
  return ops::group_norm_relu(x, num_groups, weight, bias, eps, residual);
}

Tensor ReLU::forward(const Tensor& x) { return ops::relu(x); }

Tensor MaxPool2d::forward(const Tensor& x) { return ops::max_pool2d(x, options); }

std::shared_ptr<Sequential> conv_relu(const Conv2dSpec& spec, bool relu) {
  auto block = std::make_shared<Sequential>();
  block->push_back(std::make_shared<Conv2d>(spec));
  if (relu) block->push_back(std::make_shared<ReLU>());
  return block;
}

}  // namespace mrcnn::nn
