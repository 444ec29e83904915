// The float32 convolutions whose forward or weight gradient runs the packed GEMM with implicit
// im2col (the direct and framed kernels do not take them): the recipe model's narrow maps (layer4
// and FPN at 256 x 192, batch 4), strided 3x3s, 1x1 heads and laterals merged over the batch, the
// mask predictor over 100 RoIs. Best of R rounds of a median; the route each pass took is printed,
// so a case that moved to another kernel shows. Two builds are compared by running each in turn
// (bench/results has the alternation used), since a kernel change cannot be switched off in one
// binary.
//   bench_conv_implicit_gemm [rounds=5]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/conv_cases.h"
#include "bench/timing.h"
#include "ops/conv_profile.h"
#include "ops/fma_peak.h"
#include "ops/ops.h"
#include "tensor/parallel.h"

using namespace mrcnn;

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  if (rounds < 1) {
    std::fprintf(stderr, "usage: bench_conv_implicit_gemm [rounds >= 1]\n");
    return 2;
  }
  const std::vector<bench::ConvCase> cases = {
      {"layer4 3x3 512ch 8x6", 4, 512, 8, 6, 512, 3, 1},
      {"layer4.0 3x3 s2 256->512 to 8x6", 4, 256, 16, 12, 512, 3, 2},
      {"layer3.0 3x3 s2 128->256 to 16x12", 4, 128, 32, 24, 256, 3, 2},
      {"layer2.0 3x3 s2 64->128 to 32x24", 4, 64, 64, 48, 128, 3, 2},
      {"fpn/rpn 3x3 128ch 8x6", 4, 128, 8, 6, 128, 3, 1},
      {"fpn 3x3 128ch 4x3", 4, 128, 4, 3, 128, 3, 1},
      {"jitter 176: layer3 3x3 256ch 15x11", 4, 256, 15, 11, 256, 3, 1},
      {"1x1 s2 64->128 64x48 (downsample)", 4, 64, 64, 48, 128, 1, 2},
      {"lateral 1x1 512->128 8x6", 4, 512, 8, 6, 128, 1, 1},
      {"lateral 1x1 256->128 16x12", 4, 256, 16, 12, 128, 1, 1},
      {"lateral 1x1 128->128 32x24", 4, 128, 32, 24, 128, 1, 1},
      {"rpn cls 1x1 128->3 32x24", 4, 128, 32, 24, 3, 1, 1},
      {"rpn bbox 1x1 128->12 16x12", 4, 128, 16, 12, 12, 1, 1},
      {"mask predictor 1x1 128->2 28x28, 100 RoIs", 100, 128, 28, 28, 2, 1, 1},
  };
  const double peak = cpu::measure_fma_peak(num_threads()).gflops;
  std::printf("conv2d, %d threads, FMA peak %.1f GFLOP/s; best of %d rounds; fwd = forward, dw = weight gradient alone\n",
              num_threads(), peak, rounds);
  std::printf("%-42s %-4s %-28s %9s %8s %6s\n", "case", "pass", "route", "ms", "GFLOP/s", "%peak");
  for (const bench::ConvCase& c : cases) {
    Tensor weight = ops::mul(randn({c.out_channels, c.channels, c.kernel, c.kernel}), 0.05).set_requires_grad(true);
    const Tensor x = randn({c.batch, c.channels, c.height, c.width});
    Tensor out, dout;
    const auto forward = [&] { out = ops::conv2d(x, weight, Tensor(), {c.stride, c.kernel / 2}); };
    for (const bool weight_gradient : {false, true}) {
      double best = 1e30;
      for (int r = 0; r < rounds; ++r)
        best = std::min(best, weight_gradient ? bench::median_seconds([&] { autograd::backward(out, dout); }, {5, 0.1, 20}, [&] {
          weight.zero_grad();
          forward();
          if (!dout.defined()) dout = randn(out.sizes());
        })
                                              : bench::median_seconds(forward, {5, 0.1, 20}));
      ops::reset_conv_profile();
      ops::set_conv_profiling(true);
      forward();
      if (weight_gradient) autograd::backward(out, dout);
      ops::set_conv_profiling(false);
      std::string route = "?";
      for (const auto& record : ops::conv_profile())
        if (record.pass == (weight_gradient ? "weight grad" : "forward")) route = record.route;
      const double gflops = bench::conv_gflop(c) / best;
      std::printf("%-42s %-4s %-28s %9.4f %8.1f %5.1f%%\n", c.name, weight_gradient ? "dw" : "fwd", route.c_str(), best * 1e3,
                  gflops, 100 * gflops / peak);
    }
  }
  return 0;
}
