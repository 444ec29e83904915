// The layers the detector is built from, with PyTorch's parameter names and default initialisations
// (models override them where torchvision does). Each is a Layer: one tensor in, one out.
#pragma once
#include "nn/module.h"
#include "ops/conv.h"
#include "ops/pool.h"

namespace mrcnn::nn {

struct Conv2dSpec {
  int64_t in_channels = 0, out_channels = 0;
  ops::Size2 kernel_size = 1;
  ops::Conv2dOptions options;
  bool bias = true;
};

class Conv2d : public Layer {
 public:
  explicit Conv2d(const Conv2dSpec& spec);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;  // [O, C/groups, kH, kW], [O] or undefined
  Conv2dSpec spec;
};

class ConvTranspose2d : public Layer {
 public:
  ConvTranspose2d(int64_t in_channels, int64_t out_channels, ops::Size2 kernel_size,
                  const ops::ConvTranspose2dOptions& options);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;  // [C, O/groups, kH, kW], [O]
  ops::ConvTranspose2dOptions options;
};

class Linear : public Layer {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;  // [out, in], [out]
};

// Batch statistics in training (running ones updated with momentum 0.1), running ones in eval.
class BatchNorm2d : public Layer {
 public:
  explicit BatchNorm2d(int64_t channels, double eps = 1e-5, double momentum = 0.1);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  double eps, momentum;
};

// torchvision.ops.FrozenBatchNorm2d: all four tensors are buffers; never trains, same in both modes.
class FrozenBatchNorm2d : public Layer {
 public:
  explicit FrozenBatchNorm2d(int64_t channels, double eps = 1e-5);
  Tensor forward(const Tensor& x) override;
  Tensor forward_relu(const Tensor& x, const Tensor& residual = Tensor()) override;  // one pass each way
  Tensor weight, bias, running_mean, running_var;
  double eps;
};

class GroupNorm : public Layer {
 public:
  GroupNorm(int64_t num_groups, int64_t channels, double eps = 1e-5);
  Tensor forward(const Tensor& x) override;
  Tensor forward_relu(const Tensor& x, const Tensor& residual = Tensor()) override;  // fused on the CPU
  Tensor weight, bias;
  int64_t num_groups;
  double eps;
};

class ReLU : public Layer {
 public:
  Tensor forward(const Tensor& x) override;
};

class MaxPool2d : public Layer {
 public:
  explicit MaxPool2d(const ops::MaxPool2dOptions& pool_options) : options(pool_options) {}
  Tensor forward(const Tensor& x) override;
  ops::MaxPool2dOptions options;
};

// A conv followed by ReLU under the names torchvision's Conv2dNormActivation (norm_layer=None)
// gives them: "<name>.0.weight", "<name>.0.bias"; used by the FPN, the RPN head and the mask head.
std::shared_ptr<Sequential> conv_relu(const Conv2dSpec& spec, bool relu = true);

}  // namespace mrcnn::nn
