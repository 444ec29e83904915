#include "ops/fma_peak.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "ops/gemm.h"

namespace mrcnn::cpu {

namespace {

// 12 chains: two FMA units with a 4-cycle latency need 8 in flight; 12 leave room for a 5-6 cycle
// latency and still fit in 16 vector registers with the two constants.
constexpr int kChains = 12;

// acc = acc * a + b converges to b / (1 - a) = 0.1: no overflow, no denormals, nothing the compiler
// may fold. The returned sum keeps the chains alive. Not instrumented by the sanitizers: AddressSanitizer
// puts the chain array on the stack between red zones, and the peak would be a store-forwarding one.
#define MRCNN_UNINSTRUMENTED __attribute__((no_sanitize("address", "undefined")))
MRCNN_UNINSTRUMENTED __attribute__((target("avx2,fma"))) float fma_chains_avx2(int64_t iterations) {
  __m256 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(0.001f * static_cast<float>(c));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; ++i)
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  __m256 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm256_add_ps(sum, acc[c]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  return lanes[0] + lanes[7];
}

MRCNN_UNINSTRUMENTED __attribute__((target("avx512f"))) float fma_chains_avx512(int64_t iterations) {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(0.001f * static_cast<float>(c));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; ++i)
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  __m512 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
  alignas(64) float lanes[16];  // (_mm512_reduce_add_ps trips GCC 12's -Wuninitialized)
  _mm512_store_ps(lanes, sum);
  return lanes[0] + lanes[15];
}

using Chains = float (*)(int64_t);

// Seconds for `threads` threads to run `iterations` each; the results go to `sink` so the work stays.
// `ran` gets the team OpenMP actually gave (it may give fewer threads than asked).
double run_seconds(Chains chains, int threads, int64_t iterations, std::vector<float>& sink, int& ran) {
  const auto start = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads)
  {
    sink[static_cast<size_t>(omp_get_thread_num())] += chains(iterations);
#pragma omp single nowait
    ran = omp_get_num_threads();
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// GFLOP/s of `threads` threads; `team` gets how many OpenMP actually ran.
double measure_gflops(Chains chains, int width, int threads, double seconds, int& team) {
  std::vector<float> sink(static_cast<size_t>(threads), 0.0f);
  // Calibrate on one thread, then size the runs to about `seconds`.
  int64_t iterations = 1 << 16;
  int ran = 1;
  double t = run_seconds(chains, 1, iterations, sink, ran);
  while (t < 0.005) {
    iterations *= 4;
    t = run_seconds(chains, 1, iterations, sink, ran);
  }
  iterations = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(iterations) * seconds / t));
  const double flops_per_thread = 2.0 * kChains * width * static_cast<double>(iterations);
  double best = 0;
  for (int run = 0; run < 3; ++run) {
    const double s = run_seconds(chains, threads, iterations, sink, ran);
    best = std::max(best, flops_per_thread * ran / s / 1e9);
  }
  team = ran;
  volatile float keep = 0;
  for (const float v : sink) keep = keep + v;
  return best;
}

}  // namespace

FmaPeak measure_fma_peak(int threads, double seconds) {
  FmaPeak peak;
  threads = std::max(threads, 1);
  peak.threads = threads;
  if (!cpu_has_avx2_fma()) return peak;
  peak.gflops = measure_gflops(fma_chains_avx2, 8, threads, seconds, peak.threads);
  peak.vector_floats = 8;
  if (use_avx512()) {
    int wide_team = 0;
    const double wide = measure_gflops(fma_chains_avx512, 16, threads, seconds, wide_team);
    // Zen 4 runs a 512-bit FMA as two 256-bit halves: the same peak, so the width is named 16 only
    // where it is clearly faster; either measurement is a true throughput, so the higher one counts.
    if (wide > 1.1 * peak.gflops) peak.vector_floats = 16;
    peak.gflops = std::max(peak.gflops, wide);
  }
  return peak;
}

}  // namespace mrcnn::cpu
