// Module: a node of the model tree holding named parameters (leaves that train), buffers (state that
// does not: running statistics, frozen norms) and child modules. Names join with "." exactly like
// PyTorch's state_dict keys, so checkpoints read and write torchvision's names.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace mrcnn::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // In registration order, recursively, with dotted names ("layer1.0.conv1.weight").
  NamedTensors named_parameters() const;
  NamedTensors named_buffers() const;
  std::vector<Tensor> parameters() const;             // all of them
  std::vector<Tensor> trainable_parameters() const;   // those with requires_grad
  // Parameters then buffers, by name.
  std::map<std::string, Tensor> state_dict() const;
  // Copies each tensor's values into the module's own (shapes must match exactly, dtype converted).
  // strict: every key of the module must be present and no unknown key may be given; the Error
  // lists what is missing or unexpected.
  void load_state_dict(const std::map<std::string, Tensor>& state, bool strict = true);

  // Training mode: batch norm uses batch statistics and the detector samples and returns losses.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // requires_grad on every parameter of this module and its children.
  void set_requires_grad(bool on);
  void zero_grad();
  // Moves every parameter and buffer to `device` in place: handles held by modules, optimizers and
  // callers keep pointing at the same tensors, now on the device. Gradients are dropped.
  void to(Device device);
  Device device() const;  // of the first parameter (CPU for a module without parameters)
  // Every descendant with its dotted name ("backbone.body.layer1.0.conv1"), parents before children.
  std::vector<std::pair<std::string, const Module*>> named_modules() const;

 protected:
  // The returned Tensor shares storage with the registered one: keep it as a member.
  Tensor register_parameter(const std::string& name, Tensor value, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, Tensor value);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    children_.emplace_back(name, module);
    return module;
  }

 private:
  void collect(const std::string& prefix, bool buffers, NamedTensors& out) const;
  NamedTensors parameters_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// A module whose forward maps one tensor to one tensor (layers, blocks, Sequential). Models call
// a layer through operator() and relu_of, which an OutputCapture can observe; forward and
// forward_relu are what a layer implements.
class Layer : public Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;
  // relu(forward(x) [+ residual]); a layer that can fuse the sum and the relu into its own pass
  // overrides it (FrozenBatchNorm2d, GroupNorm).
  virtual Tensor forward_relu(const Tensor& x, const Tensor& residual = Tensor());
  Tensor operator()(const Tensor& x);
  // forward_relu, unless an OutputCapture records this layer: then forward, recorded, and the sum
  // and relu apart, so the record is the layer's own output as a hook on torchvision's sees it.
  Tensor relu_of(const Tensor& x, const Tensor& residual = Tensor());
};

// Records the outputs of chosen layers while a model runs, as PyTorch's forward hooks would (read
// only): while one is alive, each call of a chosen layer on this thread appends a copy of its output
// under the layer's name. A layer called several times in one forward (the RPN head once per FPN level, the
// RoI heads once per level's group of boxes) appends one tensor per call, in call order.
class OutputCapture {
 public:
  explicit OutputCapture(std::map<const Module*, std::string> chosen);
  ~OutputCapture();
  OutputCapture(const OutputCapture&) = delete;
  OutputCapture& operator=(const OutputCapture&) = delete;
  // (name, output) in call order.
  const std::vector<std::pair<std::string, Tensor>>& outputs() const { return outputs_; }

  // The capture alive on this thread, or null.
  static OutputCapture* active();
  bool records(const Module* layer) const { return chosen_.count(layer) > 0; }
  void record(const Module* layer, const Tensor& output);

 private:
  std::map<const Module*, std::string> chosen_;
  std::vector<std::pair<std::string, Tensor>> outputs_;
  OutputCapture* outer_;
};

// Children named "0", "1", ... applied in order, like torch.nn.Sequential.
class Sequential : public Layer {
 public:
  void push_back(std::shared_ptr<Layer> layer);
  Tensor forward(const Tensor& x) override;
  size_t size() const { return layers_.size(); }
  const std::shared_ptr<Layer>& operator[](size_t i) const { return layers_[i]; }

 private:
  std::vector<std::shared_ptr<Layer>> layers_;
};

}  // namespace mrcnn::nn
