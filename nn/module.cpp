// Module tree bookkeeping: recursive names, state_dict load with exact shape checks, train/eval.
#include "nn/module.h"

#include <set>
#include <sstream>

#include "autograd/node.h"
#include "ops/elementwise.h"
#include "ops/view.h"

namespace mrcnn::nn {

void Module::to(Device device) {
  NamedTensors all = named_parameters();
  for (auto& named : named_buffers()) all.push_back(named);
  for (auto& [name, t] : all) {
    if (t.device() == device) continue;
    const Tensor moved = copy_as(t, t.dtype(), device);
    TensorImpl& impl = t.impl();
    impl.storage = moved.storage();
    impl.offset = 0;
    impl.strides = moved.strides();
    impl.grad.reset();
  }
}

Device Module::device() const {
  const NamedTensors params = named_parameters();
  return params.empty() ? kCPU : params.front().second.device();
}

Tensor Module::register_parameter(const std::string& name, Tensor value, bool requires_grad) {
  value.set_requires_grad(requires_grad);
  parameters_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  buffers_.emplace_back(name, value);
  return value;
}

void Module::collect(const std::string& prefix, bool buffers, NamedTensors& out) const {
  for (const auto& [name, tensor] : buffers ? buffers_ : parameters_) out.emplace_back(prefix + name, tensor);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", buffers, out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", false, out);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", true, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<Tensor> Module::trainable_parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters())
    if (t.requires_grad()) out.push_back(t);
  return out;
}

std::map<std::string, Tensor> Module::state_dict() const {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : named_parameters()) out[name] = t;
  for (auto& [name, t] : named_buffers()) out[name] = t;
  return out;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& state, bool strict) {
  const auto own = state_dict();
  std::vector<std::string> missing, unexpected;
  for (const auto& [name, target] : own) {
    const auto it = state.find(name);
    if (it == state.end()) {
      missing.push_back(name);
      continue;
    }
    check(it->second.sizes() == target.sizes(), "load_state_dict: ", name, " has shape ",
          shape_str(it->second.sizes()), " in the checkpoint but ", shape_str(target.sizes()), " in the model");
  }
  for (const auto& [name, tensor] : state)
    if (!own.count(name)) unexpected.push_back(name);
  if (strict && (!missing.empty() || !unexpected.empty())) {
    std::ostringstream message;
    message << "load_state_dict: ";
    auto list = [&](const char* what, const std::vector<std::string>& names) {
      message << names.size() << " " << what;
      for (size_t i = 0; i < names.size() && i < 5; ++i) message << (i ? ", " : " (") << names[i];
      if (!names.empty()) message << (names.size() > 5 ? ", ...)" : ")");
    };
    list("missing", missing);
    message << "; ";
    list("unexpected", unexpected);
    throw Error(message.str());
  }
  autograd::NoGradGuard no_grad;
  for (const auto& [name, target] : own) {
    const auto it = state.find(name);
    if (it == state.end()) continue;
    const Tensor& source = it->second;
    // Straight in where dtype and device match (a staged copy first was one more pass over the model).
    if (source.dtype() == target.dtype() && source.device() == target.device()) copy_into(target, source);
    else copy_into(target, copy_as(source, target.dtype(), target.device()));
  }
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::set_requires_grad(bool on) {
  for (auto& [name, t] : named_parameters()) t.set_requires_grad(on);
}

void Module::zero_grad() {
  for (auto& [name, t] : named_parameters()) t.zero_grad();
}

void Sequential::push_back(std::shared_ptr<Layer> layer) {
  register_module(std::to_string(layers_.size()), layer);
  layers_.push_back(std::move(layer));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (auto& layer : layers_) y = (*layer)(y);
  return y;
}

Tensor Layer::forward_relu(const Tensor& x, const Tensor& residual) {
  const Tensor y = forward(x);
  return ops::relu(residual.defined() ? ops::add(y, residual) : y);
}

Tensor Layer::operator()(const Tensor& x) {
  Tensor y = forward(x);
  if (OutputCapture* capture = OutputCapture::active(); capture && capture->records(this)) capture->record(this, y);
  return y;
}

Tensor Layer::relu_of(const Tensor& x, const Tensor& residual) {
  const OutputCapture* capture = OutputCapture::active();
  if (!capture || !capture->records(this)) return forward_relu(x, residual);
  const Tensor y = (*this)(x);
  return ops::relu(residual.defined() ? ops::add(y, residual) : y);
}

std::vector<std::pair<std::string, const Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, const Module*>> out;
  for (const auto& [name, child] : children_) {
    out.emplace_back(name, child.get());
    for (const auto& [below, module] : child->named_modules()) out.emplace_back(name + "." + below, module);
  }
  return out;
}

namespace {
thread_local OutputCapture* active_capture = nullptr;
}  // namespace

OutputCapture::OutputCapture(std::map<const Module*, std::string> chosen)
    : chosen_(std::move(chosen)), outer_(active_capture) {
  active_capture = this;
}

OutputCapture::~OutputCapture() { active_capture = outer_; }

OutputCapture* OutputCapture::active() { return active_capture; }

// A copy: inference may go on to change the output in place (the mask predictor's relu_).
void OutputCapture::record(const Module* layer, const Tensor& output) {
  outputs_.emplace_back(chosen_.at(layer), ops::clone(output.detach()));
}

}  // namespace mrcnn::nn
