// conv2d's bookkeeping and routing: the arithmetic it counts, the per-call profile and the kernel
// routes it records (which routes a shape takes is a performance choice, so the tests pin it), and
// the batch-merged strided input gradient, whose images must each get the bits they get alone.
#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "ops/conv.h"
#include "ops/conv_geometry.h"
#include "ops/conv_profile.h"
#include "ops/gemm.h"
#include "tensor/flop_count.h"
#include "tests/helpers.h"

using namespace mrcnn;
using test::leaf;

TEST_CASE("conv2d and conv_transpose2d count their arithmetic: 2 flops per multiply-add, forward and each gradient") {
  // [2, 6, 9, 7] -> [2, 4, 5, 4]: 3x3, stride 2, padding 1, two groups of 3 input channels.
  const int64_t multiply_adds = 2 * 4 * (5 * 4) * (3 * 3 * 3);
  Tensor x = leaf({2, 6, 9, 7}, 411), w = leaf({4, 3, 3, 3}, 412), b = leaf({4}, 413);
  int64_t before = flops_counted();
  Tensor y = ops::conv2d(x, w, b, {2, 1, 1, 2});
  CHECK(y.sizes() == Shape{2, 4, 5, 4});
  CHECK(flops_counted() - before == 2 * multiply_adds);  // the bias add is not counted
  before = flops_counted();
  autograd::backward(ops::sum(y));
  CHECK(flops_counted() - before == 4 * multiply_adds);  // input gradient and weight gradient
  // An input that needs no gradient (an image) costs only the weight gradient.
  y = ops::conv2d(x.detach(), w, Tensor(), {2, 1, 1, 2});
  before = flops_counted();
  autograd::backward(ops::sum(y));
  CHECK(flops_counted() - before == 2 * multiply_adds);
  // A transposed convolution does the work of the convolution it transposes: [2, 3, 4, 4] -> [2, 5, 8, 8]
  // with a 2x2 kernel at stride 2 is 2 * 3 * 16 input pixels, each spread over 5 * 2 * 2 outputs.
  Tensor t = leaf({2, 3, 4, 4}, 414), tw = leaf({3, 5, 2, 2}, 415);
  before = flops_counted();
  Tensor z = ops::conv_transpose2d(t, tw, Tensor(), {2});
  CHECK(z.sizes() == Shape{2, 5, 8, 8});
  CHECK(flops_counted() - before == 2 * (2 * 3 * 16) * (5 * 2 * 2));
  before = flops_counted();
  autograd::backward(ops::sum(z));
  CHECK(flops_counted() - before == 4 * (2 * 3 * 16) * (5 * 2 * 2));
}

namespace {

// The input gradient of a stride-2, padding-1 conv2d of `images` by `weight`, from `dout`.
Tensor strided_input_grad(const Tensor& images, const Tensor& weight, const Tensor& dout) {
  const Tensor leaf_x = images.detach().set_requires_grad(true);
  autograd::backward(ops::conv2d(leaf_x, weight, Tensor(), {2, 1}), dout);
  return leaf_x.grad();
}

// Each image's slice of the whole batch's input gradient equals, bit for bit, its gradient alone.
void expect_each_image_alone(const Tensor& x, const Tensor& weight, const Tensor& dout) {
  const Tensor together = strided_input_grad(x, weight, dout);
  for (int64_t i = 0; i < x.size(0); ++i) {
    CAPTURE(i);
    const Tensor alone = strided_input_grad(ops::narrow(x, 0, i, 1), weight, ops::contiguous(ops::narrow(dout, 0, i, 1)));
    CHECK(test::bitwise_equal(ops::contiguous(ops::narrow(together, 0, i, 1)), alone));
  }
}

}  // namespace

TEST_CASE("conv2d: a strided input gradient over the whole batch gives each image the bits it gets alone") {
  // The batch's images share one GEMM (then col2im per image); one image alone runs its own GEMM.
  // The packed kernel sums each element in the same order either way.
  const Tensor x = randn({4, 32, 16, 12}), w = ops::mul(randn({64, 32, 3, 3}), 0.1);
  const Tensor dout = randn({4, 64, 8, 6});
  expect_each_image_alone(x, w, dout);
  // Past 8M floats of cols the batch goes in parts (here 3 + 2 images of 1332 x 2048 cols each),
  // with the same bits.
  expect_each_image_alone(randn({5, 148, 64, 128}), ops::mul(randn({8, 148, 3, 3}), 0.05), randn({5, 8, 32, 64}));
  const Tensor together = strided_input_grad(x, w, dout);
  // And they agree with float64.
  const Tensor x64 = ops::to(x, kFloat64).set_requires_grad(true);
  autograd::backward(ops::conv2d(x64, ops::to(w, kFloat64), Tensor(), {2, 1}), ops::to(dout, kFloat64));
  CHECK(test::max_abs_diff(ops::to(together, kFloat64), x64.grad()) < 1e-4);
}

TEST_CASE("conv profile: each call is timed once under its op, pass, shape and the kernel that ran") {
  // float64 takes the generic routes on every CPU, so their names are known here.
  Tensor x = leaf({2, 6, 9, 7}, 421), w = leaf({4, 3, 3, 3}, 422);
  Tensor y = ops::conv2d(x, w, Tensor(), {2, 1, 1, 2});
  autograd::backward(ops::sum(y));
  CHECK(ops::conv_profile().empty());  // off by default
  ops::reset_conv_profile();
  ops::set_conv_profiling(true);
  y = ops::conv2d(x, w, Tensor(), {2, 1, 1, 2});
  autograd::backward(ops::sum(y));
  Tensor t = leaf({2, 3, 4, 4}, 423), tw = leaf({3, 5, 2, 2}, 424);
  autograd::backward(ops::sum(ops::conv_transpose2d(t, tw, Tensor(), {2})));
  ops::set_conv_profiling(false);
  auto records = ops::conv_profile();
  std::sort(records.begin(), records.end(), [](const auto& a, const auto& b) { return a.op + a.pass < b.op + b.pass; });
  REQUIRE(records.size() == 6);
  const int64_t conv_flops = 2 * 2 * 4 * (5 * 4) * (3 * 3 * 3), transpose_flops = 2 * (2 * 3 * 16) * (5 * 2 * 2);
  const std::vector<std::array<std::string, 4>> want = {
      {"conv2d", "forward", "[2, 6, 9, 7] * [4, 3, 3, 3] s2 p1 g2", "im2col + gemm"},
      {"conv2d", "input grad", "[2, 6, 9, 7] * [4, 3, 3, 3] s2 p1 g2", "gemm + col2im"},
      {"conv2d", "weight grad", "[2, 6, 9, 7] * [4, 3, 3, 3] s2 p1 g2", "im2col + gemm"},
      {"conv_transpose2d", "forward", "[2, 3, 4, 4] * [3, 5, 2, 2] s2 p0", "gemm, windows tile the input"},
      {"conv_transpose2d", "input grad", "[2, 3, 4, 4] * [3, 5, 2, 2] s2 p0", "im2col + gemm"},
      {"conv_transpose2d", "weight grad", "[2, 3, 4, 4] * [3, 5, 2, 2] s2 p0", "im2col + gemm"},
  };
  for (size_t i = 0; i < records.size(); ++i) {
    CAPTURE(i);
    CHECK(std::array<std::string, 4>{records[i].op, records[i].pass, records[i].shape, records[i].route} == want[i]);
    CHECK(records[i].calls == 1);
    CHECK(records[i].ms >= 0);
    CHECK(records[i].flops == (i < 3 ? conv_flops : transpose_flops));
  }
  // float32 names the route its dispatch chose: the direct kernel's tile where that applies.
  ops::reset_conv_profile();
  ops::set_conv_profiling(true);
  const Tensor f = randn({1, 16, 20, 32}), fw = randn({16, 16, 3, 3});
  (void)ops::conv2d(f, fw, Tensor(), {1, 1});
  ops::set_conv_profiling(false);
  const auto f32 = ops::conv_profile();
  REQUIRE(f32.size() == 1);
  cpu::ConvGeometry g;
  g.batch = 1, g.in_channels = 16, g.in_h = 20, g.in_w = 32, g.out_channels = 16, g.kernel_h = g.kernel_w = 3;
  g.stride = ops::Size2(1), g.padding = ops::Size2(1), g.dilation = ops::Size2(1), g.out_h = 20, g.out_w = 32;
  if (cpu::direct_conv_forward(g)) CHECK(f32[0].route == "direct " + cpu::direct_conv_tile(g));
  else CHECK(f32[0].route == (cpu::cpu_has_avx2_fma() ? "gemm, implicit im2col" : "im2col + gemm"));
  if (cpu::cpu_has_avx2_fma()) {
    // With AVX2 tiles only, forward convs with more than 64 output channels per group run the
    // implicit GEMM (bench_conv_flat_tiles gemm on Zen 3: as fast or faster from 128 channels, the
    // direct kernel ahead with 64), and so do the flipped-kernel convolutions of their stride-1
    // input gradients (bench_conv_flat_tiles rules; this geometry is its own flipped convolution).
    cpu::ConvGeometry wide = g;
    wide.batch = 4, wide.in_h = wide.out_h = 32, wide.in_w = wide.out_w = 24;
    for (const bool avx512 : {true, false}) {
      if (avx512 && !__builtin_cpu_supports("avx512f")) continue;
      CAPTURE(avx512);
      cpu::allow_avx512(avx512);
      for (const int64_t channels : {64, 128}) {
        CAPTURE(channels);
        wide.in_channels = wide.out_channels = channels;
        CHECK(cpu::direct_conv_applies(wide));
        CHECK(cpu::direct_conv_forward(wide) == (avx512 || channels == 64));
        CHECK(cpu::direct_input_grad(wide) == (avx512 || channels == 64));
      }
    }
    cpu::allow_avx512(true);
  }
  // Stride-1 input gradients: maps 6 wide, which the direct kernel leaves (too many idle lanes),
  // run weight^T @ dout over the batch + col2im, not the flipped kernel through the GEMM; so do
  // maps 7 wide (flat tiles) when dout has >= 128 channels, while with 64 the direct kernel runs.
  struct RouteCase {
    int64_t channels, width;
    bool direct_if_it_applies;
  };
  for (const RouteCase& c : std::vector<RouteCase>{{32, 6, false}, {128, 7, false}, {64, 7, true}}) {
    CAPTURE(c.channels);
    CAPTURE(c.width);
    ops::reset_conv_profile();
    ops::set_conv_profiling(true);
    const Tensor narrow = randn({4, c.channels, 8, c.width}).set_requires_grad(true);
    autograd::backward(ops::sum(ops::conv2d(narrow, randn({c.channels, c.channels, 3, 3}), Tensor(), {1, 1})));
    ops::set_conv_profiling(false);
    const auto narrow_records = ops::conv_profile();
    REQUIRE(narrow_records.size() == 2);
    const auto input_grad = narrow_records[0].pass == "input grad" ? narrow_records[0] : narrow_records[1];
    CHECK(input_grad.pass == "input grad");
    g.batch = 4, g.in_channels = g.out_channels = c.channels, g.in_h = g.out_h = 8, g.in_w = g.out_w = c.width;
    if (c.direct_if_it_applies && cpu::direct_conv_applies(g))
      CHECK(input_grad.route == "conv of dout with the flipped kernel > direct " + cpu::direct_conv_tile(g));
    else
      CHECK(input_grad.route == (cpu::cpu_has_avx2_fma() ? "gemm over the batch + col2im" : "gemm + col2im"));
  }
  ops::reset_conv_profile();
  CHECK(ops::conv_profile().empty());
}

TEST_CASE("conv2d: the implicit-im2col forward and weight gradient agree with float64 on padded, strided, dilated, grouped maps") {
  // The packed GEMM gathers its B slivers from a copy of the input with the zero border written
  // out (from x itself without padding); columns span several images on small maps. float64 runs
  // explicit im2col + Eigen, an independent path. The direct and framed kernels are switched off,
  // so every case runs the GEMM, whatever kernels this CPU has.
  struct GemmRoutesOnly {
    GemmRoutesOnly() { cpu::allow_direct_conv(false), cpu::allow_framed_weight_grad(false); }
    ~GemmRoutesOnly() { cpu::allow_direct_conv(true), cpu::allow_framed_weight_grad(true); }
  } gemm_routes_only;
  struct Case {
    Shape x, w;
    ops::Conv2dOptions options;
  };
  const std::vector<Case> cases = {
      {{4, 16, 8, 6}, {16, 16, 3, 3}, {1, 1, 1, 1}},                // layer4's 8 x 6 maps, images merged
      {{3, 6, 7, 9}, {4, 3, 3, 2}, {{2, 1}, {2, 1}, {1, 2}, 2}},    // strides, paddings, dilations per axis, groups
      {{2, 5, 4, 3}, {4, 5, 1, 1}, {1, 1, 1, 1}},                   // 1x1 with padding: a border of bias-only pixels
      {{3, 5, 4, 3}, {4, 5, 1, 1}, {1, 0, 1, 1}},                   // 1x1 stride 1 merged over images: read from x
      {{2, 3, 640, 12}, {4, 3, 1, 1}, {2, 1, 1, 1}},                // 1x1 stride 2 on 321 x 7 planes: one image per GEMM
      {{2, 4, 6, 40}, {4, 2, 3, 3}, {1, {1, 2}, {1, 2}, 2}},        // 40-pixel rows: slivers within one row, copied whole
      {{4, 16, 8, 6}, {16, 8, 3, 3}, {1, 1, 1, 2}},                 // 8 x 6 maps, two groups
      {{4, 32, 16, 12}, {192, 32, 3, 3}, {1, 1, 1, 1}},             // 192 channels x 768 pixels: bias fill and the
                                                                    // copy out of staging run in several chunks
  };
  uint64_t seed = 900;
  for (const Case& c : cases) {
    CAPTURE(shape_str(c.x));
    CAPTURE(shape_str(c.w));
    const Tensor x = leaf(c.x, ++seed), w = leaf(c.w, ++seed), b = leaf({c.w[0]}, ++seed);
    const Tensor w32 = ops::to(w.detach(), kFloat32).set_requires_grad(true);
    const Tensor reference = ops::conv2d(x, w, b, c.options);
    const Tensor dout = leaf(reference.sizes(), ++seed).detach();
    autograd::backward(reference, dout);
    ops::reset_conv_profile();
    ops::set_conv_profiling(true);
    const Tensor y = ops::conv2d(ops::to(x.detach(), kFloat32), w32, ops::to(b.detach(), kFloat32), c.options);
    autograd::backward(y, ops::to(dout, kFloat32));
    ops::set_conv_profiling(false);
    const auto records = ops::conv_profile();
    REQUIRE(records.size() == 2);  // x needs no gradient: forward and weight grad
    for (const auto& record : records) {
      CAPTURE(record.pass);
      if (cpu::cpu_has_avx2_fma()) CHECK(record.route == "gemm, implicit im2col");
    }
    REQUIRE(y.sizes() == reference.sizes());
    // Sums of at most 289 products of N(0, 1) values: float32 rounding stays far below 1e-4; the
    // weight gradient sums up to 2 x 2247 of them.
    CHECK(test::max_abs_diff(ops::to(y, kFloat64), reference) < 1e-4);
    CHECK(test::max_abs_diff(ops::to(w32.grad(), kFloat64), w.grad()) < 1e-3);
  }
  ops::reset_conv_profile();
}
