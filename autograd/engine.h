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

}  // namespace mrcnn::autograd
