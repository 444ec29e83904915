// Update rules written over raw float/double buffers (parameters are contiguous leaves); the state
// lives in tensors of the parameter's shape so checkpoints carry it unchanged.
#include "nn/optim.h"

#include <cmath>

#include "autograd/node.h"
#include "ops/elementwise.h"
#include "ops/optim.h"
#include "ops/reduce.h"
#include "ops/view.h"
#include "tensor/dispatch.h"
#include "tensor/lane_sums.h"
#include "tensor/parallel.h"

namespace mrcnn::nn {

Optimizer::Optimizer(NamedTensors params, double learning_rate)
    : lr(learning_rate), params_(std::move(params)), slots_(params_.size()) {
  for (const auto& [name, p] : params_) {
    check(p.requires_grad() && p.is_contiguous() && is_floating(p.dtype()),
          "optimizer: parameter ", name, " must be a contiguous floating leaf that requires grad");
  }
}

void Optimizer::step() {
  autograd::NoGradGuard no_grad;
  ++steps_;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i].second;
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    update(i, p, g.is_contiguous() ? g : copy_as(g, g.dtype(), g.device()));
  }
}

void Optimizer::zero_grad() {
  for (auto& [name, p] : params_) p.zero_grad();
}

bool Optimizer::has_slot(size_t index, const std::string& name) const { return slots_[index].count(name) > 0; }

Tensor& Optimizer::slot(size_t index, const std::string& name) {
  auto& slots = slots_[index];
  auto it = slots.find(name);
  if (it == slots.end()) it = slots.emplace(name, zeros_like(params_[index].second)).first;
  return it->second;
}

std::map<std::string, Tensor> Optimizer::state_dict() const {
  std::map<std::string, Tensor> state;
  for (size_t i = 0; i < params_.size(); ++i)
    for (const auto& [slot_name, t] : slots_[i]) state[params_[i].first + "." + slot_name] = t;
  state["step"] = full({}, static_cast<double>(steps_), kInt64);
  return state;
}

void Optimizer::load_state_dict(const std::map<std::string, Tensor>& state) {
  const auto step = state.find("step");
  check(step != state.end() && step->second.numel() == 1, "optimizer state: no step count");
  steps_ = step->second.item<int64_t>();
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < params_.size(); ++i) index[params_[i].first] = i, slots_[i].clear();
  for (const auto& [key, t] : state) {
    if (key == "step") continue;
    const auto dot = key.rfind('.');
    const auto it = dot == std::string::npos ? index.end() : index.find(key.substr(0, dot));
    check(it != index.end(), "optimizer state: ", key, " names no trainable parameter");
    const Tensor& p = params_[it->second].second;
    check(t.sizes() == p.sizes(), "optimizer state: ", key, " has shape ", shape_str(t.sizes()), " but the parameter ",
          shape_str(p.sizes()));
    slots_[it->second][key.substr(dot + 1)] = copy_as(t, p.dtype(), p.device());
  }
}

SGD::SGD(NamedTensors params, const SGDOptions& sgd_options) : Optimizer(std::move(params), sgd_options.lr), options(sgd_options) {
  check(!options.nesterov || (options.momentum > 0 && options.dampening == 0),
        "SGD: nesterov needs momentum > 0 and dampening 0");
}

void SGD::update(size_t index, const Tensor& param, const Tensor& grad) {
  const bool first = options.momentum != 0 && !has_slot(index, "momentum_buffer");
  const Tensor buffer = options.momentum != 0 ? slot(index, "momentum_buffer") : Tensor();
  ops::sgd_step_(param, grad, buffer, {lr, options.momentum, options.dampening, options.weight_decay, options.nesterov, first});
}

AdamW::AdamW(NamedTensors params, const AdamWOptions& adam_options)
    : Optimizer(std::move(params), adam_options.lr), options(adam_options) {}

void AdamW::update(size_t index, const Tensor& param, const Tensor& grad) {
  ops::adamw_step_(param, grad, slot(index, "exp_avg"), slot(index, "exp_avg_sq"),
                   {lr, options.beta1, options.beta2, options.eps, options.weight_decay, steps_});
}

namespace {

// A stretch of one parameter's gradient: host gradients are summed and scaled in such pieces, in
// parallel, each summed in a fixed order (add_lane_sums), and the pieces' sums added in parameter
// order: the norm's bits do not depend on the thread count.
struct GradientPiece {
  size_t param;
  int64_t begin, end;
};
constexpr int64_t kPieceElements = int64_t(1) << 16;

template <typename T>
double squares_of(const T* d, int64_t n) {
  double sum[1] = {0};
  add_lane_sums(n, [d](int64_t i, double (&t)[1]) { t[0] = static_cast<double>(d[i]) * static_cast<double>(d[i]); }, sum);
  return sum[0];
}

}  // namespace

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  autograd::NoGradGuard no_grad;
  // GPU gradients: each square sum stays on the device, added in float64 in parameter order, and
  // one number comes back for all of them (a download per parameter was a wait per parameter).
  Tensor device_total;
  std::vector<Tensor> host_grads(params.size());
  std::vector<GradientPiece> pieces;
  for (size_t k = 0; k < params.size(); ++k) {
    const Tensor& p = params[k];
    if (!p.grad().defined()) continue;
    if (p.grad().device().is_cuda()) {
      const Tensor squares = ops::to(ops::sum(ops::mul(p.grad(), p.grad())), kFloat64);
      device_total = device_total.defined() ? ops::add(device_total, squares) : squares;
      continue;
    }
    host_grads[k] = p.grad().is_contiguous() ? p.grad() : copy_as(p.grad(), p.grad().dtype(), p.grad().device());
    for (int64_t b = 0, n = host_grads[k].numel(); b < n; b += kPieceElements)
      pieces.push_back({k, b, std::min(n, b + kPieceElements)});
  }
  std::vector<double> piece_sums(pieces.size());
  parallel_for(0, static_cast<int64_t>(pieces.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const GradientPiece& piece = pieces[static_cast<size_t>(i)];
      const Tensor& g = host_grads[piece.param];
      dispatch_floating(g.dtype(), "clip_grad_norm", [&](auto tag) {
        using scalar_t = decltype(tag);
        piece_sums[static_cast<size_t>(i)] = squares_of(g.data<scalar_t>() + piece.begin, piece.end - piece.begin);
      });
    }
  });
  double total = 0;
  for (const double s : piece_sums) total += s;
  if (device_total.defined()) total += device_total.item<double>();
  total = std::sqrt(total);
  const double coefficient = max_norm / (total + 1e-6);
  if (coefficient < 1) {
    std::vector<Tensor> scaled(params.size());
    for (size_t k = 0; k < params.size(); ++k) {
      if (!params[k].grad().defined()) continue;
      Tensor target = params[k];  // shares the parameter's impl: set_grad reaches the parameter itself
      if (params[k].grad().device().is_cuda()) {
        target.set_grad(ops::mul(params[k].grad(), coefficient));
        continue;
      }
      scaled[k] = empty_like(host_grads[k]);
      target.set_grad(scaled[k]);
    }
    parallel_for(0, static_cast<int64_t>(pieces.size()), 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const GradientPiece& piece = pieces[static_cast<size_t>(i)];
        dispatch_floating(scaled[piece.param].dtype(), "clip_grad_norm", [&](auto tag) {
          using scalar_t = decltype(tag);
          const scalar_t* src = host_grads[piece.param].data<scalar_t>();
          scalar_t* dst = scaled[piece.param].data<scalar_t>();
          const auto c = static_cast<scalar_t>(coefficient);
          for (int64_t e = piece.begin; e < piece.end; ++e) dst[e] = src[e] * c;
        });
      }
    });
  }
  return total;
}

double LRSchedule::lr_at(int64_t iteration) const {
  double factor = 1.0;
  if (iteration < warmup_iters) {
    const double alpha = static_cast<double>(iteration) / static_cast<double>(warmup_iters);
    factor = warmup_factor * (1 - alpha) + alpha;
  }
  double lr = base_lr;
  if (kind == Kind::MultiStep) {
    for (int64_t m : milestones)
      if (iteration >= m) lr *= gamma;
  } else if (kind == Kind::Cosine && total_iters > 0) {
    const double progress = std::min(1.0, static_cast<double>(iteration) / static_cast<double>(total_iters));
    lr = min_lr + (base_lr - min_lr) * 0.5 * (1 + std::cos(M_PI * progress));
  }
  return lr * factor;
}

}  // namespace mrcnn::nn
