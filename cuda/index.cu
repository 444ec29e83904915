// Index kernels: reads one thread per output element; accumulations with atomic adds.
#include "cuda/index.h"
#include "cuda/launch.cuh"
#include "tensor/dispatch.h"

namespace mrcnn::cuda {

namespace {
constexpr int kMaxDims = 8;

struct Fibers {
  int64_t dims, dim;
  int64_t shape[kMaxDims], strides[kMaxDims];
  __device__ int64_t offset(int64_t linear, int64_t at) const {
    int64_t off = 0;
    for (int64_t d = dims - 1; d >= 0; --d) {
      const int64_t c = linear % shape[d];
      linear /= shape[d];
      off += (d == dim ? at : c) * strides[d];
    }
    return off;
  }
};

// Kernel bodies live in function templates: device lambdas may not sit inside dispatch's generic lambdas.
template <typename T>
void select(const T* src, const int64_t* ip, T* dst, int64_t outer, int64_t n, int64_t count, int64_t inner) {
  for_each_index(outer * count * inner, [=] __device__(int64_t e) {
    const int64_t i = e % inner, j = (e / inner) % count, o = e / (inner * count);
    dst[e] = src[(o * n + ip[j]) * inner + i];
  });
}

template <typename T>
void add_rows(const T* s, const int64_t* ip, T* dst, int64_t outer, int64_t n, int64_t count, int64_t inner) {
  for_each_index(outer * count * inner, [=] __device__(int64_t e) {
    const int64_t i = e % inner, j = (e / inner) % count, o = e / (inner * count);
    atomic_add(dst + (o * n + ip[j]) * inner + i, s[e]);
  });
}

template <typename T>
void gather_fibers(const T* src, const int64_t* ip, T* dst, Fibers f, int64_t count) {
  for_each_index(count, [=] __device__(int64_t e) { dst[e] = src[f.offset(e, ip[e])]; });
}

template <typename T>
void scatter_fibers(T* target, const int64_t* ip, const T* s, Fibers f, int64_t count) {
  for_each_index(count, [=] __device__(int64_t e) { atomic_add(target + f.offset(e, ip[e]), s[e]); });
}
}  // namespace

void index_select(const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& index, const Tensor& out) {
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    select<T>(static_cast<const T*>(x.raw_data()), static_cast<const int64_t*>(index.raw_data()), static_cast<T*>(out.raw_data()),
              outer, n, index.numel(), inner);
  });
}

void index_add(const Tensor& out, int64_t outer, int64_t n, int64_t inner, const Tensor& index, const Tensor& src) {
  dispatch_floating(out.dtype(), "index_add", [&](auto tag) {
    using T = decltype(tag);
    add_rows<T>(static_cast<const T*>(src.raw_data()), static_cast<const int64_t*>(index.raw_data()),
                static_cast<T*>(out.raw_data()), outer, n, index.numel(), inner);
  });
}

void gather_scatter(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out, bool add) {
  check(index.dim() <= kMaxDims, add ? "scatter_add" : "gather", ": CUDA supports up to ", kMaxDims, " dims, got ", index.dim());
  Fibers f{index.dim(), dim, {}, {}};
  for (int64_t d = 0; d < index.dim(); ++d) f.shape[d] = index.sizes()[d], f.strides[d] = x.strides()[d];
  const int64_t* ip = static_cast<const int64_t*>(index.raw_data());
  if (add) {
    dispatch_floating(x.dtype(), "scatter_add", [&](auto tag) {
      using T = decltype(tag);
      scatter_fibers<T>(static_cast<T*>(x.raw_data()), ip, static_cast<const T*>(out.raw_data()), f, index.numel());
    });
    return;
  }
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    gather_fibers<T>(static_cast<const T*>(x.raw_data()), ip, static_cast<T*>(out.raw_data()), f, index.numel());
  });
}

}  // namespace mrcnn::cuda
