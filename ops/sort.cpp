// Stable sort and topk along a dim, one lane per thread; results are detached.
#include "ops/sort.h"

#include <algorithm>
#include <numeric>

#include "cuda/sort.h"
#include "ops/view.h"
#include "tensor/dispatch.h"
#include "tensor/parallel.h"

namespace mrcnn::ops {

namespace {

// Sorts each lane of x along dim and keeps the first `keep` entries.
ValuesIndices sorted_lanes(const Tensor& x, int64_t dim, int64_t keep, bool descending, const char* op) {
  check(x.dtype() != kBool, op, ": bool tensors are not supported");
  if (x.dim() == 0) return {x.detach(), zeros({}, kInt64, x.device())};
  if (x.device().is_cuda()) {
    // Sort rows of x with dim moved last, keep the first `keep` columns, move dim back.
    const Tensor rows = contiguous(transpose(x.detach(), dim, -1));
    const int64_t n = x.sizes()[dim], lanes = n > 0 ? rows.numel() / n : 0;
    Tensor values = empty(rows.sizes(), x.dtype(), x.device()), indices = empty(rows.sizes(), kInt64, x.device());
    cuda::sort_rows(rows, lanes, n, descending, values, indices);
    auto back = [&](const Tensor& t) { return contiguous(transpose(narrow(t, -1, 0, keep), dim, -1)); };
    return {back(values), back(indices)};
  }
  const Tensor xc = contiguous(x.detach());
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.sizes()[d];
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.sizes()[d];
  const int64_t n = x.sizes()[dim];
  Shape out_shape = x.sizes();
  out_shape[dim] = keep;
  ValuesIndices result{empty(out_shape, x.dtype()), empty(out_shape, kInt64)};
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* in = xc.data<T>();
    T* values = result.values.data<T>();
    int64_t* indices = result.indices.data<int64_t>();
    parallel_for(0, outer * inner, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(n * 16, 1)),
                 [&](int64_t begin, int64_t end) {
                   std::vector<int64_t> order(static_cast<size_t>(n));
                   for (int64_t lane = begin; lane < end; ++lane) {
                     const int64_t o = lane / inner, i = lane % inner;
                     const T* p = in + o * n * inner + i;
                     std::iota(order.begin(), order.end(), 0);
                     // NaN sorts as the largest value, like PyTorch.
                     auto less = [&](int64_t a, int64_t b) {
                       const T va = p[a * inner], vb = p[b * inner];
                       if (va != va) return false;
                       return vb != vb || va < vb;
                     };
                     // Equal values keep index order (a stable sort); written as a strict order with the
                     // index as tie-break so that top-k can partially sort (O(n log k)) with the same result.
                     auto before = [&](int64_t a, int64_t b) {
                       const bool ab = descending ? less(b, a) : less(a, b), ba = descending ? less(a, b) : less(b, a);
                       return ab || (!ba && a < b);
                     };
                     if (keep < n) std::partial_sort(order.begin(), order.begin() + keep, order.end(), before);
                     else std::sort(order.begin(), order.end(), before);
                     for (int64_t j = 0; j < keep; ++j) {
                       const int64_t at = o * keep * inner + j * inner + i;
                       values[at] = p[order[j] * inner];
                       indices[at] = order[j];
                     }
                   }
                 });
  });
  return result;
}

}  // namespace

ValuesIndices sort(const Tensor& x, int64_t dim, bool descending) {
  dim = wrap_dim(dim, x.dim(), "sort");
  return sorted_lanes(x, dim, x.dim() == 0 ? 1 : x.sizes()[dim], descending, "sort");
}

ValuesIndices topk(const Tensor& x, int64_t k, int64_t dim, bool largest) {
  dim = wrap_dim(dim, x.dim(), "topk");
  const int64_t n = x.dim() == 0 ? 1 : x.sizes()[dim];
  check(k >= 0 && k <= n, "topk: k = ", k, " is out of range for dim ", dim, " of shape ", shape_str(x.sizes()));
  return sorted_lanes(x, dim, k, largest, "topk");
}

}  // namespace mrcnn::ops
