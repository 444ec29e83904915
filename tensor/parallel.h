// OpenMP loops over independent index ranges. Work is split into chunks whose boundaries depend
// only on the range and grain, never on the thread count, so any per-chunk accumulation gives the
// same bits with 1 or 16 threads.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace mrcnn {

// Elements below which a loop runs on the calling thread: thread start-up costs more than it saves.
constexpr int64_t kParallelGrain = 32768;

// Calls body(chunk_begin, chunk_end) for chunks of [begin, end) of at most `grain` elements.
template <typename Body>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const Body& body) {
  const int64_t n = end - begin;
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunks = (n + grain - 1) / grain;
  if (chunks == 1 || omp_in_parallel()) {
    for (int64_t c = 0; c < chunks; ++c) body(begin + c * grain, std::min(end, begin + (c + 1) * grain));
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) body(begin + c * grain, std::min(end, begin + (c + 1) * grain));
}

inline int num_threads() { return omp_get_max_threads(); }
inline void set_num_threads(int n) { omp_set_num_threads(std::max(n, 1)); }

}  // namespace mrcnn
