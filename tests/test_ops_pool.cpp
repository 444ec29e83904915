// max_pool2d: hand-computed windows, padding/ceil-mode/dilation sizes, NaN propagation, gradchecks.
#include <cmath>
#include <limits>

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
