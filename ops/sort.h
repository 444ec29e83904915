// sort and topk along a dim. Not differentiable: the results are detached, like torchvision's use
// of them for indexing.
#pragma once
#include "ops/reduce.h"

namespace mrcnn::ops {

// Stable: equal values keep their input order (descending too).
ValuesIndices sort(const Tensor& x, int64_t dim = -1, bool descending = false);
// The k largest (or smallest) along dim, in sorted order.
ValuesIndices topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true);

}  // namespace mrcnn::ops
