// Optimizers with PyTorch's update rules (torch.optim.SGD, torch.optim.AdamW), gradient clipping
// (clip_grad_norm_) and learning-rate schedules. They update parameters in place from .grad() and
// keep their state under the parameters' names, so a checkpoint restores it exactly.
#pragma once
#include <map>
#include <string>

#include "nn/module.h"

namespace mrcnn::nn {

class Optimizer {
 public:
  explicit Optimizer(NamedTensors params, double lr);
  virtual ~Optimizer() = default;
  // One update from the current gradients; parameters without a gradient are skipped (as PyTorch).
  void step();
  void zero_grad();
  double lr;
  int64_t steps() const { return steps_; }
  // "<param name>.<slot>" -> tensor, plus the step count; load checks names and shapes.
  std::map<std::string, Tensor> state_dict() const;
  void load_state_dict(const std::map<std::string, Tensor>& state);
  const NamedTensors& params() const { return params_; }

 protected:
  virtual void update(size_t index, const Tensor& param, const Tensor& grad) = 0;
  // Slots (momentum buffers, moments) per parameter, created on first use.
  Tensor& slot(size_t index, const std::string& name);
  bool has_slot(size_t index, const std::string& name) const;
  NamedTensors params_;
  int64_t steps_ = 0;

 private:
  std::vector<std::map<std::string, Tensor>> slots_;
};

struct SGDOptions {
  double lr = 0.01, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  SGD(NamedTensors params, const SGDOptions& options);
  SGDOptions options;

 protected:
  void update(size_t index, const Tensor& param, const Tensor& grad) override;
};

struct AdamWOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-2;
};

class AdamW : public Optimizer {
 public:
  AdamW(NamedTensors params, const AdamWOptions& options);
  AdamWOptions options;

 protected:
  void update(size_t index, const Tensor& param, const Tensor& grad) override;
};

// Scales all gradients so their joint L2 norm is at most max_norm (coefficient max_norm / (norm +
// 1e-6), applied only when < 1, as torch.nn.utils.clip_grad_norm_). Returns the norm before clipping.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// Learning rate at an iteration: linear warmup from warmup_factor * base_lr over warmup_iters
// (torchvision's detection reference), times a multistep decay (gamma per milestone passed) or a
// cosine decay to min_lr over total_iters.
struct LRSchedule {
  enum class Kind { Constant, MultiStep, Cosine };
  Kind kind = Kind::Constant;
  double base_lr = 0.01;
  int64_t warmup_iters = 0;
  double warmup_factor = 1e-3;
  std::vector<int64_t> milestones;
  double gamma = 0.1;
  int64_t total_iters = 0;
  double min_lr = 0.0;
  double lr_at(int64_t iteration) const;
};

}  // namespace mrcnn::nn
