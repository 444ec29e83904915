// A node of the backward graph: the gradient function of one op's output, with edges to the nodes
// of the op's inputs. Leaves get an accumulator node (`leaf` set) that the engine adds into.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace mrcnn::autograd {

// Maps the gradient of the op's output to one gradient per input (undefined where not needed).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& dout)>;

class Node {
 public:
  std::string name;                          // the op, for error messages: "mul", "matmul"
  std::vector<std::shared_ptr<Node>> next;   // per input; null when that input needs no gradient
  Shape shape;                               // of the tensor this node produces the gradient for
  DType dtype = kFloat32;
  Device device = kCPU;
  BackwardFn backward;                       // captures the saved tensors; released after use
  bool released = false;
  bool is_accumulator = false;               // a leaf's accumulator: adds into leaf->grad
  std::weak_ptr<TensorImpl> leaf;
};

// Gradient mode: off inside NoGradGuard and while the engine runs backward functions.
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// The node a gradient for `input` flows into: its grad_fn, a leaf's accumulator, or null.
std::shared_ptr<Node> gradient_edge(const Tensor& input);

// True when grad mode is on and some input requires grad: the op must record a node.
bool needs_grad(const std::vector<Tensor>& inputs);
// Records `out` as produced by op `name` from `inputs`, with `backward` mapping dout to one gradient
// per input. Call right after the forward; a no-op when needs_grad(inputs) is false. The lambda
// must not capture `out` itself (that would be a reference cycle): capture out.detach().
Tensor record(const char* name, Tensor out, const std::vector<Tensor>& inputs, BackwardFn backward);

}  // namespace mrcnn::autograd
