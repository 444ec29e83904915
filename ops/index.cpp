// Index ops on contiguous copies of their inputs. Reads parallelise freely; writes (scatter_add,
// index_add) are partitioned so each output element has a single writer that adds in index order.
#include "ops/index.h"

#include "autograd/node.h"
#include "cuda/index.h"
#include "ops/view.h"
#include "tensor/dispatch.h"
#include "tensor/parallel.h"

namespace mrcnn::ops {

using autograd::record;

namespace {

void check_indices(const Tensor& index, int64_t bound, int64_t dim, const char* op) {
  check(index.dtype() == kInt64, op, ": index must be int64, got ", dtype_name(index.dtype()));
  // CUDA indices are checked on the host: one small copy and a synchronisation, the price of an
  // error that names the bad index instead of a device-side fault.
  const Tensor host = index.device().is_cuda() ? to(index, kCPU) : index;
  const int64_t* p = host.data<int64_t>();
  for (int64_t i = 0, count = index.numel(); i < count; ++i)
    check(p[i] >= 0 && p[i] < bound, op, ": index ", p[i], " is out of bounds for dim ", dim, " with size ", bound);
}

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  check(a.device() == b.device(), op, ": tensors on different devices: ", a.device().str(), " and ", b.device().str());
}

// The index, range-checked, contiguous and on the data's device. An index may be given on the host
// for GPU data: it is checked there and uploaded, which spares the download (and the wait for the
// GPU) that checking a GPU index costs. Backward passes reuse the checked index (the *_into kernels).
Tensor checked_index(const Tensor& index, const Tensor& data, int64_t bound, int64_t dim, const char* op) {
  if (!(index.device().is_cpu() && data.device().is_cuda())) check_same_device(op, data, index);
  const Tensor idx = contiguous(index);
  check_indices(idx, bound, dim, op);
  return idx.device() == data.device() ? idx : to(idx, data.device());
}

// The destination and source of an accumulating op (index_add, scatter_add).
void check_accumulate_operands(const char* op, const Tensor& self, const Tensor& src) {
  check_same_device(op, self, src);
  check(self.dtype() == src.dtype(), op, ": dtype mismatch: ", dtype_name(self.dtype()), " and ", dtype_name(src.dtype()));
}

// [outer, n, inner] sizes of x around `dim`.
void split_around(const Shape& shape, int64_t dim, int64_t& outer, int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= shape[d];
  for (int64_t d = dim + 1; d < static_cast<int64_t>(shape.size()); ++d) inner *= shape[d];
}

// gather/scatter_add: index and x agree in ndim, index.size(d) <= x.size(d) off `dim`.
void check_gather_shapes(const Tensor& x, int64_t dim, const Tensor& index, const char* op) {
  check(index.dim() == x.dim(), op, ": index ", shape_str(index.sizes()), " must have as many dims as input ",
        shape_str(x.sizes()));
  for (int64_t d = 0; d < x.dim(); ++d)
    check(d == dim || index.sizes()[d] <= x.sizes()[d], op, ": index ", shape_str(index.sizes()),
          " is larger than input ", shape_str(x.sizes()), " in dim ", d);
}

// Offset in contiguous `target` of the index-shaped element (o, l, i) where dim takes `at`.
struct FiberMap {
  Shape index_shape, target_strides;
  int64_t dim;
  int64_t offset(int64_t linear, int64_t at) const {
    int64_t off = 0;
    for (int64_t d = static_cast<int64_t>(index_shape.size()) - 1; d >= 0; --d) {
      const int64_t c = linear % index_shape[d];
      linear /= index_shape[d];
      off += (d == dim ? at : c) * target_strides[d];
    }
    return off;
  }
};

}  // namespace

namespace {

// The accumulating ops' CPU dispatch: body(out, src, index) with typed pointers, for every dtype
// but bool (which cannot be added to).
template <typename Body>
void dispatch_accumulate(const char* op, const Tensor& out, const Tensor& src, const Tensor& idx, Body body) {
  dispatch_all(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, uint8_t>) body(out.data<T>(), src.data<T>(), idx.data<int64_t>());
    else throw Error(str_cat(op, ": bool tensors are not supported"));
  });
}

// out += src scattered at idx along dim, in place; idx already checked and on out's device.
void index_add_into(const Tensor& out, int64_t dim, const Tensor& idx, const Tensor& src) {
  const Tensor sc = contiguous(src.detach());
  int64_t outer, inner;
  split_around(out.sizes(), dim, outer, inner);
  const int64_t n = out.sizes()[dim], count = idx.numel();
  if (out.device().is_cuda()) return cuda::index_add(out, outer, n, inner, idx, sc);
  dispatch_accumulate("index_add", out, sc, idx, [&](auto* o_ptr, const auto* s, const int64_t* ip) {
    // Jobs are (outer slice, column chunk); within a job the indices are applied in order.
    const int64_t chunk = 512, chunks = (inner + chunk - 1) / chunk;
    parallel_for(0, outer * chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t job = begin; job < end; ++job) {
        const int64_t o = job / chunks, i0 = (job % chunks) * chunk, i1 = std::min(inner, i0 + chunk);
        for (int64_t j = 0; j < count; ++j) {
          auto* dst = o_ptr + (o * n + ip[j]) * inner;
          const auto* from = s + (o * count + j) * inner;
          for (int64_t i = i0; i < i1; ++i) dst[i] += from[i];
        }
      }
    });
  });
}

// x's rows idx along dim; idx already checked and on x's device.
Tensor index_select_checked(const Tensor& x, int64_t dim, const Tensor& idx) {
  const Tensor xc = contiguous(x.detach());
  int64_t outer, inner;
  split_around(x.sizes(), dim, outer, inner);
  const int64_t n = x.sizes()[dim], count = idx.numel();
  Shape out_shape = x.sizes();
  out_shape[dim] = count;
  Tensor out = empty(out_shape, x.dtype(), x.device());
  if (x.device().is_cuda()) cuda::index_select(xc, outer, n, inner, idx, out);
  else dispatch_all(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* src = xc.data<T>();
    T* dst = out.data<T>();
    const int64_t* ip = idx.data<int64_t>();
    parallel_for(0, outer * count, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(inner, 1)),
                 [&](int64_t begin, int64_t end) {
                   for (int64_t job = begin; job < end; ++job) {
                     const int64_t o = job / count, j = job % count;
                     std::copy_n(src + (o * n + ip[j]) * inner, inner, dst + job * inner);
                   }
                 });
  });
  return record("index_select", out, {x}, [in_sizes = x.sizes(), dim, idx](const Tensor& d) {
    const Tensor dx = zeros(in_sizes, d.dtype(), d.device());
    index_add_into(dx, dim, idx, d);
    return std::vector<Tensor>{dx};
  });
}

}  // namespace

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check(index.dim() == 1, "index_select: index must be 1-D, got ", shape_str(index.sizes()));
  check(x.dim() > 0, "index_select: input must have at least one dim");
  dim = wrap_dim(dim, x.dim(), "index_select");
  return index_select_checked(x, dim, checked_index(index, x, x.sizes()[dim], dim, "index_select"));
}

Tensor index_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) {
  check_accumulate_operands("index_add", self, src);
  check(index.dim() == 1, "index_add: index must be 1-D, got ", shape_str(index.sizes()));
  dim = wrap_dim(dim, self.dim(), "index_add");
  Shape expected = self.sizes();
  expected[dim] = index.numel();
  check(src.sizes() == expected, "index_add: source ", shape_str(src.sizes()), " should be ", shape_str(expected),
        " for input ", shape_str(self.sizes()), " and ", index.numel(), " indices");
  const Tensor idx = checked_index(index, self, self.sizes()[dim], dim, "index_add");
  Tensor out = copy_as(self, self.dtype(), self.device());
  index_add_into(out, dim, idx, src);
  return record("index_add", out, {self, src}, [dim, idx](const Tensor& d) {
    return std::vector<Tensor>{d, index_select_checked(d, dim, idx)};
  });
}

namespace {

// out += src scattered along dim at idx (same shape as src), in place; idx checked, on out's device.
void scatter_add_into(const Tensor& out, int64_t dim, const Tensor& idx, const Tensor& src) {
  const Tensor sc = contiguous(src.detach());
  if (out.device().is_cuda()) return cuda::gather_scatter(out, dim, idx, sc, true);
  const FiberMap map{idx.sizes(), out.strides(), dim};
  int64_t outer = 1, inner = 1;
  if (idx.dim() > 0) split_around(idx.sizes(), dim, outer, inner);
  const int64_t len = idx.dim() > 0 ? idx.sizes()[dim] : 1;
  dispatch_accumulate("scatter_add", out, sc, idx, [&](auto* o_ptr, const auto* s, const int64_t* ip) {
    // One job per fiber along dim: all writes of a fiber stay inside the same output fiber.
    parallel_for(0, outer * inner, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(len * 8, 1)),
                 [&](int64_t begin, int64_t end) {
                   for (int64_t fiber = begin; fiber < end; ++fiber) {
                     const int64_t o = fiber / inner, i = fiber % inner;
                     for (int64_t l = 0; l < len; ++l) {
                       const int64_t linear = (o * len + l) * inner + i;
                       o_ptr[map.offset(linear, ip[linear])] += s[linear];
                     }
                   }
                 });
  });
}

// gather with idx already checked and on x's device.
Tensor gather_checked(const Tensor& x, int64_t dim, const Tensor& idx) {
  const Tensor xc = contiguous(x.detach());
  Tensor out = empty(idx.sizes(), x.dtype(), x.device());
  const FiberMap map{idx.sizes(), xc.strides(), dim};
  if (x.device().is_cuda()) cuda::gather_scatter(xc, dim, idx, out, false);
  else dispatch_all(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* src = xc.data<T>();
    T* dst = out.data<T>();
    const int64_t* ip = idx.data<int64_t>();
    parallel_for(0, out.numel(), kParallelGrain / 8, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) dst[i] = src[map.offset(i, ip[i])];
    });
  });
  return record("gather", out, {x}, [in_sizes = x.sizes(), dim, idx](const Tensor& d) {
    const Tensor dx = zeros(in_sizes, d.dtype(), d.device());
    scatter_add_into(dx, dim, idx, d);
    return std::vector<Tensor>{dx};
  });
}

}  // namespace

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  dim = wrap_dim(dim, x.dim(), "gather");
  check_gather_shapes(x, dim, index, "gather");
  return gather_checked(x, dim, checked_index(index, x, x.dim() == 0 ? 1 : x.sizes()[dim], dim, "gather"));
}

Tensor scatter_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) {
  check_accumulate_operands("scatter_add", self, src);
  dim = wrap_dim(dim, self.dim(), "scatter_add");
  check_gather_shapes(self, dim, index, "scatter_add");
  check(src.sizes() == index.sizes(), "scatter_add: source ", shape_str(src.sizes()), " must have the shape of index ",
        shape_str(index.sizes()));
  const Tensor idx = checked_index(index, self, self.dim() == 0 ? 1 : self.sizes()[dim], dim, "scatter_add");
  Tensor out = copy_as(self, self.dtype(), self.device());
  scatter_add_into(out, dim, idx, src);
  return record("scatter_add", out, {self, src}, [dim, idx](const Tensor& d) {
    return std::vector<Tensor>{d, gather_checked(d, dim, idx)};
  });
}

Tensor nonzero(const Tensor& x) {
  // The result's size depends on the data: CUDA input is read back to the host (a synchronisation
  // the shape needs anyway), and the coordinates go back to the device.
  if (x.device().is_cuda()) return to(nonzero(to(x.detach(), kCPU)), x.device());
  const Tensor xc = contiguous(x.detach());
  std::vector<int64_t> coords;
  const int64_t nd = x.dim();
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = xc.data<T>();
    for (int64_t i = 0, count = xc.numel(); i < count; ++i) {
      if (p[i] == T(0)) continue;
      int64_t rest = i;
      const size_t at = coords.size();
      coords.resize(at + static_cast<size_t>(nd));
      for (int64_t d = nd - 1; d >= 0; --d) {
        coords[at + static_cast<size_t>(d)] = rest % x.sizes()[d];
        rest /= x.sizes()[d];
      }
    }
  });
  const int64_t count = nd == 0 ? (to_vector<double>(xc)[0] != 0 ? 1 : 0) : static_cast<int64_t>(coords.size()) / nd;
  if (nd == 0) return zeros({count, 0}, kInt64);
  return from_vector<int64_t>(coords, {count, nd});
}

}  // namespace mrcnn::ops
