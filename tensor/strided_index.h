// Maps the linear index of an output element to the element offsets of N operands that may be
// strided or broadcast (stride 0). A plain struct copied by value into CUDA kernels; the same
// offsets() runs in CPU loops, so the indexing is tested without a GPU.
#pragma once
#include <array>
#include <cstdint>

#include "cuda/host_device.h"
#include "cuda/index_divider.h"
#include "tensor/tensor.h"

namespace mrcnn {

constexpr int kMaxDims = 12;

template <int N>
struct StridedIndex {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};
  // Below 2^31 elements each dim's size is also a multiply-high divider (cuda/index_divider.h): GPU
  // kernels then split the linear index without 64-bit divisions, which a GPU emulates.
  bool use_dividers = false;
  cuda::IndexDivider size_dividers[kMaxDims];

  MRCNN_HD void offsets(int64_t linear, int64_t (&out)[N]) const {
    for (int k = 0; k < N; ++k) out[k] = 0;
    if (use_dividers) {
      uint32_t rest = static_cast<uint32_t>(linear);
      for (int d = ndim - 1; d >= 0; --d) {
        const uint32_t next = size_dividers[d].quotient(rest);
        const int64_t i = rest - next * size_dividers[d].divisor;
        rest = next;
        for (int k = 0; k < N; ++k) out[k] += i * strides[k][d];
      }
      return;
    }
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t i = linear % sizes[d];
      linear /= sizes[d];
      for (int k = 0; k < N; ++k) out[k] += i * strides[k][d];
    }
  }
  // Host loops: body(off) for the elements begin .. end - 1 in order, the offsets carried from one
  // element to the next (one division per dim for the first element, then additions), where
  // offsets() divides per dim for every element.
  template <typename Body>
  void for_each_offsets(int64_t begin, int64_t end, const Body& body) const {
    int64_t off[N] = {}, idx[kMaxDims] = {};
    if (begin >= end) return;
    if (ndim == 0) {
      for (int64_t i = begin; i < end; ++i) body(off);
      return;
    }
    for (int d = 0; d < ndim; ++d) {
      idx[d] = begin / inner_count(d) % sizes[d];
      for (int k = 0; k < N; ++k) off[k] += idx[d] * strides[k][d];
    }
    const int last = ndim - 1;
    for (int64_t i = begin; i < end;) {
      const int64_t run = sizes[last] - idx[last] < end - i ? sizes[last] - idx[last] : end - i;
      for (int64_t r = 0; r < run; ++r) {
        body(off);
        for (int k = 0; k < N; ++k) off[k] += strides[k][last];
      }
      i += run;
      idx[last] += run;
      if (i >= end) break;
      // The last dim wrapped: carry into the dims before it.
      for (int k = 0; k < N; ++k) off[k] -= sizes[last] * strides[k][last];
      idx[last] = 0;
      for (int d = last - 1; d >= 0; --d) {
        ++idx[d];
        for (int k = 0; k < N; ++k) off[k] += strides[k][d];
        if (idx[d] < sizes[d]) break;
        for (int k = 0; k < N; ++k) off[k] -= sizes[d] * strides[k][d];
        idx[d] = 0;
      }
    }
  }
  // Elements per step of dim d: the product of the sizes after it.
  int64_t inner_count(int d) const {
    int64_t count = 1;
    for (int e = d + 1; e < ndim; ++e) count *= sizes[e];
    return count;
  }
  // True when every operand walks memory with unit stride: the loop needs no index arithmetic.
  bool all_contiguous() const {
    if (ndim > 1) return false;
    for (int k = 0; k < N; ++k)
      if (ndim == 1 && strides[k][0] != 1) return false;
    return true;
  }
};

// Operands must broadcast to `shape`. Size-1 dims are dropped and dims that are contiguous for every
// operand are merged, so most loops end up one- or two-dimensional.
template <int N>
StridedIndex<N> make_strided_index(const Shape& shape, const std::array<const Tensor*, N>& operands,
                                   const char* op);

extern template StridedIndex<1> make_strided_index<1>(const Shape&, const std::array<const Tensor*, 1>&, const char*);
extern template StridedIndex<2> make_strided_index<2>(const Shape&, const std::array<const Tensor*, 2>&, const char*);
extern template StridedIndex<3> make_strided_index<3>(const Shape&, const std::array<const Tensor*, 3>&, const char*);
extern template StridedIndex<4> make_strided_index<4>(const Shape&, const std::array<const Tensor*, 4>&, const char*);

// Converts between element types; bool is stored as uint8_t 0/1.
template <typename To, typename From>
MRCNN_HD inline To cast_value(From v) {
  if constexpr (std::is_same_v<To, uint8_t>) return v != From(0) ? 1 : 0;
  else return static_cast<To>(v);
}

}  // namespace mrcnn
