// The direct convolution's flat tiles (ops/conv_direct.cpp) against what runs without them (row
// tiles with idle lanes, or the implicit-im2col GEMM), on the recipe model's convolutions at the
// training set's image sizes (256 x 192: maps 48, 24, 12 and 6 pixels wide; 256 x 224: 56, 28, 14
// and 7; 256 x 256), the stem, one scale-jittered size and the mask head, batch 4. Forward, and the
// input gradient alone (weights not requiring grad), each alternated within one process, best of R
// rounds (this machine is shared: a single run drifts 10%). "flat" (the default) compares with flat
// tiles allowed and not; "gemm" with the direct kernel allowed and not at all (the implicit-im2col
// GEMM and its input-gradient routes): where the direct kernel should take a geometry; "rules" with
// the measured rules that give some convolutions to the implicit GEMM on CPUs without AVX-512 set
// aside (the direct kernel wherever it applies) and followed (cpu::prefer_direct_conv): what those
// rules gain on this CPU (on AVX-512 CPUs both sides run the same routes). A third argument keeps
// only the cases whose name contains it. "ratio" is with / without of the best times, "median" the
// median of the rounds' own ratios (each round times both sides back to back).
//   bench_conv_flat_tiles [rounds=5] [flat|gemm|rules] [filter]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "bench/conv_cases.h"
#include "bench/timing.h"
#include "ops/conv.h"
#include "ops/conv_geometry.h"
#include "ops/conv_profile.h"
#include "ops/fma_peak.h"
#include "ops/ops.h"
#include "tensor/parallel.h"

using namespace mrcnn;

namespace {

using Case = bench::ConvCase;

// The kernel one call of `run` takes for `pass`, as the conv dispatcher names it (ops/conv_profile.h),
// shortened to fit the table.
std::string noted_route(const std::function<void()>& run, const std::string& pass) {
  ops::reset_conv_profile();
  ops::set_conv_profiling(true);
  run();
  ops::set_conv_profiling(false);
  for (const auto& record : ops::conv_profile()) {
    if (record.pass != pass) continue;
    std::string route = record.route;
    for (const std::string prefix : {"conv of dout with the flipped kernel > ", "direct "})
      if (route.rfind(prefix, 0) == 0) route = route.substr(prefix.size());
    if (route == "gemm over the batch + col2im") route = "gemm + col2im";
    if (route == "gemm, implicit im2col") route = "gemm";
    return route;
  }
  return "?";
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  const std::string mode = argc > 2 ? argv[2] : "flat";
  const std::string filter = argc > 3 ? argv[3] : "";
  if (rounds < 1 || (mode != "flat" && mode != "gemm" && mode != "rules") || argc > 4) {
    std::fprintf(stderr, "usage: bench_conv_flat_tiles [rounds >= 1] [flat|gemm|rules] [filter]\n");
    return 2;
  }
  const std::vector<Case> cases = {
      {"stem 7x7 s2 1->64 to 128x96", 4, 1, 256, 192, 64, 7, 2},
      {"layer1 3x3 64ch 64x48", 4, 64, 64, 48, 64, 3, 1},
      {"layer2 3x3 128ch 32x24", 4, 128, 32, 24, 128, 3, 1},
      {"layer2 3x3 s2 64->128 to 32x24", 4, 64, 64, 48, 128, 3, 2},
      {"layer3 3x3 256ch 16x12", 4, 256, 16, 12, 256, 3, 1},
      {"layer4 3x3 512ch 8x6", 4, 512, 8, 6, 512, 3, 1},
      {"fpn/rpn 3x3 128ch 64x48", 4, 128, 64, 48, 128, 3, 1},
      {"fpn/rpn 3x3 128ch 32x24", 4, 128, 32, 24, 128, 3, 1},
      {"fpn/rpn 3x3 128ch 16x12", 4, 128, 16, 12, 128, 3, 1},
      {"fpn/rpn 3x3 128ch 8x6", 4, 128, 8, 6, 128, 3, 1},
      {"256x224: layer4 3x3 512ch 8x7", 4, 512, 8, 7, 512, 3, 1},
      {"256x224: fpn/rpn 3x3 128ch 8x7", 4, 128, 8, 7, 128, 3, 1},
      {"256x224: layer4 3x3 s2 256->512 to 8x7", 4, 256, 16, 14, 512, 3, 2},
      {"256x256: layer4 3x3 512ch 8x8", 4, 512, 8, 8, 512, 3, 1},
      {"256x256: fpn/rpn 3x3 128ch 8x8", 4, 128, 8, 8, 128, 3, 1},
      {"256x224: layer1 3x3 64ch 64x56", 4, 64, 64, 56, 64, 3, 1},
      {"256x224: 3x3 64ch 8x7", 4, 64, 8, 7, 64, 3, 1},
      {"256x224: layer2 3x3 128ch 32x28", 4, 128, 32, 28, 128, 3, 1},
      {"256x224: layer3 3x3 256ch 16x14", 4, 256, 16, 14, 256, 3, 1},
      {"256x256: layer2 3x3 128ch 32x32", 4, 128, 32, 32, 128, 3, 1},
      {"256x256: layer3 3x3 256ch 16x16", 4, 256, 16, 16, 256, 3, 1},
      {"jitter 176: layer1 3x3 64ch 59x44", 4, 64, 59, 44, 64, 3, 1},
      {"jitter 176: layer2 3x3 128ch 30x22", 4, 128, 30, 22, 128, 3, 1},
      {"jitter 176: layer3 3x3 256ch 15x11", 4, 256, 15, 11, 256, 3, 1},
      {"mask head 3x3 128ch 14x14, 64 RoIs", 64, 128, 14, 14, 128, 3, 1},
  };
  const double peak = cpu::measure_fma_peak(num_threads()).gflops;
  const char* without = mode == "gemm"    ? "; without = no direct kernel"
                        : mode == "rules" ? "; without = the direct kernel wherever it applies, with = the measured rules"
                                          : "";
  std::printf("direct conv flat tiles, %d threads, FMA peak %.1f GFLOP/s; best of %d rounds, without and with alternated%s\n",
              num_threads(), peak, rounds, without);
  std::printf("%-38s %-5s %-17s %-17s %9s %6s %9s %6s %7s %7s\n", "case", "pass", "route without", "route with",
              "ms without", "%peak", "ms with", "%peak", "ratio", "median");
  for (const Case& c : cases) {
    if (std::string(c.name).find(filter) == std::string::npos) continue;
    const Tensor weight = ops::mul(randn({c.out_channels, c.channels, c.kernel, c.kernel}), 0.05);
    const double gflop = bench::conv_gflop(c);
    for (const bool input_gradient : {false, true}) {
      Tensor x = randn({c.batch, c.channels, c.height, c.width});
      if (input_gradient) x.set_requires_grad(true);
      std::string routes[2];
      double best[2] = {1e30, 1e30};  // [without, with]
      std::vector<double> round_ratios;  // with / without, round by round
      double round_seconds[2] = {0, 0};
      Tensor out, dout;
      for (int r = 0; r < rounds; ++r)
        for (int side = 0; side < 2; ++side) {
          if (mode == "gemm") cpu::allow_direct_conv(side == 1);
          else if (mode == "rules") cpu::prefer_direct_conv(side == 0);
          else cpu::allow_flat_conv_tiles(side == 1);
          const auto forward = [&] { out = ops::conv2d(x, weight, Tensor(), {c.stride, c.kernel / 2}); };
          const double s = input_gradient
                               ? bench::median_seconds([&] { autograd::backward(out, dout); }, {3, 0.1, 10}, [&] {
                                   x.zero_grad();
                                   forward();
                                   if (!dout.defined()) dout = randn(out.sizes());
                                 })
                               : bench::median_seconds(forward, {3, 0.1, 10});
          best[side] = std::min(best[side], s);
          round_seconds[side] = s;
          if (side == 1) round_ratios.push_back(round_seconds[1] / round_seconds[0]);
          if (r == 0)
            routes[side] = input_gradient ? noted_route([&] {
              forward();
              autograd::backward(out, dout);
            }, "input grad")
                                          : noted_route(forward, "forward");
        }
      cpu::allow_flat_conv_tiles(true);
      cpu::allow_direct_conv(true);
      cpu::prefer_direct_conv(false);
      std::sort(round_ratios.begin(), round_ratios.end());
      std::printf("%-38s %-5s %-17s %-17s %9.3f %5.1f%% %9.3f %5.1f%% %7.3f %7.3f\n", c.name, input_gradient ? "dx" : "fwd",
                  routes[0].c_str(), routes[1].c_str(), best[0] * 1e3, 100 * gflop / best[0] / peak, best[1] * 1e3,
                  100 * gflop / best[1] / peak, best[1] / best[0], round_ratios[round_ratios.size() / 2]);
    }
  }
  return 0;
}
