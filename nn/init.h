// Initialisations with torch.nn.init's formulas (the draws come from our Philox generator, so the
// numbers differ from PyTorch's but the distributions are the same). All fill in place.
#pragma once
#include "tensor/random.h"

namespace mrcnn::nn::init {

// torch's fan_in = size(1) * receptive field, fan_out = size(0) * receptive field.
int64_t fan_in(const Tensor& weight);
int64_t fan_out(const Tensor& weight);

void uniform_(const Tensor& t, double low, double high, Generator* generator = nullptr);
void normal_(const Tensor& t, double mean, double std, Generator* generator = nullptr);
void constant_(const Tensor& t, double value);
// kaiming_uniform_(w, a): bound = sqrt(2 / (1 + a^2)) * sqrt(3 / fan_in). a = sqrt(5) is the default
// init of Conv2d and Linear weights; a = 1 is what torchvision's FPN uses.
void kaiming_uniform_(const Tensor& weight, double a, Generator* generator = nullptr);
// kaiming_normal_(w, mode="fan_out", nonlinearity="relu"): std = sqrt(2 / fan_out) (ResNet, mask head).
void kaiming_normal_fan_out_(const Tensor& weight, Generator* generator = nullptr);
// PyTorch's default bias init for Conv2d/Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) of the weight.
void default_bias_(const Tensor& bias, const Tensor& weight, Generator* generator = nullptr);

// While a SkipInit lives on this thread, the fills above leave their tensors as they are and draw
// nothing from any generator. For building a model whose every tensor a strict load_state_dict
// overwrites next (detection::load_model): the ~11-40M random draws of the initialisation took
// most of `mrcnn predict`'s start-up and were thrown away.
class SkipInit {
 public:
  SkipInit();
  ~SkipInit();
  SkipInit(const SkipInit&) = delete;
  SkipInit& operator=(const SkipInit&) = delete;
};
bool skipping_init();

}  // namespace mrcnn::nn::init
