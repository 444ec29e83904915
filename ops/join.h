// Joining and splitting along a dim: cat, stack, split.
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace mrcnn::ops {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Pieces of `split_size` (the last may be shorter), or of the given sizes; views of x.
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0);

}  // namespace mrcnn::ops
