// Reverse-mode traversal (Kahn's algorithm over the nodes reachable from the root). The order is a
// pure function of the graph, so gradients are bit-identical from run to run.
#include "autograd/engine.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <unordered_map>
#include <unordered_set>

#include "tensor/flop_count.h"

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

bool profiling = false;
std::vector<OpTime> op_times;

// Times `body` into op_times[op] when profiling, else just runs it.
template <typename Body>
auto timed(const std::string& op, Body body) {
  if (!profiling) return body();
  device_synchronize();  // work queued before this op is not its own
  const int64_t flops_before = flops_counted();
  const auto start = std::chrono::steady_clock::now();
  auto result = body();
  device_synchronize();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  auto entry = std::find_if(op_times.begin(), op_times.end(), [&](const OpTime& t) { return t.op == op; });
  if (entry == op_times.end()) entry = op_times.insert(op_times.end(), OpTime{op, 0, 0, 0});
  ++entry->calls;
  entry->ms += ms;
  entry->flops += flops_counted() - flops_before;
  return result;
}

// Whether nothing but this one handle refers to the tensor's memory: a fresh contiguous buffer.
bool sole_owner(const Tensor& t) {
  return t.impl_ptr().use_count() == 1 && t.impl().storage.use_count() == 1 && t.is_contiguous() && t.impl().offset == 0 &&
         !t.requires_grad();
}

const std::string kSumOfGradients = "(sum of incoming gradients)";
const std::string kIntoLeafGrad = "(accumulate into .grad)";

}  // namespace

void set_backward_profiling(bool on) { profiling = on; }

std::vector<OpTime> backward_profile() {
  std::vector<OpTime> sorted = op_times;
  std::stable_sort(sorted.begin(), sorted.end(), [](const OpTime& a, const OpTime& b) { return a.ms > b.ms; });
  return sorted;
}

void reset_backward_profile() { op_times.clear(); }

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
        Tensor owned = timed(kIntoLeafGrad, [&] {
          return leaf->grad ? add_same_shape(Tensor(leaf->grad), dout)
                            : sole_owner(dout) ? dout : copy_as(dout, dout.dtype(), dout.device());
        });
        leaf->grad = owned.impl_ptr();
      }
      continue;
    }
    if (dout.defined()) {
      check(!node->released, "autograd: backward through '", node->name,
            "' a second time: its saved tensors were freed by the first backward; pass retain_graph=true "
            "to the first call");
      std::vector<Tensor> grads = timed(node->name, [&] { return node->backward(dout); });
      check(grads.size() == node->next.size(), "autograd: '", node->name, "' returned ", grads.size(),
            " gradients for ", node->next.size(), " inputs");
      for (size_t i = 0; i < grads.size(); ++i) {
        Node* next = node->next[i].get();
        if (!next || !grads[i].defined()) continue;
        check_gradient(*next, grads[i], "'" + node->name + "' (input " + std::to_string(i) + ")");
        auto slot = pending.find(next);
        if (slot == pending.end()) {
          pending.emplace(next, grads[i]);
        } else {
          timed(kSumOfGradients, [&] {
            // A buffer only the engine holds is summed into in place (like PyTorch's InputBuffer):
            // one activation-sized allocation fewer per join in the graph.
            if (sole_owner(slot->second)) add_into(slot->second, grads[i]);
            else slot->second = add_same_shape(slot->second, grads[i]);
            return 0;
          });
        }
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
