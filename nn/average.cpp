// WeightAverage: one fused lerp per tracked tensor per step (ops::average_step_), on the tensors'
// own device; swapping the averages in and out is plain copies, so it never changes a bit of training.
#include "nn/average.h"

#include <algorithm>

#include "autograd/node.h"
#include "ops/optim.h"

namespace mrcnn::nn {

WeightAverage::WeightAverage(NamedTensors tracked, double decay) : tracked_(std::move(tracked)), decay_(decay) {
  check(decay > 0 && decay < 1, "weight average: the decay must be in (0, 1), got ", decay);
  for (const auto& [name, t] : tracked_) {
    check(t.is_contiguous() && is_floating(t.dtype()), "weight average: ", name, " must be a contiguous floating tensor");
    averages_.push_back(copy_as(t, t.dtype(), t.device()));
  }
}

double WeightAverage::decay_at(int64_t updates) const {
  return std::min(decay_, (1.0 + static_cast<double>(updates)) / (10.0 + static_cast<double>(updates)));
}

void WeightAverage::update() {
  autograd::NoGradGuard no_grad;
  const double weight = 1 - decay_at(updates_);
  for (size_t i = 0; i < tracked_.size(); ++i) ops::average_step_(averages_[i], tracked_[i].second, weight);
  ++updates_;
}

void WeightAverage::set_updates(int64_t updates) {
  check(updates >= 0, "weight average: the update count must be >= 0, got ", updates);
  updates_ = updates;
}

std::map<std::string, Tensor> WeightAverage::snapshot() const {
  std::map<std::string, Tensor> values;
  for (const auto& [name, t] : tracked_) values[name] = copy_as(t, t.dtype(), t.device());
  return values;
}

void WeightAverage::apply() const {
  for (size_t i = 0; i < tracked_.size(); ++i) copy_into(tracked_[i].second, averages_[i]);
}

void WeightAverage::restore(const std::map<std::string, Tensor>& values, const std::string& what) const {
  for (const auto& [name, t] : tracked_) {
    const auto it = values.find(name);
    check(it != values.end(), what, ": no tensor ", name);
    check(it->second.sizes() == t.sizes(), what, ": ", name, " has shape ", shape_str(it->second.sizes()), " but the model ",
          shape_str(t.sizes()));
  }
  for (const auto& [name, t] : tracked_) copy_into(t, values.at(name));
}

}  // namespace mrcnn::nn
