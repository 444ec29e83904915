// Losses against hand-computed values (PyTorch's definitions) and gradchecks.
#include <cmath>

#include "tests/helpers.h"

using namespace mrcnn;
using ops::Reduction;
using test::expect_gradcheck;
using test::leaf;
using test::values;
using V = std::vector<Tensor>;

TEST_CASE("loss: values") {
  const Tensor logits = from_vector<double>({2, 0, 0, 0, 1, 3}, {2, 3});
  const Tensor target = from_vector<int64_t>({0, 2}, {2});
  const double l0 = -(2 - std::log(std::exp(2.0) + 2)), l1 = -(3 - std::log(1 + std::exp(1.0) + std::exp(3.0)));
  CHECK(ops::cross_entropy(logits, target).item<double>() == doctest::Approx((l0 + l1) / 2).epsilon(1e-14));
  CHECK(ops::cross_entropy(logits, target, Reduction::Sum).item<double>() == doctest::Approx(l0 + l1).epsilon(1e-14));

  const Tensor x = from_vector<double>({-1, 0, 2, 50}, {4}), y = from_vector<double>({0, 1, 1, 0}, {4});
  const auto bce = values(ops::binary_cross_entropy_with_logits(x, y, Reduction::None));
  CHECK(bce[0] == doctest::Approx(std::log(1 + std::exp(-1.0))).epsilon(1e-14));
  CHECK(bce[1] == doctest::Approx(std::log(2.0)).epsilon(1e-14));
  CHECK(bce[2] == doctest::Approx(std::log(1 + std::exp(-2.0))).epsilon(1e-14));
  CHECK(bce[3] == doctest::Approx(50.0).epsilon(1e-14));  // no overflow

  const Tensor a = from_vector<double>({0, 0.05, 1, -2}, {4}), b = zeros({4}, kFloat64);
  const double beta = 1.0 / 9;
  const auto sl1 = values(ops::smooth_l1_loss(a, b, beta, Reduction::None));
  CHECK(sl1[1] == doctest::Approx(0.5 * 0.05 * 0.05 / beta).epsilon(1e-14));
  CHECK(sl1[2] == doctest::Approx(1 - 0.5 * beta).epsilon(1e-14));
  CHECK(ops::smooth_l1_loss(a, b, beta, Reduction::Sum).item<double>() == doctest::Approx(sl1[1] + sl1[2] + sl1[3]));
  CHECK(ops::l1_loss(a, b).item<double>() == doctest::Approx(3.05 / 4));
  CHECK(ops::smooth_l1_loss(a, b, 0.0).item<double>() == doctest::Approx(3.05 / 4));
  CHECK(test::error_of([&] { ops::cross_entropy(logits, from_vector<int64_t>({0, 3}, {2})); }) ==
        "cross_entropy: target 3 at position 1 is out of range for 3 classes");
  CHECK(test::error_of([&] { ops::l1_loss(a, zeros({3}, kFloat64)); }) ==
        "l1_loss: input [4] and target [3] must have the same shape");
}

TEST_CASE("gradcheck: losses") {
  const Tensor target = from_vector<int64_t>({1, 0, 3}, {3});
  expect_gradcheck([&](const V& in) { return ops::cross_entropy(in[0], target); }, {leaf({3, 4}, 91)});
  expect_gradcheck([&](const V& in) { return ops::cross_entropy(in[0], target, Reduction::Sum); },
                   {test::noncontiguous_leaf({3, 4}, 92)});
  Generator g(93);
  const Tensor y = rand({2, 5}, kFloat64, kCPU, &g);
  expect_gradcheck([&](const V& in) { return ops::binary_cross_entropy_with_logits(in[0], y); }, {leaf({2, 5}, 94)});
  expect_gradcheck([](const V& in) { return ops::binary_cross_entropy_with_logits(in[0], in[1], Reduction::Sum); },
                   {leaf({2, 5}, 95), leaf({2, 5}, 96)});
  for (double beta : {1.0 / 9, 1.0, 0.0})
    expect_gradcheck([beta](const V& in) { return ops::smooth_l1_loss(in[0], in[1], beta, Reduction::Sum); },
                     {leaf({3, 4}, 97), leaf({3, 4}, 98)});
  expect_gradcheck([](const V& in) { return ops::l1_loss(in[0], in[1]); }, {leaf({3, 4}, 99), leaf({3, 4}, 100)});
}

TEST_CASE("cuda: losses match the CPU") {
  if (test::setup_cuda_or_skip("losses on CUDA")) return;
  const Tensor classes = from_vector<int64_t>({0, 2, 1, 4, 4, 3}, {6});
  const Tensor targets = from_vector<double>({0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 1}, {3, 4});
  // O(1) sums of a few log/exp terms: 1e-13 in float64.
  test::expect_cuda_matches_cpu([&](const V& v) { return ops::cross_entropy(v[0], ops::to(classes, v[0].device())); },
                                {leaf({6, 5}, 1)}, 1e-13);
  test::expect_cuda_matches_cpu(
      [&](const V& v) { return ops::binary_cross_entropy_with_logits(v[0], ops::to(targets, v[0].device()), Reduction::Sum); },
      {leaf({3, 4}, 2)}, 1e-13);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::smooth_l1_loss(v[0], v[1], 1.0 / 9, Reduction::Sum); },
                                {leaf({5, 4}, 3), leaf({5, 4}, 4)}, 1e-13);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::l1_loss(v[0], v[1]); }, {leaf({5, 4}, 5), leaf({5, 4}, 6)}, 1e-13);
  test::expect_cuda_gradcheck([&](const V& v) { return ops::cross_entropy(v[0], ops::to(classes, test::gpu())); }, {leaf({6, 5}, 7)});
  // Classes the caller holds on the host go with CUDA logits as they are (no download for the check).
  test::expect_cuda_matches_cpu([&](const V& v) { return ops::cross_entropy(v[0], classes); }, {leaf({6, 5}, 8)}, 1e-13);
  CHECK(test::error_of([] { ops::cross_entropy(zeros({2, 3}, kFloat32, test::gpu()), from_vector<int64_t>({0, -1}, {2})); }) ==
        "cross_entropy: target -1 at position 1 is out of range for 3 classes");
  CHECK(test::error_of([] {
          ops::cross_entropy(zeros({2, 3}, kFloat32, test::gpu()), ops::to(from_vector<int64_t>({0, 3}, {2}), test::gpu()));
        }) == "cross_entropy: target 3 at position 1 is out of range for 3 classes");
}
