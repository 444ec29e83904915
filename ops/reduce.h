// Reductions over dims with keepdim, PyTorch semantics. Summation is blocked with block boundaries
// fixed by the shape, so results do not depend on the thread count.
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace mrcnn::ops {

Tensor sum(const Tensor& x);  // all elements, 0-d result
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);

struct ValuesIndices {
  Tensor values;
  Tensor indices;  // int64
};
// Along one dim; ties pick the first index. The gradient flows to the picked element.
ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim = false);
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& x);  // over all elements, 0-d
Tensor min(const Tensor& x);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);

// Sums a broadcast result back to `shape` (the backward of broadcasting).
Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace mrcnn::ops
