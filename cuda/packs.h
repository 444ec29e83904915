// Vector-width access for contiguous elementwise kernels and row reductions: each thread moves one
// 16-byte pack per operand (float4, double2, ...) instead of one element, the widest load a GPU
// issues per instruction, and the contiguous case needs no index arithmetic. Which elements each
// thread handles is decided by packed_loop, a host/device function, so CPU tests check that every
// element is visited exactly once on machines without a GPU.
#pragma once
#include <cstddef>
#include <cstdint>

#include "cuda/host_device.h"

namespace mrcnn::cuda {

// Elements per pack: one 16-byte access for the widest of the operand types.
template <typename... T>
MRCNN_HD constexpr int pack_width() {
  size_t widest = 0;
  ((widest = sizeof(T) > widest ? sizeof(T) : widest), ...);
  return static_cast<int>(16 / widest);
}

template <typename T, int W>
struct alignas(sizeof(T) * W) Pack {
  T v[W];
};

// A pointer can be read as packs when it sits on the pack's alignment (views with a storage offset
// may not; callers fall back to the element loop then).
template <typename T, int W>
MRCNN_HD inline bool pack_aligned(const T* p) {
  return reinterpret_cast<uintptr_t>(p) % alignof(Pack<T, W>) == 0;
}

// Thread `thread` of `threads` handles packs thread, thread + threads, ... of the n / W whole packs
// (pack_body(p) covers elements p*W .. p*W + W-1), then at most one of the n % W tail elements
// (element_body(i)). Needs threads >= W - 1 for the tail, which every launch has.
template <int W, typename PackBody, typename ElementBody>
MRCNN_HD inline void packed_loop(int64_t thread, int64_t threads, int64_t n, PackBody&& pack_body,
                                 ElementBody&& element_body) {
  const int64_t packs = n / W;
  for (int64_t p = thread; p < packs; p += threads) pack_body(p);
  const int64_t tail = packs * W + thread;
  if (tail < n) element_body(tail);
}

}  // namespace mrcnn::cuda
