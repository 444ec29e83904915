// Per-lane bodies of softmax and max/min along one dim, shared by the CPU loops (ops/softmax.cpp,
// ops/reduce.cpp) and the CUDA kernels (cuda/softmax.cu, cuda/reduce.cu): the GPU runs the very
// arithmetic the CPU tests check. A lane is the n elements base, base + inner, ... of a contiguous
// [outer, n, inner] view.
#pragma once
#include <cstdint>

#include "cuda/host_device.h"
#include "ops/elementwise_functors.h"

namespace mrcnn {

// softmax (or log_softmax) of one lane: max-subtracted, exponentiated, normalised.
template <typename T>
MRCNN_HD inline void softmax_lane(const T* in, T* out, int64_t base, int64_t n, int64_t inner, bool log_output) {
  T peak = in[base];
  for (int64_t j = 1; j < n; ++j) peak = peak < in[base + j * inner] ? in[base + j * inner] : peak;  // std::max's rule
  T total = 0;
  for (int64_t j = 0; j < n; ++j) {
    const T e = m_exp(in[base + j * inner] - peak);
    total += e;
    if (!log_output) out[base + j * inner] = e;
  }
  const T log_total = m_log(total);
  for (int64_t j = 0; j < n; ++j) {
    if (log_output) out[base + j * inner] = in[base + j * inner] - peak - log_total;
    else out[base + j * inner] /= total;
  }
}

// The first maximum (largest) or minimum of lane p[0], p[inner], ...; NaN wins, as in PyTorch.
template <typename T>
MRCNN_HD inline void extreme_lane(const T* p, int64_t reduced, int64_t inner, bool largest, T* value, int64_t* index) {
  T best = p[0];
  int64_t best_r = 0;
  for (int64_t r = 1; r < reduced && best == best; ++r) {
    const T v = p[r * inner];
    if (v != v || (largest ? v > best : v < best)) {
      best = v;
      best_r = r;
    }
  }
  *value = best;
  *index = best_r;
}

}  // namespace mrcnn
