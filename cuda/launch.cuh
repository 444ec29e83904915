// Launch helpers shared by the .cu files: block size, grid size for grid-stride loops, and a generic
// "one thread per index" kernel for functors. CUDA-only (included by .cu files).
#pragma once
#include <cstdint>

#include "cuda/check.h"

namespace mrcnn::cuda {

constexpr int kThreads = 256;

// Grid-stride loops cover any n; the grid is capped so huge tensors reuse threads instead of
// launching millions of blocks.
inline int blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 * 8 ? (blocks > 0 ? blocks : 1) : 65535 * 8);
}

#define MRCNN_GRID_STRIDE(i, n)                                                                       \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n);               \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

template <typename F>
__global__ void for_each_index_kernel(int64_t n, F f) {
  MRCNN_GRID_STRIDE(i, n) f(i);
}

// Runs f(i) for i in [0, n) on the stream; f is a __device__-callable functor.
template <typename F>
void for_each_index(int64_t n, F f) {
  if (n <= 0) return;
  for_each_index_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(n, f);
  MRCNN_CUDA_CHECK_LAUNCH();
}

// atomicAdd for float and double (sm_60+ has both natively).
template <typename T>
__device__ inline void atomic_add(T* address, T value) {
  atomicAdd(address, value);
}

}  // namespace mrcnn::cuda
