// Long sums in double that run at the adder's throughput rather than its latency, in an order fixed
// by the length alone (so the same bits for any thread count).
#pragma once
#include <cstdint>

namespace mrcnn {

// sums[k] += the sum over i in [0, n) of terms(i)[k] for K quantities at once, each in double and
// in kLanes interleaved partial sums (element i goes to lane i % kLanes), the lanes added pairwise
// at the end. The order is fixed by n alone (the same bits for any thread count), but the adds form
// kLanes independent chains instead of one: a single running double sum waits out the adder's
// latency (4 cycles) on every element, which made the norms' sums, not memory, their bound.
template <int K, typename Terms>
inline void add_lane_sums(int64_t n, const Terms& terms, double (&sums)[K]) {
  constexpr int kLanes = 8;
  double lane[K][kLanes] = {};
  double t[K];
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      terms(i + j, t);
      for (int k = 0; k < K; ++k) lane[k][j] += t[k];
    }
  for (int j = 0; i < n; ++i, ++j) {
    terms(i, t);
    for (int k = 0; k < K; ++k) lane[k][j] += t[k];
  }
  for (int k = 0; k < K; ++k) {
    const double* v = lane[k];
    sums[k] += ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
  }
}

}  // namespace mrcnn
