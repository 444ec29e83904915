// GEMM benchmark: GFLOP/s of cpu::gemm (Eigen, our panel split) for squares 256..2048 and for the
// GEMM shapes ResNet convolutions produce (im2col: [Cout, Cin*k*k] x [Cin*k*k, H*W]), with 1 and 2
// threads, and the fraction of this CPU's FMA peak: 2 FMA units x 8 floats x 2 flops x clock per core.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "bench/timing.h"
#include "ops/fma_peak.h"
#include "ops/gemm.h"
#include "tensor/parallel.h"
#include "tensor/random.h"

using namespace mrcnn;

namespace {

double nominal_ghz() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("cpu MHz", 0) == 0) return std::stod(line.substr(line.find(':') + 1)) / 1000.0;
  return 0;
}

// The clock the core actually runs at (boost included): a chain of dependent integer adds retires
// one per cycle, so adds per second is cycles per second. x86-64 only, like the AVX2 build itself.
double measured_ghz() {
  const int64_t adds = 400'000'000;
  double best = 0;
  for (int trial = 0; trial < 3; ++trial) {
    uint64_t x = 0;
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < adds / 8; ++i) {
      asm volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                   "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, static_cast<double>(adds) / s / 1e9);
  }
  return best;
}

}  // namespace

int main() {
  // MRCNN_CPU_GHZ overrides the measured clock (e.g. to report against the nominal one).
  const double nominal = nominal_ghz(), measured = measured_ghz();
  const double ghz = std::getenv("MRCNN_CPU_GHZ") ? std::stod(std::getenv("MRCNN_CPU_GHZ")) : measured;
  const double peak_per_core = 2 * 8 * 2 * ghz;  // GFLOP/s
  std::printf("cpu clock: nominal %.3f GHz (/proc/cpuinfo), measured %.3f GHz (dependent-add chain)\n", nominal, measured);
  std::printf("FMA peak at %.3f GHz: %.1f GFLOP/s per core (2 FMA x 8 floats x 2 flops x clock)\n", ghz, peak_per_core);
  // The same peak measured directly (what `mrcnn bench` divides by): agreeing with the line above
  // confirms both the clock and the count of FMA units.
  const cpu::FmaPeak fma = cpu::measure_fma_peak(1);
  std::printf("FMA throughput measured on one thread: %.1f GFLOP/s (%d-float vectors), %.1f flops per measured cycle\n",
              fma.gflops, fma.vector_floats, measured > 0 ? fma.gflops / measured : 0.0);
  struct Case {
    const char* name;
    int64_t m, n, k;
  };
  const std::vector<Case> cases = {
      {"square 256", 256, 256, 256},
      {"square 512", 512, 512, 512},
      {"square 1024", 1024, 1024, 1024},
      {"square 2048", 2048, 2048, 2048},
      {"R50 stem 7x7 s2 @512 (64x147x65536)", 64, 65536, 147},
      {"R50 layer1 3x3 @512 (64 x 576 x 16384)", 64, 16384, 576},
      {"R50 layer1 1x1 @512 (256 x 64 x 16384)", 256, 16384, 64},
      {"R50 layer3 3x3 @512 (256 x 2304 x 1024)", 256, 1024, 2304},
      {"R50 layer4 1x1 @512 (2048 x 512 x 256)", 2048, 256, 512},
      {"FPN 3x3 @256 (256 x 2304 x 4096)", 256, 4096, 2304},
  };
  std::printf("GFLOP/s (%% of peak) per kernel and thread count; packed = our AVX2/FMA kernel, eigen = Eigen 3.4\n");
  std::printf("%-42s %15s %15s %15s %15s\n", "shape (M x K x N)", "packed 1 thr", "packed 2 thr", "eigen 1 thr",
              "eigen 2 thr");
  const int saved = num_threads();
  const bool have_packed = cpu::cpu_has_avx2_fma();
  for (const Case& c : cases) {
    Generator g(1);
    const Tensor a = randn({c.m, c.k}, kFloat32, kCPU, &g), b = randn({c.k, c.n}, kFloat32, kCPU, &g);
    Tensor out = empty({c.m, c.n});
    const double flops = 2.0 * static_cast<double>(c.m) * static_cast<double>(c.n) * static_cast<double>(c.k);
    const int reps = flops > 4e9 ? 3 : 7;
    std::printf("%-42s", c.name);
    for (const cpu::GemmKernel kernel : {cpu::GemmKernel::Packed, cpu::GemmKernel::Eigen}) {
      cpu::set_gemm_kernel(kernel);
      for (int threads : {1, 2}) {
        if (kernel == cpu::GemmKernel::Packed && !have_packed) {
          std::printf(" %15s", "n/a (no AVX2)");
          continue;
        }
        set_num_threads(threads);
        const double t = bench::median_seconds(
            [&] {
              cpu::gemm<float>(false, false, c.m, c.n, c.k, a.data<float>(), c.k, b.data<float>(), c.n,
                               out.data<float>(), c.n);
            },
            {reps, 0.0, reps});
        const double gf = flops / t / 1e9;
        std::printf(" %7.1f (%4.1f%%)", gf, 100 * gf / (threads * peak_per_core));
      }
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  cpu::set_gemm_kernel(cpu::GemmKernel::Packed);
  set_num_threads(saved);
  return 0;
}
