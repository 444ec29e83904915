// Reverse-mode traversal (Kahn's algorithm over the nodes reachable from the root). The order is a
// pure function of the graph, so gradients are bit-identical from run to run.
#include "autograd/engine.h"

#include <deque>
#include <unordered_map>
#include <unordered_set>

namespace mrcnn::autograd {

namespace {

void check_gradient(const Node& target, const Tensor& grad, const std::string& from) {
  check(grad.sizes() == target.shape, "autograd: ", from, " produced a gradient of shape ",
        shape_str(grad.sizes()), " for a tensor of shape ", shape_str(target.shape));
  check(grad.dtype() == target.dtype, "autograd: ", from, " produced a ", dtype_name(grad.dtype()),
        " gradient for a ", dtype_name(target.dtype), " tensor");
  check(grad.device() == target.device, "autograd: ", from, " produced a gradient on ", grad.device().str(),
        " for a tensor on ", target.device.str());
}

}  // namespace

void backward(const Tensor& root, const Tensor& grad, bool retain_graph) {
  check(root.defined(), "backward: undefined tensor");
  check(root.requires_grad(), "backward: the tensor does not require grad and has no grad_fn");
  Tensor seed = grad;
  if (!seed.defined()) {
    check(root.numel() == 1, "backward: gradient can be implicit only for one-element outputs, this one has shape ",
          shape_str(root.sizes()));
    seed = ones_like(root);
  }
  const std::shared_ptr<Node> root_node = root.grad_fn() ? root.grad_fn() : gradient_edge(root);
  check_gradient(*root_node, seed, "backward's grad argument");

  // Count, for every reachable node, how many edges point at it.
  std::unordered_map<Node*, int> dependencies;
  std::unordered_set<Node*> seen{root_node.get()};
  std::vector<Node*> stack{root_node.get()};
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const auto& next : node->next) {
      if (!next) continue;
      ++dependencies[next.get()];
      if (seen.insert(next.get()).second) stack.push_back(next.get());
    }
  }

  std::unordered_map<Node*, Tensor> pending{{root_node.get(), seed}};
  std::deque<Node*> ready{root_node.get()};
  NoGradGuard no_grad;
  while (!ready.empty()) {
    Node* node = ready.front();
    ready.pop_front();
    auto found = pending.find(node);
    Tensor dout;
    if (found != pending.end()) {
      dout = found->second;
      pending.erase(found);
    }
    if (node->is_accumulator) {
      if (auto leaf = node->leaf.lock(); leaf && dout.defined()) {
        // Leaves own a fresh contiguous buffer, never an alias of another tensor's gradient. A
        // gradient nothing else references (the usual case: a backward kernel's fresh output) is
        // taken as it is; anything shared is copied.
        const bool sole_owner = dout.impl_ptr().use_count() == 1 && dout.impl().storage.use_count() == 1 &&
                                dout.is_contiguous() && dout.impl().offset == 0 && !dout.requires_grad();
        Tensor owned = leaf->grad ? add_same_shape(Tensor(leaf->grad), dout)
                                  : sole_owner ? dout : copy_as(dout, dout.dtype(), dout.device());
        leaf->grad = owned.impl_ptr();
      }
      continue;
    }
    if (dout.defined()) {
      check(!node->released, "autograd: backward through '", node->name,
            "' a second time: its saved tensors were freed by the first backward; pass retain_graph=true "
            "to the first call");
      std::vector<Tensor> grads = node->backward(dout);
      check(grads.size() == node->next.size(), "autograd: '", node->name, "' returned ", grads.size(),
            " gradients for ", node->next.size(), " inputs");
      for (size_t i = 0; i < grads.size(); ++i) {
        Node* next = node->next[i].get();
        if (!next || !grads[i].defined()) continue;
        check_gradient(*next, grads[i], "'" + node->name + "' (input " + std::to_string(i) + ")");
        auto slot = pending.find(next);
        if (slot == pending.end()) pending.emplace(next, grads[i]);
        else slot->second = add_same_shape(slot->second, grads[i]);
      }
      if (!retain_graph) {
        node->backward = nullptr;
        node->released = true;
      }
    }
    for (const auto& next : node->next)
      if (next && --dependencies[next.get()] == 0) ready.push_back(next.get());
  }
}

}  // namespace mrcnn::autograd
