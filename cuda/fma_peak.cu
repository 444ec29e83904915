// The GPU's measured float32 FMA throughput (cuda/context.h).
#include <algorithm>

#include "cuda/check.h"
#include "cuda/context.h"

namespace mrcnn::cuda {

namespace {

constexpr int kChains = 8;           // per thread: with many warps per SM, enough to hide FMA latency
constexpr int kThreadsPerBlock = 256;
constexpr int kBlocksPerSm = 8;      // 2,048 threads: a full SM on every architecture since Volta

// acc = acc * a + b converges to b / (1 - a) = 0.1: no overflow, no denormals. Each thread writes
// its sum, so the compiler keeps every chain.
__global__ void fma_chains(int64_t iterations, float* sink) {
  float acc[kChains];
#pragma unroll
  for (int c = 0; c < kChains; ++c) acc[c] = 0.001f * static_cast<float>(threadIdx.x % 7 + c);
  const float a = 0.999999f, b = 1e-7f;
  for (int64_t i = 0; i < iterations; ++i) {
#pragma unroll
    for (int c = 0; c < kChains; ++c) acc[c] = fmaf(acc[c], a, b);
  }
  float sum = 0;
#pragma unroll
  for (int c = 0; c < kChains; ++c) sum += acc[c];
  sink[blockIdx.x * blockDim.x + threadIdx.x] = sum;
}

}  // namespace

GpuFmaPeak measure_fma_peak(double seconds) {
  int device = 0;
  MRCNN_CUDA_CHECK(cudaGetDevice(&device));
  GpuFmaPeak peak;
  int clock_khz = 0;
  MRCNN_CUDA_CHECK(cudaDeviceGetAttribute(&peak.multiprocessors, cudaDevAttrMultiProcessorCount, device));
  MRCNN_CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device));
  peak.max_clock_ghz = clock_khz * 1e-6;
  const int blocks = peak.multiprocessors * kBlocksPerSm;
  const int64_t threads = static_cast<int64_t>(blocks) * kThreadsPerBlock;
  float* sink = static_cast<float*>(device_malloc(static_cast<size_t>(threads) * sizeof(float)));
  cudaEvent_t start = nullptr, stop = nullptr;
  MRCNN_CUDA_CHECK(cudaEventCreate(&start));
  MRCNN_CUDA_CHECK(cudaEventCreate(&stop));
  const auto run_seconds = [&](int64_t iterations) {
    MRCNN_CUDA_CHECK(cudaEventRecord(start, stream()));
    fma_chains<<<blocks, kThreadsPerBlock, 0, stream()>>>(iterations, sink);
    MRCNN_CUDA_CHECK_LAUNCH();
    MRCNN_CUDA_CHECK(cudaEventRecord(stop, stream()));
    MRCNN_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    MRCNN_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    return static_cast<double>(ms) * 1e-3;
  };
  // Calibrate (the first launch also loads the kernel), then size the runs to about `seconds`.
  int64_t iterations = 1 << 12;
  double t = run_seconds(iterations);
  while (t < 0.002) {
    iterations *= 4;
    t = run_seconds(iterations);
  }
  iterations = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(iterations) * seconds / t));
  const double flops = 2.0 * kChains * static_cast<double>(iterations) * static_cast<double>(threads);
  for (int run = 0; run < 3; ++run) peak.gflops = std::max(peak.gflops, flops / run_seconds(iterations) * 1e-9);
  MRCNN_CUDA_CHECK(cudaEventDestroy(start));
  MRCNN_CUDA_CHECK(cudaEventDestroy(stop));
  device_free(sink);
  return peak;
}

}  // namespace mrcnn::cuda
