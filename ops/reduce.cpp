// Reductions. The input is viewed as [outer, reduced, inner] (copying only when the reduced dims are
// not one contiguous block); every output element is summed in an order fixed by the shape.
#include "ops/reduce.h"

#include <algorithm>
#include <limits>

#include "autograd/node.h"
#include "cuda/elementwise.h"
#include "cuda/reduce.h"
#include "ops/elementwise.h"
#include "ops/index.h"
#include "ops/lane_kernels.h"
#include "ops/view.h"
#include "tensor/dispatch.h"
#include "tensor/parallel.h"

namespace mrcnn {

namespace cpu {

// out[o, i] = sum_r x[o, r, i], x contiguous.
template <typename T>
void sum_reduce(const T* x, int64_t outer, int64_t reduced, int64_t inner, T* out) {
  if (inner >= 64) {
    // Wide rows: each (o, column chunk) accumulates over r in order; vectorises over i.
    const int64_t chunk = 256;
    const int64_t chunks = (inner + chunk - 1) / chunk;
    parallel_for(0, outer * chunks, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(reduced * chunk, 1)),
                 [&](int64_t begin, int64_t end) {
                   for (int64_t job = begin; job < end; ++job) {
                     const int64_t o = job / chunks, i0 = (job % chunks) * chunk, i1 = std::min(inner, i0 + chunk);
                     T* acc = out + o * inner;
                     std::fill(acc + i0, acc + i1, T(0));
                     for (int64_t r = 0; r < reduced; ++r) {
                       const T* row = x + (o * reduced + r) * inner;
                       for (int64_t i = i0; i < i1; ++i) acc[i] += row[i];
                     }
                   }
                 });
    return;
  }
  // Narrow rows: partial sums over blocks of r (block length fixed by `inner`), then the blocks in order.
  const int64_t block = std::max<int64_t>(1, 4096 / std::max<int64_t>(inner, 1));
  const int64_t blocks = (reduced + block - 1) / block;
  std::vector<T> partial(static_cast<size_t>(outer * blocks * inner), T(0));
  parallel_for(0, outer * blocks, std::max<int64_t>(1, kParallelGrain / (block * inner)), [&](int64_t begin, int64_t end) {
    for (int64_t job = begin; job < end; ++job) {
      const int64_t o = job / blocks, b = job % blocks;
      T* acc = partial.data() + job * inner;
      for (int64_t r = b * block; r < std::min(reduced, (b + 1) * block); ++r) {
        const T* row = x + (o * reduced + r) * inner;
        for (int64_t i = 0; i < inner; ++i) acc[i] += row[i];
      }
    }
  });
  parallel_for(0, outer, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(blocks * inner, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t o = begin; o < end; ++o) {
                   T* acc = out + o * inner;
                   std::fill(acc, acc + inner, T(0));
                   for (int64_t b = 0; b < blocks; ++b) {
                     const T* p = partial.data() + (o * blocks + b) * inner;
                     for (int64_t i = 0; i < inner; ++i) acc[i] += p[i];
                   }
                 }
               });
}

// Index of the max (or min) along r for each (o, i); the first one wins ties; NaN counts as largest.
template <typename T>
void arg_extreme(const T* x, int64_t outer, int64_t reduced, int64_t inner, bool largest, T* values, int64_t* indices) {
  parallel_for(0, outer * inner, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(reduced, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t job = begin; job < end; ++job)
                   extreme_lane(x + (job / inner) * reduced * inner + job % inner, reduced, inner, largest, values + job,
                                indices + job);
               });
}

}  // namespace cpu

namespace ops {

using autograd::record;

namespace {

struct ReduceLayout {
  Tensor x;  // contiguous, viewed as [outer, reduced, inner]
  int64_t outer = 1, reduced = 1, inner = 1;
  Shape keep_shape;  // output with keepdim
  Shape out_shape;   // output without keepdim
};

// With allow_copy false, reduced dims that are not one consecutive block leave layout.x undefined
// (the caller reduces block by block instead of copying x permuted).
ReduceLayout layout_for(const Tensor& x, std::vector<int64_t> dims, const char* op, bool allow_copy = true) {
  std::vector<bool> is_reduced(static_cast<size_t>(x.dim()), false);
  for (int64_t& d : dims) {
    d = wrap_dim(d, x.dim(), op);
    if (x.dim() == 0) continue;
    check(!is_reduced[d], op, ": dim ", d, " repeated");
    is_reduced[d] = true;
  }
  std::sort(dims.begin(), dims.end());
  ReduceLayout layout;
  for (int64_t d = 0; d < x.dim(); ++d) {
    layout.keep_shape.push_back(is_reduced[d] ? 1 : x.sizes()[d]);
    if (!is_reduced[d]) layout.out_shape.push_back(x.sizes()[d]);
  }
  const bool consecutive = dims.empty() || x.dim() == 0 || dims.back() - dims.front() + 1 == static_cast<int64_t>(dims.size());
  Tensor source = x.detach();
  if (consecutive) {
    source = contiguous(source);
    if (x.dim() > 0 && !dims.empty()) {
      for (int64_t d = 0; d < dims.front(); ++d) layout.outer *= x.sizes()[d];
      for (int64_t d : dims) layout.reduced *= x.sizes()[d];
      for (int64_t d = dims.back() + 1; d < x.dim(); ++d) layout.inner *= x.sizes()[d];
    } else {
      layout.outer = x.numel();
    }
  } else if (!allow_copy) {
    return layout;
  } else {
    // Move kept dims first, reduced dims last, then one contiguous copy.
    std::vector<int64_t> order;
    for (int64_t d = 0; d < x.dim(); ++d)
      if (!is_reduced[d]) order.push_back(d);
    for (int64_t d : dims) order.push_back(d);
    source = contiguous(permute(source, order));
    for (int64_t d = 0; d < x.dim(); ++d) (is_reduced[d] ? layout.reduced : layout.outer) *= x.sizes()[d];
  }
  layout.x = source;
  return layout;
}

std::vector<int64_t> all_dims(const Tensor& x) {
  std::vector<int64_t> dims(static_cast<size_t>(x.dim()));
  for (int64_t d = 0; d < x.dim(); ++d) dims[d] = d;
  return dims;
}

Tensor sum_forward(const ReduceLayout& l, const Tensor& x, bool keepdim) {
  Tensor out = empty(keepdim ? l.keep_shape : l.out_shape, x.dtype(), x.device());
  if (out.numel() == 0) return out;
  if (x.device().is_cuda()) {
    cuda::sum_reduce(l.x, l.outer, l.reduced, l.inner, out);
    return out;
  }
  dispatch_floating(x.dtype(), "sum", [&](auto tag) {
    using T = decltype(tag);
    cpu::sum_reduce<T>(static_cast<const T*>(l.x.raw_data()), l.outer, l.reduced, l.inner, out.data<T>());
  });
  return out;
}

// Sums over reduced dims that form several blocks (dims 0, 2, 3 of [N, C, H, W]: a per-channel
// bias gradient) one block at a time, last block first, each in place, instead of copying x
// transposed. The partial sums fix the order, so the result is still independent of threads.
Tensor sum_by_blocks(const Tensor& x, std::vector<int64_t> dims) {
  for (int64_t& d : dims) d = wrap_dim(d, x.dim(), "sum");
  std::sort(dims.begin(), dims.end());
  Tensor partial = x.detach();
  for (size_t end = dims.size(); end > 0;) {
    size_t begin = end - 1;
    while (begin > 0 && dims[begin - 1] + 1 == dims[begin]) --begin;
    const std::vector<int64_t> block(dims.begin() + static_cast<std::ptrdiff_t>(begin),
                                     dims.begin() + static_cast<std::ptrdiff_t>(end));
    partial = sum_forward(layout_for(partial, block, "sum"), partial, /*keepdim=*/true);
    end = begin;
  }
  return partial;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check(is_floating(x.dtype()), "sum: expected a float32 or float64 tensor, got ", dtype_name(x.dtype()));
  const ReduceLayout l = layout_for(x, dims, "sum", /*allow_copy=*/false);
  const Tensor out = l.x.defined() ? sum_forward(l, x, keepdim)
                                   : contiguous(reshape(sum_by_blocks(x, dims), keepdim ? l.keep_shape : l.out_shape));
  return record("sum", out, {x}, [in_sizes = x.sizes(), keep = l.keep_shape](const Tensor& d) {
    return std::vector<Tensor>{expand(reshape(d, keep), in_sizes)};
  });
}

Tensor sum(const Tensor& x) { return sum(x, all_dims(x), false); }

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const Tensor total = sum(x, dims, keepdim);  // validates dims
  // The count comes from the sizes: building a layout here would copy x a second time.
  int64_t count = 1;
  if (x.dim() > 0)
    for (int64_t d : dims) count *= x.sizes()[wrap_dim(d, x.dim(), "mean")];
  return div(total, static_cast<double>(count));
}

Tensor mean(const Tensor& x) { return mean(x, all_dims(x), false); }

namespace {
ValuesIndices extreme(const Tensor& x, int64_t dim, bool keepdim, bool largest, const char* op) {
  check(x.dtype() != kBool, op, ": bool tensors are not supported");
  if (x.dim() > 0) check(x.size(dim) > 0, op, ": cannot reduce over an empty dim of shape ", shape_str(x.sizes()));
  const ReduceLayout l = layout_for(x, {dim}, op);
  ValuesIndices result{empty(keepdim ? l.keep_shape : l.out_shape, x.dtype(), x.device()),
                       empty(keepdim ? l.keep_shape : l.out_shape, kInt64, x.device())};
  if (x.device().is_cuda()) cuda::arg_extreme(l.x, l.outer, l.reduced, l.inner, largest, result.values, result.indices);
  else dispatch_all(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, uint8_t>)
      cpu::arg_extreme<T>(static_cast<const T*>(l.x.raw_data()), l.outer, l.reduced, l.inner, largest,
                          result.values.data<T>(), result.indices.data<int64_t>());
  });
  if (!is_floating(x.dtype())) return result;
  const int64_t wrapped = wrap_dim(dim, x.dim(), op);
  result.values = record(op, result.values, {x},
                         [in_sizes = x.sizes(), keep = l.keep_shape, idx = result.indices, wrapped](const Tensor& d) {
                           if (in_sizes.empty()) return std::vector<Tensor>{reshape(d, in_sizes)};
                           const Tensor dx = zeros(in_sizes, d.dtype(), d.device());
                           return std::vector<Tensor>{scatter_add(dx, wrapped, reshape(idx, keep), reshape(d, keep))};
                         });
  return result;
}
}  // namespace

ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim) { return extreme(x, dim, keepdim, true, "max"); }
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim) { return extreme(x, dim, keepdim, false, "min"); }
Tensor max(const Tensor& x) {
  check(x.numel() > 0, "max: empty tensor of shape ", shape_str(x.sizes()));
  return reshape(max(reshape(x, {-1}), 0).values, {});
}
Tensor min(const Tensor& x) {
  check(x.numel() > 0, "min: empty tensor of shape ", shape_str(x.sizes()));
  return reshape(min(reshape(x, {-1}), 0).values, {});
}
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) { return max(x, dim, keepdim).indices; }
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) { return min(x, dim, keepdim).indices; }

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.sizes() == shape) return x;
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  check(lead >= 0, "sum_to: cannot reduce shape ", shape_str(x.sizes()), " to ", shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
      continue;
    }
    const int64_t want = shape[d - lead];
    check(want == x.sizes()[d] || want == 1, "sum_to: cannot reduce shape ", shape_str(x.sizes()), " to ",
          shape_str(shape));
    if (want == 1 && x.sizes()[d] != 1) dims.push_back(d);
  }
  return reshape(sum(x, dims, true), shape);
}

}  // namespace ops
}  // namespace mrcnn
