// The backward engine: walks the graph from a root in reverse topological order, calls each node's
// backward once with the sum of its incoming gradients, and accumulates into leaves' .grad().
// The one rule: backward functions return fresh gradients; only the engine sums them. Every
// gradient's shape, dtype and device is checked against the tensor it belongs to.
#pragma once
#include "autograd/node.h"

namespace mrcnn::autograd {

// `grad` defaults to 1 for a one-element root. Without retain_graph the saved tensors are freed, and
// a second backward through the same nodes throws.
void backward(const Tensor& root, const Tensor& grad = Tensor(), bool retain_graph = false);

// Where backward's time goes, op by op (`mrcnn bench --profile`). While on, every backward function
// (and the engine's own sums of incoming gradients and accumulations into .grad) waits for the GPU
// before and after it, so each time is that op's own; off by default (then it costs one branch).
struct OpTime {
  std::string op;  // the node's name: "conv2d", "mul", ...
  int64_t calls = 0;
  double ms = 0;
  int64_t flops = 0;  // the products' nominal operations (tensor/flop_count.h), 0 for ops without
};
void set_backward_profiling(bool on);
// Accumulated since the last reset, slowest op first (ties in first-seen order).
std::vector<OpTime> backward_profile();
void reset_backward_profile();

}  // namespace mrcnn::autograd
