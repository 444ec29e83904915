// max_pool2d: hand-computed windows, padding/ceil-mode/dilation sizes, NaN propagation, gradchecks.
#include <cmath>
#include <limits>
#include <tuple>

#include "ops/pool.h"
#include "tests/helpers.h"

using namespace mrcnn;
using test::expect_gradcheck;
using test::leaf;
using V = std::vector<Tensor>;

TEST_CASE("max_pool2d: values, sizes and NaN") {
  const Tensor x = ops::reshape(arange(0, 16, 1, kFloat32), {1, 1, 4, 4});
  // ResNet stem pooling (3x3, stride 2, padding 1): windows centred on even pixels.
  CHECK(test::values(ops::max_pool2d(x, {3, 2, 1})) == std::vector<double>{5, 7, 13, 15});
  // FPN's LastLevelMaxPool: kernel 1, stride 2 just subsamples.
  CHECK(test::values(ops::max_pool2d(x, {1, 2, 0})) == std::vector<double>{0, 2, 8, 10});
  // ceil_mode adds the partial last window; dilation 2 spreads the taps.
  CHECK(ops::max_pool2d(ops::reshape(arange(0, 25, 1, kFloat32), {1, 1, 5, 5}), {2, 2, 0, 1, true}).sizes() ==
        Shape{1, 1, 3, 3});
  CHECK(test::values(ops::max_pool2d(x, {2, 1, 0, 2})) == std::vector<double>{10, 11, 14, 15});
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const auto with_nan = test::values(ops::max_pool2d(from_vector<float>({1, nan, 3, 2}, {1, 1, 2, 2}), {2}));
  CHECK(std::isnan(with_nan[0]));
  // Gradient goes to the first maximum of a tie, like PyTorch.
  const Tensor ties = from_vector<double>({4, 4, 4, 1}, {1, 1, 2, 2}).set_requires_grad(true);
  autograd::backward(ops::sum(ops::max_pool2d(ties, {2})));
  CHECK(test::values(ties.grad()) == std::vector<double>{1, 0, 0, 0});
}

namespace {

// The window scan PyTorch's CPU kernel does, one output at a time: rows then columns, a tap taking
// over when larger or NaN. Values and flat positions, for comparing the op against bit for bit.
void scan_max_pool(const std::vector<double>& x, int64_t planes, int64_t h, int64_t w, const ops::MaxPool2dOptions& o,
                   int64_t out_h, int64_t out_w, std::vector<double>& value, std::vector<int64_t>& position) {
  const ops::Size2 k = o.kernel_size, s = o.stride, p = o.padding, d = o.dilation;
  for (int64_t plane = 0; plane < planes; ++plane)
    for (int64_t oy = 0; oy < out_h; ++oy)
      for (int64_t ox = 0; ox < out_w; ++ox) {
        double best = -INFINITY;
        int64_t at = -1;
        for (int64_t ky = 0; ky < k.h; ++ky)
          for (int64_t kx = 0; kx < k.w; ++kx) {
            const int64_t y = oy * s.h - p.h + ky * d.h, xx = ox * s.w - p.w + kx * d.w;
            if (y < 0 || y >= h || xx < 0 || xx >= w) continue;
            const double v = x[(plane * h + y) * w + xx];
            if (at < 0) at = y * w + xx;  // the first in-bounds tap, if none takes over
            if (v > best || std::isnan(v)) best = v, at = y * w + xx;
          }
        value.push_back(best);
        position.push_back(at);
      }
}

}  // namespace

TEST_CASE("max_pool2d: the window scan's values and positions, ties, NaN and infinities included") {
  Generator g(77);
  int cases = 0;
  for (const auto& [kernel, stride, padding, dilation, ceil] :
       std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t, bool>>{{3, 2, 1, 1, false}, {1, 2, 0, 1, false},
                                                                       {2, 2, 0, 1, true},  {3, 1, 1, 1, false},
                                                                       {4, 3, 2, 1, true},  {3, 2, 1, 2, false},
                                                                       {2, 1, 1, 3, true},  {5, 2, 2, 1, false}})
    for (const DType dt : {kFloat32, kFloat64}) {
      const ops::MaxPool2dOptions o{kernel, stride, padding, dilation, ceil};
      CAPTURE(kernel);
      CAPTURE(stride);
      CAPTURE(padding);
      CAPTURE(dilation);
      CAPTURE(ceil);
      // Small integers: many ties. Some NaN, +-inf.
      std::vector<double> x = test::values(rand({2, 3, 11, 13}, kFloat64, kCPU, &g));
      for (double& v : x) v = std::floor(v * 4);
      for (size_t i = 0; i < x.size(); i += 17) x[i] = (i / 17) % 3 == 0 ? NAN : (i / 17) % 3 == 1 ? INFINITY : -INFINITY;
      const Tensor input = ops::to(from_vector(x, {2, 3, 11, 13}), dt).set_requires_grad(true);
      const Tensor out = ops::max_pool2d(input, o);
      const int64_t out_h = out.size(2), out_w = out.size(3);
      std::vector<double> value;
      std::vector<int64_t> position;
      scan_max_pool(x, 6, 11, 13, o, out_h, out_w, value, position);
      const auto got = test::values(out);
      REQUIRE(got.size() == value.size());
      int64_t value_mismatches = 0;
      for (size_t i = 0; i < got.size(); ++i)
        value_mismatches += !(got[i] == value[i] || (std::isnan(got[i]) && std::isnan(value[i])));
      CHECK(value_mismatches == 0);
      // Positions, through backward: each output's distinct gradient lands where the scan put it.
      std::vector<double> dout(value.size()), expected(x.size(), 0.0);
      for (size_t i = 0; i < dout.size(); ++i) dout[i] = static_cast<double>(i + 1);
      for (size_t i = 0; i < dout.size(); ++i) {
        const int64_t plane = static_cast<int64_t>(i) / (out_h * out_w);
        expected[static_cast<size_t>(plane * 11 * 13 + position[i])] += dout[i];
      }
      autograd::backward(out, ops::to(from_vector(dout, out.sizes()), dt));
      CHECK(test::values(input.grad()) == expected);
      ++cases;
    }
  CHECK(cases == 16);
}

TEST_CASE("gradcheck: max_pool2d") {
  // Random N(0,1) inputs have no ties, so the arg-max is stable under the finite-difference step.
  expect_gradcheck([](const V& in) { return ops::max_pool2d(in[0], {3, 2, 1}); }, {leaf({2, 3, 7, 6}, 501)});
  expect_gradcheck([](const V& in) { return ops::max_pool2d(in[0], {1, 2, 0}); }, {leaf({1, 2, 5, 5}, 502)});
  expect_gradcheck([](const V& in) { return ops::max_pool2d(in[0], {{3, 2}, {1, 2}, {1, 0}, 1, true}); },
                   {leaf({1, 2, 6, 7}, 503)});
  expect_gradcheck([](const V& in) { return ops::max_pool2d(in[0], {2, 1, 0, 2}); },
                   {test::noncontiguous_leaf({1, 2, 5, 6}, 504)});
}

TEST_CASE("max_pool2d: error messages") {
  CHECK(test::error_of([] { ops::max_pool2d(zeros({1, 1, 4, 4}), {3, 2, 2}); }) ==
        "max_pool2d: padding (2, 2) must be >= 0 and at most half the kernel size (3, 3)");
  CHECK(test::error_of([] { ops::max_pool2d(zeros({1, 1, 2, 2}), {3}); }) ==
        "max_pool2d: input [1, 1, 2, 2] is too small for kernel (3, 3) with padding (0, 0) and dilation (1, 1)");
  CHECK(test::error_of([] { ops::max_pool2d(zeros({4, 4}), {2}); }) ==
        "max_pool2d: expected a 4-D input [N, C, H, W], got shape [4, 4]");
}

TEST_CASE("cuda: max_pool2d matches the CPU") {
  if (test::setup_cuda_or_skip("max_pool2d on CUDA")) return;
  // Same window scan, same maxima: exact; gradients are single adds of dout (overlaps add the same
  // values in another order: float64 exact here since each pixel gets at most a few O(1) terms... 1e-14).
  test::expect_cuda_matches_cpu([](const V& v) { return ops::max_pool2d(v[0], {3, 2, 1}); }, {leaf({2, 3, 9, 8}, 1)}, 1e-14);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::max_pool2d(v[0], {1, 2, 0}); }, {leaf({1, 2, 5, 5}, 2)}, 0.0);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::max_pool2d(v[0], {{3, 2}, {1, 2}, {1, 0}, 1, true}); },
                                {test::noncontiguous_leaf({1, 2, 6, 7}, 3)}, 1e-14);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::max_pool2d(v[0], {2, 1, 0, 2}); },
                                {ops::to(leaf({1, 2, 5, 6}, 4), kFloat32)}, 1e-6);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::max_pool2d(v[0], {3, 2, 1}); }, {leaf({0, 3, 9, 8}, 5)}, 0.0);
  test::expect_cuda_gradcheck([](const V& v) { return ops::max_pool2d(v[0], {3, 2, 1}); }, {leaf({1, 2, 7, 6}, 6)});
}
