// Differentiable views and copies: reshape, permute, narrow, expand, ... share storage with their
// input where PyTorch would; contiguous/to/clone copy. Backward of a view writes into zeros of the
// input's shape (narrow, slice) or reshapes/permutes back.
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace mrcnn::ops {

// One size may be -1 (inferred). view() requires a contiguous input; reshape() copies when needed.
Tensor view(const Tensor& x, Shape sizes);
Tensor reshape(const Tensor& x, Shape sizes);
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
// Python's x[start:end:step] along dim; start/end are clamped like Python slices, negatives wrap.
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor select(const Tensor& x, int64_t dim, int64_t index);  // removes dim
// Size-1 dims broadcast to `sizes` without copying (stride 0); -1 keeps a size.
Tensor expand(const Tensor& x, const Shape& sizes);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x);               // all size-1 dims
Tensor squeeze(const Tensor& x, int64_t dim);  // that dim if it has size 1

Tensor contiguous(const Tensor& x);  // x itself when already contiguous
Tensor to(const Tensor& x, DType dtype);
Tensor to(const Tensor& x, Device device);
Tensor clone(const Tensor& x);

}  // namespace mrcnn::ops
