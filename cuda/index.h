// CUDA index kernels for ops/index.cpp. Plain C++: implemented in index.cu, or by stubs.cpp.
// Tensors are contiguous; indices are int64 and already bounds-checked by the caller.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace mrcnn::cuda {

// x viewed as [outer, n, inner]; out [outer, count, inner] = x[:, index, :].
void index_select(const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& index, const Tensor& out);
// out[:, index[j], :] += src[:, j, :] (atomic adds; out viewed as [outer, n, inner]).
void index_add(const Tensor& out, int64_t outer, int64_t n, int64_t inner, const Tensor& index, const Tensor& src);
// gather (add = false): out[e] = x[offset(e, index[e])]; scatter_add (add = true):
// x[offset(e, index[e])] += out[e], with offset the element e of index's shape moved to index[e] along dim.
void gather_scatter(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out, bool add);

}  // namespace mrcnn::cuda
