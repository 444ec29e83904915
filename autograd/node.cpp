// Gradient mode and the recording of nodes: the glue every differentiable op calls after its forward.
#include "autograd/node.h"

namespace mrcnn::autograd {

namespace {
thread_local bool g_grad_enabled = true;

std::shared_ptr<Node> edge_to(const Tensor& input) {
  if (!input.defined() || !input.requires_grad()) return nullptr;
  if (input.grad_fn()) return input.grad_fn();
  TensorImpl& impl = input.impl();
  if (!impl.grad_accumulator) {
    auto node = std::make_shared<Node>();
    node->name = "AccumulateGrad";
    node->shape = impl.sizes;
    node->dtype = impl.dtype;
    node->device = input.device();
    node->is_accumulator = true;
    node->leaf = input.impl_ptr();
    impl.grad_accumulator = node;
  }
  return impl.grad_accumulator;
}
}  // namespace

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = previous_; }

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

std::shared_ptr<Node> gradient_edge(const Tensor& t) { return edge_to(t); }

Tensor record(const char* name, Tensor out, const std::vector<Tensor>& inputs, BackwardFn backward) {
  if (!needs_grad(inputs)) return out;
  // An op may hand back one of its inputs unchanged (contiguous() of a contiguous tensor); the
  // output still needs its own metadata so the input's grad_fn is not overwritten.
  for (const Tensor& t : inputs)
    if (t.defined() && t.same(out)) out = out.detach();
  auto node = std::make_shared<Node>();
  node->name = name;
  node->shape = out.sizes();
  node->dtype = out.dtype();
  node->device = out.device();
  node->backward = std::move(backward);
  node->next.reserve(inputs.size());
  for (const Tensor& t : inputs) node->next.push_back(edge_to(t));
  out.impl().grad_fn = node;
  out.impl().requires_grad = true;
  return out;
}

}  // namespace mrcnn::autograd
