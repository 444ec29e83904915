// Indexing by int64 index tensors: index_select, gather, scatter_add, index_add; nonzero.
// Kernels partition work so no two threads write the same element (no atomics), deterministically.
#pragma once
#include "tensor/tensor.h"

namespace mrcnn::ops {

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);  // index 1-D
// out[..., i, ...] = x[..., index[..., i, ...], ...] along dim; index has x's ndim.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// self + src scattered along dim at index (duplicates accumulate), out of place.
Tensor scatter_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src);
// self + src added at positions index (1-D) along dim, out of place.
Tensor index_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src);
// [count, ndim] int64 coordinates of non-zero elements in row-major order. Not differentiable.
Tensor nonzero(const Tensor& x);

}  // namespace mrcnn::ops
