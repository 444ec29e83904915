// Fused, in-place optimizer updates of one parameter tensor (not differentiable): what nn/optim.cpp's
// SGD and AdamW apply each step, and nn/average.cpp's moving average of the weights, one pass over the elements on the CPU or one kernel on a GPU.
#pragma once
#include "tensor/tensor.h"

namespace mrcnn::ops {

struct SgdStep {
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
  bool first = false;  // the momentum buffer holds nothing yet: it starts as the step
};
// param -= lr * step (PyTorch's SGD); momentum_buffer may be undefined (momentum 0).
void sgd_step_(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const SgdStep& step);

struct AdamWStep {
  double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  int64_t step = 1;  // 1-based, for the bias corrections
};
void adamw_step_(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq, const AdamWStep& step);

// average += weight * (value - average), in place: one step of a moving average of weights.
void average_step_(const Tensor& average, const Tensor& value, double weight);

}  // namespace mrcnn::ops
