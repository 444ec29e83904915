// Weight gradients of the recipe model's convolutions (configs/brain_tumor_cpu.json at 256 px, batch
// 4, the 256 x 192 slices' maps, and the 64 x 56 maps of 256 x 224 batches): the framed route (ops/conv_framed.cpp; on AVX-512
// CPUs its tap-row kernel) against what runs without it (the implicit im2col, or the direct dot
// products for <= 64 input channels over >= 4096 pixels), alternated within one process, best of R
// rounds each (this machine is shared: a single run drifts 10%). Rows marked "same route" run the
// same kernel on both sides: their ratio is the noise floor.
//   bench_conv_weight_grad [rounds=7]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench/conv_cases.h"
#include "bench/timing.h"
#include "ops/conv.h"
#include "ops/conv_geometry.h"
#include "ops/fma_peak.h"
#include "ops/ops.h"
#include "tensor/parallel.h"

using namespace mrcnn;

namespace {

using Case = bench::ConvCase;
using bench::conv_geometry;

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 7;
  if (rounds < 1) {
    std::fprintf(stderr, "usage: bench_conv_weight_grad [rounds >= 1]\n");
    return 2;
  }
  const std::vector<Case> cases = {
      {"backbone layer1 3x3 64ch 64px", 4, 64, 64, 64, 64, 3},
      {"backbone layer1 3x3 64ch 64x56", 4, 64, 64, 56, 64, 3},
      {"backbone layer2 3x3 128ch 32px", 4, 128, 32, 32, 128, 3},
      {"backbone layer3 3x3 256ch 16px", 4, 256, 16, 16, 256, 3},
      {"backbone layer4 3x3 512ch 8px", 4, 512, 8, 8, 512, 3},
      {"rpn conv 3x3 128ch 16px", 4, 128, 16, 16, 128, 3},
      {"256x192: layer2 3x3 128ch 32x24", 4, 128, 32, 24, 128, 3},
      {"256x192: layer3 3x3 256ch 16x12", 4, 256, 16, 12, 256, 3},
      {"256x192: rpn conv 3x3 128ch 16x12", 4, 128, 16, 12, 128, 3},
      {"mask head 3x3 128ch 14px, 80 RoIs", 80, 128, 14, 14, 128, 3},
      {"fpn 3x3 128ch 64px", 4, 128, 64, 64, 128, 3},
      {"fpn 3x3 128ch 64x56", 4, 128, 64, 56, 128, 3},
      {"fpn inner 1x1 256->128 16px", 4, 256, 16, 16, 128, 1},
  };
  const double peak = cpu::measure_fma_peak(num_threads()).gflops;
  std::printf("weight gradients, %d threads, FMA peak %.1f GFLOP/s; best of %d rounds, framed and the other route alternated\n",
              num_threads(), peak, rounds);
  std::printf("%-36s %10s %6s %10s %6s %7s\n", "case", "other ms", "%peak", "framed ms", "%peak", "ratio");
  for (const Case& c : cases) {
    const Tensor x = randn({c.batch, c.channels, c.height, c.width});
    Tensor weight = ops::mul(randn({c.out_channels, c.channels, c.kernel, c.kernel}), 0.05).set_requires_grad(true);
    const bool framed = cpu::framed_weight_grad_applies(conv_geometry(c));
    Tensor out, dout;
    double best[2] = {1e30, 1e30};  // [other route, framed]
    for (int r = 0; r < rounds; ++r)
      for (int side = 0; side < 2; ++side) {
        cpu::allow_framed_weight_grad(side == 1);
        const double s = bench::median_seconds([&] { autograd::backward(out, dout); }, {3, 0.1, 10}, [&] {
          weight.zero_grad();
          out = ops::conv2d(x, weight, Tensor(), {1, c.kernel / 2});
          if (!dout.defined()) dout = randn(out.sizes());
        });
        best[side] = std::min(best[side], s);
      }
    cpu::allow_framed_weight_grad(true);
    const double gflop = bench::conv_gflop(c);
    std::printf("%-36s %10.3f %5.1f%% %10.3f %5.1f%% %7.3f%s\n", c.name, best[0] * 1e3, 100 * gflop / best[0] / peak,
                best[1] * 1e3, 100 * gflop / best[1] / peak, best[1] / best[0], framed ? "" : "  (same route)");
  }
  return 0;
}
