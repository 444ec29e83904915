// CUDA twins of the elementwise CPU loops: grid-stride kernels whose per-element body is the same
// functor and StridedIndex the CPU uses. Launch-time checks only; no host synchronisation.
#include <cstdint>

#include "cuda/elementwise.h"
#include "cuda/launch.cuh"
#include "cuda/packs.h"
#include "tensor/dispatch.h"
#include "tensor/strided_index.h"

namespace mrcnn::cuda {

namespace {

__device__ inline int64_t global_thread() { return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; }
__device__ inline int64_t total_threads() { return static_cast<int64_t>(blockDim.x) * gridDim.x; }

// Contiguous operands on pack alignment: one 16-byte access per operand and thread (packs.h), the
// same per-element functor as the strided kernels, so the results are identical.
template <typename T>
__global__ void fill_kernel(T* out, int64_t n, T value) {
  constexpr int W = pack_width<T>();
  using P = Pack<T, W>;
  P pack;
  for (int k = 0; k < W; ++k) pack.v[k] = value;
  packed_loop<W>(
      global_thread(), total_threads(), n, [&](int64_t p) { reinterpret_cast<P*>(out)[p] = pack; },
      [&](int64_t i) { out[i] = value; });
}

template <typename R, typename T, typename F>
__global__ void unary_packed_kernel(R* out, const T* x, int64_t n, F f) {
  constexpr int W = pack_width<R, T>();
  packed_loop<W>(
      global_thread(), total_threads(), n,
      [&](int64_t p) {
        const Pack<T, W> in = reinterpret_cast<const Pack<T, W>*>(x)[p];
        Pack<R, W> r;
#pragma unroll
        for (int k = 0; k < W; ++k) r.v[k] = f(in.v[k]);
        reinterpret_cast<Pack<R, W>*>(out)[p] = r;
      },
      [&](int64_t i) { out[i] = f(x[i]); });
}

template <typename R, typename T, typename F>
__global__ void binary_packed_kernel(R* out, const T* a, const T* b, int64_t n, F f) {
  constexpr int W = pack_width<R, T>();
  using P = Pack<T, W>;
  packed_loop<W>(
      global_thread(), total_threads(), n,
      [&](int64_t p) {
        const P x = reinterpret_cast<const P*>(a)[p], y = reinterpret_cast<const P*>(b)[p];
        Pack<R, W> r;
#pragma unroll
        for (int k = 0; k < W; ++k) r.v[k] = f(x.v[k], y.v[k]);
        reinterpret_cast<Pack<R, W>*>(out)[p] = r;
      },
      [&](int64_t i) { out[i] = f(a[i], b[i]); });
}

template <typename T>
__global__ void fill_elements_kernel(T* out, int64_t n, T value) {
  MRCNN_GRID_STRIDE(i, n) out[i] = value;
}

template <typename R, typename T, typename F>
__global__ void unary_kernel(StridedIndex<2> index, R* out, const T* x, int64_t n, F f) {
  MRCNN_GRID_STRIDE(i, n) {
    int64_t off[2];
    index.offsets(i, off);
    out[off[0]] = f(x[off[1]]);
  }
}

template <typename R, typename T, typename F>
__global__ void binary_kernel(StridedIndex<3> index, R* out, const T* a, const T* b, int64_t n, F f) {
  MRCNN_GRID_STRIDE(i, n) {
    int64_t off[3];
    index.offsets(i, off);
    out[off[0]] = f(a[off[1]], b[off[2]]);
  }
}

template <typename T>
__global__ void where_kernel(StridedIndex<4> index, T* out, const uint8_t* c, const T* a, const T* b, int64_t n) {
  MRCNN_GRID_STRIDE(i, n) {
    int64_t off[4];
    index.offsets(i, off);
    out[off[0]] = c[off[1]] ? a[off[2]] : b[off[3]];
  }
}

// Sums accumulate in double for float32 too (as the CPU does): norm statistics sum up to ~10^5
// values per group, where float accumulation loses 3-4 digits.
// Rows (inner == 1): one block per row, threads stride over it, then a fixed shared-memory tree:
// deterministic, and fast for long rows (group norm statistics).
// Each thread reads 16-byte packs when the row is pack-aligned (packs.h); the block then reduces
// with warp shuffles and one shared-memory step across warps, in a fixed order.
template <typename T>
__global__ void sum_rows_kernel(const T* x, int64_t rows, int64_t length, T* out) {
  constexpr int W = pack_width<T>();
  __shared__ double warp_sums[kThreads / 32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* p = x + row * length;
    double acc = 0;
    if (pack_aligned<T, W>(p)) {
      packed_loop<W>(
          threadIdx.x, blockDim.x, length,
          [&](int64_t q) {
            const Pack<T, W> v = reinterpret_cast<const Pack<T, W>*>(p)[q];
#pragma unroll
            for (int k = 0; k < W; ++k) acc += static_cast<double>(v.v[k]);
          },
          [&](int64_t j) { acc += static_cast<double>(p[j]); });
    } else {
      for (int64_t j = threadIdx.x; j < length; j += blockDim.x) acc += static_cast<double>(p[j]);
    }
    for (int offset = 16; offset > 0; offset /= 2) acc += __shfl_down_sync(0xffffffffu, acc, offset);
    if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = acc;
    __syncthreads();
    if (threadIdx.x < 32) {
      acc = threadIdx.x < blockDim.x / 32 ? warp_sums[threadIdx.x] : 0.0;
      for (int offset = 16; offset > 0; offset /= 2) acc += __shfl_down_sync(0xffffffffu, acc, offset);
      if (threadIdx.x == 0) out[row] = static_cast<T>(acc);
    }
    __syncthreads();
  }
}

// Columns (inner > 1): one thread per output element sums its column in order.
template <typename T>
__global__ void sum_kernel(const T* x, int64_t outer, int64_t reduced, int64_t inner, T* out) {
  MRCNN_GRID_STRIDE(j, outer * inner) {
    const int64_t o = j / inner, i = j % inner;
    double acc = 0;
    for (int64_t r = 0; r < reduced; ++r) acc += static_cast<double>(x[(o * reduced + r) * inner + i]);
    out[j] = static_cast<T>(acc);
  }
}

// A copy is the unary op "convert to D" (a functor: nvcc allows no device lambda in a generic one).
template <typename D>
struct CastTo {
  template <typename S>
  __device__ D operator()(S x) const {
    return cast_value<D>(x);
  }
};

// out = f(x) elementwise: packed when every operand is contiguous and pack-aligned, else strided.
template <typename R, typename T, typename F>
void launch_unary(const StridedIndex<2>& index, R* out, const T* x, int64_t n, F f) {
  constexpr int W = pack_width<R, T>();
  if (index.all_contiguous() && pack_aligned<R, W>(out) && pack_aligned<T, W>(x))
    unary_packed_kernel<<<blocks_for(n / W), kThreads, 0, stream()>>>(out, x, n, f);
  else
    unary_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(index, out, x, n, f);
}

// The same for out = f(a, b).
template <typename R, typename T, typename F>
void launch_binary(const StridedIndex<3>& index, R* out, const T* a, const T* b, int64_t n, F f) {
  constexpr int W = pack_width<R, T>();
  if (index.all_contiguous() && pack_aligned<R, W>(out) && pack_aligned<T, W>(a) && pack_aligned<T, W>(b))
    binary_packed_kernel<<<blocks_for(n / W), kThreads, 0, stream()>>>(out, a, b, n, f);
  else
    binary_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(index, out, a, b, n, f);
}

}  // namespace

void fill(const Tensor& out, double value) {
  const int64_t n = out.numel();
  if (n == 0) return;
  dispatch_all(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    // Allocations are pack-aligned; a view with an odd storage offset takes the element loop.
    T* p = static_cast<T*>(out.raw_data());
    if (pack_aligned<T, pack_width<T>()>(p))
      fill_kernel<T><<<blocks_for(n / pack_width<T>()), kThreads, 0, stream()>>>(p, n, cast_value<T>(value));
    else
      fill_elements_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(p, n, cast_value<T>(value));
  });
  MRCNN_CUDA_CHECK_LAUNCH();
}

void copy_strided(const Tensor& dst, const Tensor& src) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  const auto index = make_strided_index<2>(dst.sizes(), {&dst, &src}, "copy");
  dispatch_all(dst.dtype(), [&](auto dst_tag) {
    using D = decltype(dst_tag);
    dispatch_all(src.dtype(), [&](auto src_tag) {
      using S = decltype(src_tag);
      launch_unary(index, static_cast<D*>(dst.raw_data()), static_cast<const S*>(src.raw_data()), n, CastTo<D>{});
    });
  });
  MRCNN_CUDA_CHECK_LAUNCH();
}

void unary_forward(UnaryOp op, double p0, double p1, const Tensor& x, const Tensor& out) {
  const int64_t n = out.numel();
  const auto index = make_strided_index<2>(out.sizes(), {&out, &x}, "unary");
  dispatch_floating(x.dtype(), "unary", [&](auto tag) {
    using T = decltype(tag);
    with_unary_functor(op, p0, p1, [&](auto f) {
      launch_unary(index, static_cast<T*>(out.raw_data()), static_cast<const T*>(x.raw_data()), n, f);
    });
  });
  MRCNN_CUDA_CHECK_LAUNCH();
}

void binary_forward(BinaryOp op, double param, const Tensor& a, const Tensor& b, const Tensor& out) {
  const int64_t n = out.numel();
  const auto index = make_strided_index<3>(out.sizes(), {&out, &a, &b}, "binary");
  dispatch_floating(a.dtype(), "binary", [&](auto tag) {
    using T = decltype(tag);
    with_binary_functor(op, param, [&](auto f) {
      launch_binary(index, static_cast<T*>(out.raw_data()), static_cast<const T*>(a.raw_data()),
                    static_cast<const T*>(b.raw_data()), n, f);
    });
  });
  MRCNN_CUDA_CHECK_LAUNCH();
}

void compare_forward(CompareOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  const int64_t n = out.numel();
  const auto index = make_strided_index<3>(out.sizes(), {&out, &a, &b}, "compare");
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    with_compare_functor(op, [&](auto f) {
      launch_binary(index, static_cast<uint8_t*>(out.raw_data()), static_cast<const T*>(a.raw_data()),
                    static_cast<const T*>(b.raw_data()), n, f);
    });
  });
  MRCNN_CUDA_CHECK_LAUNCH();
}

void where_forward(const Tensor& condition, const Tensor& a, const Tensor& b, const Tensor& out) {
  const int64_t n = out.numel();
  const auto index = make_strided_index<4>(out.sizes(), {&out, &condition, &a, &b}, "where");
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    where_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(
        index, static_cast<T*>(out.raw_data()), static_cast<const uint8_t*>(condition.raw_data()),
        static_cast<const T*>(a.raw_data()), static_cast<const T*>(b.raw_data()), n);
  });
  MRCNN_CUDA_CHECK_LAUNCH();
}

void sum_reduce(const Tensor& x, int64_t outer, int64_t reduced, int64_t inner, const Tensor& out) {
  dispatch_floating(x.dtype(), "sum", [&](auto tag) {
    using T = decltype(tag);
    const T* in = static_cast<const T*>(x.raw_data());
    T* o = static_cast<T*>(out.raw_data());
    // Long rows with few outputs: a block per row; otherwise a thread per output.
    if (inner == 1 && reduced >= 1024 && outer < 65536 * 4) {
      const int grid = static_cast<int>(outer < 65535 ? outer : 65535);
      sum_rows_kernel<T><<<grid > 0 ? grid : 1, kThreads, 0, stream()>>>(in, outer, reduced, o);
    } else {
      sum_kernel<T><<<blocks_for(outer * inner), kThreads, 0, stream()>>>(in, outer, reduced, inner, o);
    }
  });
  MRCNN_CUDA_CHECK_LAUNCH();
}

}  // namespace mrcnn::cuda
