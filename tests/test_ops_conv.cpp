// conv2d / conv_transpose2d: hand-computed values, a naive direct-loop reference over many
// geometries, gradchecks (groups, dilation, stride 2 on odd sizes, 1x1, k2 s2 transpose), errors;
// flop counts, the conv profile and kernel routes are in test_ops_conv_routes.cpp; the CUDA side
// (cuDNN's algorithm choice, CPU-vs-CUDA comparisons) in test_ops_conv_cuda.cpp.
#include "ops/conv.h"

#include <algorithm>
#include <limits>
#include <string>

#include "ops/conv_geometry.h"
#include "ops/conv_profile.h"
#include "ops/gemm.h"
#include "tests/helpers.h"

using namespace mrcnn;
using test::expect_gradcheck;
using test::leaf;
using V = std::vector<Tensor>;

namespace {

// out[n][o][y][x] = b[o] + sum_{c in group, ki, kj} w[o][c][ki][kj] * x[n][g*cg + c][y*s - p + ki*d][x*s - p + kj*d]
Tensor naive_conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const ops::Conv2dOptions& o) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), wd = x.size(3);
  const int64_t oc = w.size(0), cg = w.size(1), kh = w.size(2), kw = w.size(3), og = oc / o.groups;
  const int64_t oh = (h + 2 * o.padding.h - o.dilation.h * (kh - 1) - 1) / o.stride.h + 1;
  const int64_t ow = (wd + 2 * o.padding.w - o.dilation.w * (kw - 1) - 1) / o.stride.w + 1;
  const auto xv = test::values(x), wv = test::values(w);
  const auto bv = b.defined() ? test::values(b) : std::vector<double>(oc, 0.0);
  std::vector<double> out(n * oc * oh * ow);
  for (int64_t in = 0; in < n; ++in)
    for (int64_t io = 0; io < oc; ++io)
      for (int64_t y = 0; y < oh; ++y)
        for (int64_t xx = 0; xx < ow; ++xx) {
          double acc = bv[io];
          for (int64_t ic = 0; ic < cg; ++ic)
            for (int64_t ki = 0; ki < kh; ++ki)
              for (int64_t kj = 0; kj < kw; ++kj) {
                const int64_t iy = y * o.stride.h - o.padding.h + ki * o.dilation.h;
                const int64_t ix = xx * o.stride.w - o.padding.w + kj * o.dilation.w;
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                const int64_t channel = io / og * cg + ic;
                acc += wv[((io * cg + ic) * kh + ki) * kw + kj] * xv[((in * c + channel) * h + iy) * wd + ix];
              }
          out[((in * oc + io) * oh + y) * ow + xx] = acc;
        }
  return from_vector<double>(out, {n, oc, oh, ow});
}

struct ConvCase {
  Shape x, w;
  ops::Conv2dOptions options;
  bool bias;
};

const std::vector<ConvCase> kConvCases = {
    {{2, 3, 6, 5}, {4, 3, 3, 3}, {1, 1, 1, 1}, true},        // 3x3 same padding
    {{1, 4, 7, 5}, {6, 2, 3, 3}, {1, 2, 2, 2}, true},        // groups 2, dilation 2
    {{2, 3, 7, 9}, {2, 3, 3, 3}, {2, 1, 1, 1}, false},       // stride 2 on odd sizes
    {{1, 3, 11, 11}, {4, 3, 7, 7}, {2, 3, 1, 1}, true},      // ResNet stem shape, small
    {{2, 5, 4, 3}, {3, 5, 1, 1}, {1, 0, 1, 1}, true},        // 1x1 stride 1: plain GEMM path
    {{2, 5, 5, 5}, {3, 5, 1, 1}, {2, 0, 1, 1}, false},       // 1x1 stride 2 downsample
    {{1, 4, 5, 6}, {4, 1, 3, 3}, {{1, 2}, {0, 1}, 1, 4}, true},  // depthwise, asymmetric stride/padding
    {{0, 3, 5, 5}, {2, 3, 3, 3}, {1, 1, 1, 1}, true},        // empty batch
};

}  // namespace

TEST_CASE("conv2d: hand-computed values") {
  // x = 0..8 in a 3x3 plane, 2x2 kernel of ones, bias 0.5: each output is the sum of a 2x2 window + 0.5.
  const Tensor x = ops::reshape(arange(0, 9, 1, kFloat32), {1, 1, 3, 3});
  const Tensor w = ones({1, 1, 2, 2});
  const auto y = test::values(ops::conv2d(x, w, full({1}, 0.5)));
  CHECK(y == std::vector<double>{8.5, 12.5, 20.5, 24.5});
  // padding 1, stride 2: windows at (-1,-1), (-1,1), (1,-1), (1,1).
  const auto z = test::values(ops::conv2d(x, w, Tensor(), {2, 1, 1, 1}));
  CHECK(z == std::vector<double>{0, 1 + 2, 3 + 6, 4 + 5 + 7 + 8});
}

TEST_CASE("conv2d: matches a direct loop on every geometry") {
  uint64_t seed = 100;
  for (const ConvCase& c : kConvCases) {
    CAPTURE(shape_str(c.x));
    const Tensor x = leaf(c.x, ++seed), w = leaf(c.w, ++seed);
    const Tensor b = c.bias ? leaf({c.w[0]}, ++seed) : Tensor();
    const Tensor y = ops::conv2d(x, w, b, c.options);
    const Tensor ref = naive_conv2d(x, w, b, c.options);
    REQUIRE(y.sizes() == ref.sizes());
    CHECK(test::max_abs_diff(y, ref) < 1e-12);  // f64, sums of <= 147 products of N(0,1) values
    // f32 through the same kernels: rounding of ~100-term sums of O(1) values stays below 1e-4.
    const Tensor y32 = ops::conv2d(ops::to(x, kFloat32), ops::to(w, kFloat32),
                                   b.defined() ? ops::to(b, kFloat32) : Tensor(), c.options);
    CHECK(test::max_abs_diff(ops::to(y32, kFloat64), ref) < 1e-4);
  }
}

namespace {

// float32 forward and backward vs float64 (im2col + Eigen, an independent path) on one geometry.
void expect_float32_matches_float64(const ConvCase& c, uint64_t& seed) {
  CAPTURE(shape_str(c.x));
  CAPTURE(shape_str(c.w));
  const Tensor x = leaf(c.x, ++seed), w = leaf(c.w, ++seed);
  const Tensor b = c.bias ? leaf({c.w[0]}, ++seed) : Tensor();
  const Tensor x32 = ops::to(x.detach(), kFloat32).set_requires_grad(true);
  const Tensor w32 = ops::to(w.detach(), kFloat32).set_requires_grad(true);
  const Tensor b32 = c.bias ? ops::to(b.detach(), kFloat32).set_requires_grad(true) : Tensor();
  const Tensor y = ops::conv2d(x, w, b, c.options), y32 = ops::conv2d(x32, w32, b32, c.options);
  const Tensor r = leaf(y.sizes(), ++seed).detach();
  autograd::backward(ops::sum(ops::mul(y, r)));
  autograd::backward(ops::sum(ops::mul(y32, ops::to(r, kFloat32))));
  // float32 rounding of a K-term sum grows with the sum's magnitude, so the bound scales with the
  // largest reference value: 1e-6 of it (measured: <= 4.5e-7 for the direct path and <= 7.2e-7 for
  // Winograd on the 256-channel cases, whose outputs reach ~250), plus 1e-5 for tiny outputs.
  const auto bound = [](const Tensor& reference) {
    return 1e-6 * (reference.numel() ? ops::max(ops::abs(reference)).item<double>() : 0.0) + 1e-5;
  };
  CHECK(test::max_abs_diff(ops::to(y32, kFloat64), y) <= bound(y));
  CHECK(test::max_abs_diff(ops::to(x32.grad(), kFloat64), x.grad()) <= bound(x.grad()));
  CHECK(test::max_abs_diff(ops::to(w32.grad(), kFloat64), w.grad()) < 1e-3 * std::max<int64_t>(1, c.x[0]));
  if (c.bias) CHECK(test::max_abs_diff(ops::to(b32.grad(), kFloat64), b.grad()) < 1e-3);
}

cpu::ConvGeometry geometry_of(const ConvCase& c) {
  cpu::ConvGeometry g;
  g.batch = c.x[0], g.in_channels = c.x[1], g.in_h = c.x[2], g.in_w = c.x[3];
  g.out_channels = c.w[0], g.kernel_h = c.w[2], g.kernel_w = c.w[3];
  g.stride = c.options.stride, g.padding = c.options.padding, g.dilation = c.options.dilation;
  g.groups = c.options.groups;
  g.out_h = (g.in_h + 2 * g.padding.h - g.dilation.h * (g.kernel_h - 1) - 1) / g.stride.h + 1;
  g.out_w = (g.in_w + 2 * g.padding.w - g.dilation.w * (g.kernel_w - 1) - 1) / g.stride.w + 1;
  return g;
}

}  // namespace

TEST_CASE("conv2d: float32 forward and backward agree with float64 on every geometry") {
  // float32 runs the packed GEMM with implicit im2col (batch-merged for small maps), the direct
  // kernel (ops/conv_direct.cpp) for wide maps, or Winograd; float64 runs im2col + Eigen.
  std::vector<ConvCase> cases = kConvCases;
  cases.push_back({{2, 3, 50, 47}, {4, 3, 3, 3}, {1, 1, 1, 1}, true});
  cases.push_back({{2, 2, 93, 91}, {3, 2, 3, 3}, {2, 1, 1, 1}, false});
  // Stride-1 input gradients the direct kernel does not take (narrow maps) run weight^T @ dout over
  // the batch + col2im: groups, a non-square kernel, and a map past the batch-merging size.
  cases.push_back({{2, 40, 6, 5}, {36, 20, 3, 2}, {{1, 1}, {1, 0}, 1, 2}, true});
  cases.push_back({{2, 8, 700, 4}, {6, 4, 3, 2}, {{1, 1}, {1, 0}, 1, 2}, false});
  // ... and those over maps 7 wide with >= 128 channels, where the direct kernel would run flat tiles.
  cases.push_back({{2, 128, 8, 7}, {128, 128, 3, 3}, {1, 1, 1, 1}, false});
  // Strided input gradient over small maps: the batch's images share one GEMM per group, then col2im.
  cases.push_back({{3, 6, 9, 7}, {4, 3, 3, 3}, {2, 1, 1, 2}, false});
  // Winograd F(2x2, 3x3): >= 256 channels and >= 1024 output tiles, odd output sizes, padding 0/1/2.
  cases.push_back({{2, 256, 46, 47}, {256, 256, 3, 3}, {1, 0, 1, 1}, true});
  cases.push_back({{1, 256, 63, 61}, {264, 256, 3, 3}, {1, 2, 1, 1}, false});
  cases.push_back({{4, 256, 31, 33}, {256, 256, 3, 3}, {1, 1, 1, 1}, false});
  uint64_t seed = 150;
  for (const ConvCase& c : cases) expect_float32_matches_float64(c, seed);
}

TEST_CASE("conv2d: the direct kernel agrees with float64 with every micro-tile") {
  // Each case names the tile it must run on (so a routing change cannot silently skip a kernel):
  // partial channel slivers (13, 20, 24 outputs), partial pixel tiles, several depth passes
  // (K = 630 > 384), stride-2 phase split, dilation with groups, the 7x7 stem, strided 1x1s (direct only with >= 256
  // outputs), row pairs over an odd number of 8-pixel rows, and flat tiles (rows of the padded
  // frame run together): 16 and 32 lanes, partial slivers, two depth passes, stride 2, a 3x1
  // kernel whose frame has no extra columns, so 16 lanes span up to four output rows of 6 pixels,
  // and row pairs of 7-pixel rows (odd row counts, stride 2). The input gradient of the stride-1 cases runs the
  // direct kernel too, on the flipped weights read in place (with AVX2 tiles only, not over 70 input
  // channels: the next case); the weight gradient of those with
  // <= 64 input channels and >= 4096 output pixels that the framed route does not take runs the
  // dot-product kernel (partial channel and tap tiles, masked row tails).
  struct DirectCase {
    ConvCase conv;
    const char* avx512_tile;  // forward tile with AVX-512 kernels allowed
    const char* avx2_tile;    // forward tile on AVX2 kernels only
    bool avx512_weight_grad;  // whether the weight gradient runs the direct dot-product kernel
    bool avx2_forward_gemm = false;  // forward runs the implicit GEMM on AVX2 (> 64 outputs, row pairs)
  };
  const std::vector<DirectCase> cases = {
      {{{2, 16, 40, 64}, {13, 16, 3, 3}, {1, 1, 1, 1}, true}, "avx512 8x32", "avx2 6x16", false},  // framed dW
      {{{1, 8, 70, 64}, {13, 8, 3, 3}, {1, 1, 1, 1}, true}, "avx512 8x32", "avx2 6x16", true},    // 4480 px: direct dW
      {{{1, 70, 9, 30}, {20, 70, 3, 3}, {1, 1, 1, 1}, false}, "avx512 8x32", "avx2 6x16", false},
      {{{4, 8, 127, 61}, {10, 8, 3, 3}, {2, 1, 1, 1}, true}, "avx512 8x32", "avx2 6x16", true},
      {{{2, 8, 64, 36}, {12, 4, 3, 3}, {1, 2, 2, 2}, true}, "avx512 8x32 flat", "avx2 6x16 flat", false},
      {{{2, 8, 20, 48}, {20, 8, 3, 3}, {1, 1, 1, 1}, true}, "avx512 16x16", "avx2 6x16", false},
      {{{2, 16, 24, 24}, {13, 16, 3, 3}, {1, 1, 1, 1}, true}, "avx512 16x16 flat", "avx2 6x16 flat", false},
      {{{2, 48, 48, 48}, {20, 48, 3, 3}, {2, 1, 1, 1}, false}, "avx512 8x32 flat", "avx2 6x16 flat", false},
      {{{3, 8, 20, 6}, {12, 8, 3, 1}, {1, {1, 0}, 1, 1}, true}, "avx512 8x32 flat", "avx2 6x16 flat", false},
      {{{2, 32, 7, 7}, {24, 32, 3, 3}, {1, 1, 1, 1}, true}, "avx512 16x(2x8) flat", "avx2 6x(2x8) flat", false, true},
      {{{1, 16, 13, 13}, {20, 16, 3, 3}, {2, 1, 1, 1}, false}, "avx512 16x(2x8) flat", "avx2 6x(2x8) flat", false, true},
      {{{2, 3, 128, 64}, {16, 3, 7, 7}, {2, 3, 1, 1}, true}, "avx512 8x32", "avx2 6x16", true},
      {{{2, 24, 128, 64}, {256, 24, 1, 1}, {2, 0, 1, 1}, false}, "avx512 8x32", "avx2 6x16", true, true},
      {{{2, 24, 64, 64}, {20, 24, 1, 1}, {2, 0, 1, 1}, false}, "", "", false},  // few outputs: implicit GEMM
      {{{2, 32, 7, 8}, {24, 32, 3, 3}, {1, 1, 1, 1}, true}, "avx512 16x(2x8)", "avx2 6x(2x8)", false, true},
  };
  const bool has_avx512 = __builtin_cpu_supports("avx512f");
  if (!cpu::cpu_has_avx2_fma()) MESSAGE("SKIPPED: no AVX2/FMA, the direct kernel is not used on this CPU");
  uint64_t seed = 400;
  for (const bool avx512 : {true, false}) {
    if (!cpu::cpu_has_avx2_fma() || (avx512 && !has_avx512)) continue;
    cpu::allow_avx512(avx512);
    for (const DirectCase& c : cases) {
      CHECK(cpu::direct_conv_tile(geometry_of(c.conv)) == std::string(avx512 ? c.avx512_tile : c.avx2_tile));
      CHECK(cpu::direct_weight_grad_applies(geometry_of(c.conv)) == (avx512 && c.avx512_weight_grad));
      CHECK(cpu::direct_conv_forward(geometry_of(c.conv)) ==
            (!std::string(avx512 ? c.avx512_tile : c.avx2_tile).empty() && (avx512 || !c.avx2_forward_gemm)));
      expect_float32_matches_float64(c.conv, seed);
    }
  }
  cpu::allow_avx512(true);
}

namespace {

// The kernel route of a float32 conv2d's input gradient, as the conv profile records it.
std::string input_grad_route(const ConvCase& c) {
  const Tensor x = randn(c.x).set_requires_grad(true);
  ops::reset_conv_profile();
  ops::set_conv_profiling(true);
  autograd::backward(ops::sum(ops::conv2d(x, randn(c.w), Tensor(), c.options)));
  ops::set_conv_profiling(false);
  std::string route;
  for (const auto& record : ops::conv_profile())
    if (record.pass == "input grad") route = record.route;
  ops::reset_conv_profile();
  return route;
}

}  // namespace

TEST_CASE("conv2d: with AVX2 tiles only, input gradients over > 64 channels run the flipped kernel through the implicit GEMM") {
  // ops/conv_direct.cpp's direct_input_grad: on a Zen 3 the GEMM took 0.82-1.02 of the direct
  // kernel's best time with 128 channels (bench_conv_flat_tiles 9 rules, three runs). Its copy of
  // the kernel is flipped and in/out-swapped within each group: checked against float64 with two
  // groups and dilation, and with a 3x5 kernel whose padding falls short of its reach along x. 64
  // channels, and the row pairs of 8 x 8 maps, keep the direct kernel. AVX-512 CPUs run the case
  // with their AVX-512 tiles switched off.
  if (!cpu::cpu_has_avx2_fma()) {
    MESSAGE("SKIPPED: no AVX2/FMA, the direct kernel is not used on this CPU");
    return;
  }
  struct RouteCase {
    ConvCase conv;
    bool gemm;
  };
  const std::vector<RouteCase> cases = {
      {{{2, 72, 10, 24}, {80, 72, 3, 3}, {1, 1, 1, 1}, false}, true},
      {{{2, 144, 12, 20}, {96, 72, 3, 3}, {1, 2, 2, 2}, false}, true},
      {{{1, 80, 9, 26}, {16, 80, 3, 5}, {1, 1, 1, 1}, false}, true},
      {{{2, 64, 10, 24}, {80, 64, 3, 3}, {1, 1, 1, 1}, false}, false},
      {{{2, 96, 8, 8}, {32, 96, 3, 3}, {1, 1, 1, 1}, false}, false},
  };
  cpu::allow_avx512(false);
  uint64_t seed = 1100;
  for (const RouteCase& c : cases) {
    const std::string route = input_grad_route(c.conv);
    CAPTURE(route);
    if (c.gemm) {
      CHECK(route == "conv of dout with the flipped kernel > gemm, implicit im2col");
    } else {
      CHECK(route.rfind("conv of dout with the flipped kernel > direct avx2 6x", 0) == 0);
    }
    expect_float32_matches_float64(c.conv, seed);
  }
  // The rule set aside (bench_conv_flat_tiles rules), the direct kernel runs them all.
  cpu::prefer_direct_conv(true);
  CHECK(input_grad_route(cases[0].conv) == "conv of dout with the flipped kernel > direct avx2 6x16 flat");
  cpu::prefer_direct_conv(false);
  cpu::allow_avx512(true);
}

namespace {

// A flat tile runs each output pixel's FMAs in the same order as a row tile: only which lanes hold
// which pixels differs. So forward (bias and depth passes included) and the stride-1 input gradient
// must match the row tiles bit for bit, NaN and infinities in the input included.
void check_flat_tiles_give_row_bits(bool avx512) {
  struct FlatCase {
    ConvCase conv;
    const char* avx512_tile;
    const char* avx2_tile;
  };
  const std::vector<FlatCase> cases = {
      {{{2, 64, 24, 24}, {40, 64, 3, 3}, {1, 1, 1, 1}, true}, "avx512 16x16 flat", "avx2 6x16 flat"},  // rows: 8x32
      {{{2, 24, 16, 12}, {16, 24, 3, 3}, {1, 1, 1, 1}, true}, "avx512 8x32 flat", "avx2 6x16 flat"},   // rows: 16x16
      {{{2, 32, 6, 24}, {24, 32, 3, 3}, {1, 1, 1, 1}, false}, "avx512 8x32 flat", "avx2 6x16 flat"},   // rows: 8x32
      {{{1, 16, 32, 26}, {8, 16, 3, 3}, {2, 1, 1, 1}, true}, "avx512 8x32 flat", "avx2 6x16 flat"},  // stride 2, 13 wide
  };
  cpu::allow_avx512(avx512);
  uint64_t seed = 700;
  for (const FlatCase& c : cases) {
    CAPTURE(shape_str(c.conv.x));
    const std::string tile = avx512 ? c.avx512_tile : c.avx2_tile;
    const cpu::ConvGeometry g = geometry_of(c.conv);
    CHECK(cpu::direct_conv_tile(g) == tile);
    CHECK(cpu::direct_conv_forward(g));
    Tensor x = ops::to(leaf(c.conv.x, ++seed).detach(), kFloat32);
    float* xd = x.data<float>();
    xd[5] = std::numeric_limits<float>::quiet_NaN(), xd[x.numel() / 2] = std::numeric_limits<float>::infinity();
    const Tensor w = ops::to(leaf(c.conv.w, ++seed).detach(), kFloat32);
    const Tensor b = c.conv.bias ? ops::to(leaf({c.conv.w[0]}, ++seed).detach(), kFloat32) : Tensor();
    Tensor y[2], dx[2];
    for (const bool flat : {true, false}) {
      cpu::allow_flat_conv_tiles(flat);
      const Tensor xg = x.detach().set_requires_grad(true);
      y[flat] = ops::conv2d(xg, w, b, c.conv.options);
      autograd::backward(y[flat], ops::to(leaf(y[flat].sizes(), seed + 1).detach(), kFloat32));
      dx[flat] = xg.grad();
    }
    cpu::allow_flat_conv_tiles(true);
    CHECK(cpu::direct_conv_tile(g) == tile);
    CHECK(test::bitwise_equal(y[0], y[1]));
    if (g.stride == ops::Size2(1)) CHECK(test::bitwise_equal(dx[0], dx[1]));
  }
  cpu::allow_avx512(true);
}

}  // namespace

TEST_CASE("conv2d: AVX-512 flat tiles give the row tiles' bits (compress stores)") {
  if (!cpu::cpu_has_avx2_fma() || !__builtin_cpu_supports("avx512f")) {
    MESSAGE("SKIPPED: no AVX-512F on this CPU");
    return;
  }
  check_flat_tiles_give_row_bits(true);
}

TEST_CASE("conv2d: AVX2 flat tiles give the row tiles' bits (permutes and masked stores)") {
  if (!cpu::cpu_has_avx2_fma()) {
    MESSAGE("SKIPPED: no AVX2/FMA, the direct kernel is not used on this CPU");
    return;
  }
  check_flat_tiles_give_row_bits(false);
}

namespace {

// ops/conv_framed.cpp: stride 1, > 1 tap, padding within the kernel's reach, maps of <= 2048 pixels
// (4096 with AVX-512) whose padded grid adds <= 1.2x. Each case runs framed and with the route
// switched off (implicit im2col or direct dot products), with AVX-512 (the tap-row kernel: partial
// row and column tiles, several depth chunks) or without (the packed GEMM). Depths (batch x grid)
// end off the 8-float transpose step; 36 and 20 taps leave partial slivers.
void check_framed_weight_grad(bool avx512) {
  const std::vector<ConvCase> framed = {
      {{3, 16, 14, 14}, {24, 16, 3, 3}, {1, 1, 1, 1}, true},         // the mask head's shape, small
      {{2, 8, 24, 20}, {6, 4, 3, 3}, {1, 2, 2, 2}, false},           // groups 2, dilation 2, padding 2
      {{2, 6, 40, 30}, {5, 6, 3, 3}, {1, 0, 1, 1}, false},           // no padding
      {{2, 5, 20, 18}, {4, 5, 1, 3}, {1, {0, 1}, 1, 1}, true},       // 1x3, padding only along x
      {{1, 4, 50, 44}, {3, 4, 5, 5}, {1, 1, 1, 1}, false},           // 5x5, padding short of its reach
      {{1000, 16, 11, 11}, {16, 16, 3, 3}, {1, 1, 1, 1}, false},     // 18.4 MB of copies: two chunks of 500 images
      {{2, 24, 30, 28}, {70, 24, 3, 3}, {1, 1, 1, 1}, true},         // 70 outputs: two 64-wide tiles, the second partial
  };
  // Framed only on AVX-512 (2048 < pixels <= 4096), where the direct dot products would run otherwise.
  const ConvCase wide = {{2, 16, 60, 56}, {20, 16, 3, 3}, {1, 1, 1, 1}, true};
  const std::vector<ConvCase> not_framed = {
      {{2, 16, 14, 14}, {8, 16, 3, 3}, {2, 1, 1, 1}, false},         // stride 2
      {{2, 16, 14, 14}, {8, 16, 3, 3}, {1, 3, 1, 1}, false},         // padding past the kernel's reach (2)
      {{3, 20, 9, 7}, {12, 20, 1, 1}, {1, 0, 1, 1}, false},          // 1x1: no taps to shift
      {{4, 32, 8, 8}, {16, 32, 3, 3}, {1, 1, 1, 1}, false},          // 8x8: the grid adds 1.27x
      {{1, 8, 66, 66}, {8, 8, 3, 3}, {1, 1, 1, 1}, false},           // 4356 output pixels
  };
  uint64_t seed = avx512 ? 600 : 650;
  cpu::allow_avx512(avx512);
  for (const bool allowed : {true, false}) {
    cpu::allow_framed_weight_grad(allowed);
    for (const ConvCase& c : framed) {
      CHECK(cpu::framed_weight_grad_applies(geometry_of(c)) == allowed);
      expect_float32_matches_float64(c, seed);
    }
    // Where the framed route applies, the direct dot products must not be chosen over it.
    CHECK(cpu::framed_weight_grad_applies(geometry_of(wide)) == (allowed && avx512));
    CHECK(cpu::direct_weight_grad_applies(geometry_of(wide)) == (!allowed && avx512));
    expect_float32_matches_float64(wide, seed);
    for (const ConvCase& c : not_framed) CHECK_FALSE(cpu::framed_weight_grad_applies(geometry_of(c)));
  }
  cpu::allow_avx512(true);
  cpu::allow_framed_weight_grad(true);
}

}  // namespace

TEST_CASE("conv2d: the framed weight gradient agrees with float64 where it applies, and only there, AVX-512 tap rows") {
  if (!cpu::cpu_has_avx2_fma() || !__builtin_cpu_supports("avx512f")) {
    MESSAGE("SKIPPED: the tap-row kernel: no AVX-512F on this CPU");
    return;
  }
  check_framed_weight_grad(true);
}

TEST_CASE("conv2d: the framed weight gradient agrees with float64 where it applies, and only there, AVX2 packed GEMM") {
  if (!cpu::cpu_has_avx2_fma()) {
    MESSAGE("SKIPPED: no AVX2/FMA, the framed route needs the packed GEMM");
    return;
  }
  check_framed_weight_grad(false);
}

TEST_CASE("gradcheck: conv2d on every geometry") {
  uint64_t seed = 200;
  for (const ConvCase& c : kConvCases) {
    CAPTURE(shape_str(c.x));
    V inputs{leaf(c.x, ++seed), leaf(c.w, ++seed)};
    if (c.bias) inputs.push_back(leaf({c.w[0]}, ++seed));
    const auto options = c.options;
    expect_gradcheck(
        [options](const V& in) { return ops::conv2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), options); },
        inputs);
  }
  // A non-contiguous input.
  expect_gradcheck([](const V& in) { return ops::conv2d(in[0], in[1], Tensor(), {1, 1, 1, 1}); },
                   {test::noncontiguous_leaf({1, 2, 4, 5}, 250), leaf({3, 2, 3, 3}, 251)});
}

TEST_CASE("conv_transpose2d: is the adjoint of conv2d") {
  // <conv2d(x, w), y> == <x, conv_transpose2d(y, w)> for matching geometry, and sizes agree.
  struct Case {
    Shape x, w;
    int64_t stride, padding, output_padding, dilation, groups;
  };
  const std::vector<Case> cases = {{{2, 3, 8, 8}, {4, 3, 2, 2}, 2, 0, 0, 1, 1},
                                   {{1, 4, 9, 7}, {6, 2, 3, 3}, 2, 1, 0, 1, 2},
                                   {{1, 2, 12, 12}, {3, 2, 3, 3}, 3, 1, 2, 1, 1},
                                   {{1, 2, 9, 9}, {2, 2, 3, 3}, 1, 2, 0, 2, 1},
                                   // non-overlapping 3x3 windows: the batch-merged GEMM path
                                   {{3, 2, 9, 12}, {5, 2, 3, 3}, 3, 0, 0, 1, 1}};
  uint64_t seed = 300;
  for (const Case& c : cases) {
    CAPTURE(shape_str(c.x));
    const Tensor x = leaf(c.x, ++seed), w = leaf(c.w, ++seed);
    const Tensor y = ops::conv2d(x, w, Tensor(), {c.stride, c.padding, c.dilation, c.groups});
    const Tensor r = leaf(y.sizes(), ++seed);
    const Tensor xt = ops::conv_transpose2d(r, w, Tensor(), {c.stride, c.padding, c.output_padding, c.dilation, c.groups});
    REQUIRE(xt.sizes() == x.sizes());
    const double lhs = ops::sum(ops::mul(y, r)).item<double>(), rhs = ops::sum(ops::mul(x, xt)).item<double>();
    CHECK(lhs == doctest::Approx(rhs).epsilon(1e-12));
  }
  // The mask head's k=2 s=2 upsampling: each input pixel fills its own 2x2 block.
  const Tensor x = ops::reshape(from_vector<float>({1, 2, 3, 4}, {4}), {1, 1, 2, 2});
  const Tensor w = ops::reshape(from_vector<float>({1, 10, 100, 1000}, {4}), {1, 1, 2, 2});
  const auto y = test::values(ops::conv_transpose2d(x, w, full({1}, 0.5f), {2}));
  CHECK(y == std::vector<double>{1.5, 10.5, 2.5, 20.5, 100.5, 1000.5, 200.5, 2000.5,
                                 3.5, 30.5, 4.5, 40.5, 300.5, 3000.5, 400.5, 4000.5});
}

TEST_CASE("conv_transpose2d: 2x2 stride 2 runs a chunk of images at a time, with the bits of one pass") {
  // The mask predictor's geometry (windows tile the output): forward, and conv2d's backward input
  // of the same tiling, run images in chunks of bounded scratch. A 1-byte bound gives the smallest
  // chunk (256 columns: 6 images of 7x7), so 13 images make chunks of 6, 6 and 1.
  auto run = [](DType dt) {
    const Tensor x = ops::to(test::leaf({13, 8, 7, 7}, 70), dt).detach().set_requires_grad(true);
    const Tensor w = ops::to(test::leaf({8, 5, 2, 2}, 71), dt).detach().set_requires_grad(true);
    const Tensor y = ops::conv_transpose2d(x, w, Tensor(), {2});
    const Tensor z = ops::conv2d(y, ops::to(test::leaf({3, 5, 2, 2}, 72), dt), Tensor(), {2});
    autograd::backward(ops::sum(ops::mul(z, ops::to(test::leaf(z.sizes(), 73), dt))));
    return std::vector<Tensor>{y.detach(), x.grad(), w.grad()};
  };
  for (const DType dt : {kFloat32, kFloat64}) {
    const std::string dtype = dtype_name(dt);
    CAPTURE(dtype);
    const auto whole = run(dt);
    const int64_t default_bytes = ops::set_tiled_transpose_chunk_bytes(1);
    const auto chunked = run(dt);
    CHECK(ops::set_tiled_transpose_chunk_bytes(default_bytes) == 1);
    CHECK(default_bytes == int64_t(32) << 20);
    CHECK(whole[0].sizes() == Shape{13, 5, 14, 14});
    for (size_t i = 0; i < whole.size(); ++i) {
      CAPTURE(i);
      // float32 (training, inference) runs the packed GEMM, whose sum order per element does not
      // depend on the product's width: the same bits. float64 runs Eigen's, whose does: sums of 32
      // O(1) products, 1e-14.
      if (dt == kFloat32) CHECK(test::bitwise_equal(whole[i], chunked[i]));
      else CHECK(test::max_abs_diff(whole[i], chunked[i]) <= 1e-14);
    }
  }
  CHECK(test::error_of([] { ops::set_tiled_transpose_chunk_bytes(0); }) ==
        "set_tiled_transpose_chunk_bytes: expected a positive byte count, got 0");
}

TEST_CASE("gradcheck: conv_transpose2d") {
  expect_gradcheck([](const V& in) { return ops::conv_transpose2d(in[0], in[1], in[2], {2}); },
                   {leaf({2, 3, 3, 4}, 401), leaf({3, 2, 2, 2}, 402), leaf({2}, 403)});
  expect_gradcheck(
      [](const V& in) { return ops::conv_transpose2d(in[0], in[1], in[2], {{2, 3}, {1, 0}, {1, 2}, 1, 2}); },
      {leaf({1, 4, 3, 3}, 404), leaf({4, 1, 3, 3}, 405), leaf({2}, 406)});
  expect_gradcheck([](const V& in) { return ops::conv_transpose2d(in[0], in[1], Tensor(), {1, 1, 0, 2, 1}); },
                   {test::noncontiguous_leaf({1, 2, 4, 5}, 407), leaf({2, 3, 3, 3}, 408)});
}

TEST_CASE("conv2d: error messages") {
  const Tensor x = zeros({1, 4, 5, 5}), w = zeros({2, 4, 3, 3});
  CHECK(test::error_of([&] { ops::conv2d(zeros({4, 5, 5}), w); }) ==
        "conv2d: expected a 4-D input [N, C, H, W], got shape [4, 5, 5]");
  CHECK(test::error_of([&] { ops::conv2d(x, zeros({2, 3, 3, 3})); }) ==
        "conv2d: input [1, 4, 5, 5] and weight [2, 3, 3, 3] do not fit groups=1 (weight must be [O, C/groups, kH, "
        "kW] with O and C divisible by groups)");
  CHECK(test::error_of([&] { ops::conv2d(x, w, zeros({3})); }) ==
        "conv2d: bias must be a float32 vector of 2 elements, got float32 [3]");
  CHECK(test::error_of([&] { ops::conv2d(x, zeros({2, 4, 7, 7})); }) ==
        "conv2d: kernel 7x7 (dilation 1x1) is larger than the padded input [1, 4, 5, 5] with padding (0, 0)");
  CHECK(test::error_of([&] { ops::conv2d(x, w, Tensor(), {0}); }) == "conv2d: stride must be >= 1, got (0, 0)");
  CHECK(test::error_of([&] { ops::conv2d(x, zeros({2, 4, 3, 3}, kFloat64)); }) ==
        "conv2d: weight is float64 on cpu but input is float32 on cpu");
  CHECK(test::error_of([&] { ops::conv_transpose2d(x, zeros({4, 2, 2, 2}), Tensor(), {2, 0, 2}); }) ==
        "conv_transpose2d: output_padding (2, 2) must be smaller than stride or dilation");
}
