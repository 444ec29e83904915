// Reductions: values, keepdim, gradchecks, determinism of blocked sums.
#include "tests/helpers.h"

using namespace mrcnn;
using test::expect_gradcheck;
using test::leaf;
using test::values;
using V = std::vector<Tensor>;

TEST_CASE("reduce: sum, mean, max, min, argmax over dims with keepdim") {
  const Tensor x = ops::reshape(arange(0, 24, 1, kFloat64), {2, 3, 4});
  CHECK(values(ops::sum(x)) == std::vector<double>{276});
  CHECK(values(ops::sum(x, {1})) == std::vector<double>{12, 15, 18, 21, 48, 51, 54, 57});
  CHECK(ops::sum(x, {1}, true).sizes() == Shape{2, 1, 4});
  CHECK(values(ops::sum(x, {0, 2})) == std::vector<double>{60, 92, 124});
  CHECK(ops::sum(x, {2, 0}, true).sizes() == Shape{1, 3, 1});
  // Dims in two blocks of a 4-D non-contiguous input (reduced block by block, not copied permuted):
  // y[a][b][c][d] = x4[a][c][b][d], sum over (0, 2, 3) -> per b.
  const Tensor x4 = ops::reshape(arange(0, 120, 1, kFloat64), {2, 3, 4, 5});
  const Tensor y = ops::transpose(x4, 1, 2);  // [2, 4, 3, 5]
  std::vector<double> expected(4, 0.0);
  const auto xv = values(x4);
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t b = 0; b < 4; ++b)
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t d = 0; d < 5; ++d) expected[b] += xv[((a * 3 + c) * 4 + b) * 5 + d];
  CHECK(values(ops::sum(y, {0, 2, 3})) == expected);
  CHECK(ops::sum(y, {0, 2, 3}, true).sizes() == Shape{1, 4, 1, 1});
  CHECK(values(ops::mean(y, {3, 0})) == values(ops::div(ops::sum(y, {0, 3}), 10.0)));
  CHECK(values(ops::sum(x, {-1})) == std::vector<double>{6, 22, 38, 54, 70, 86});
  CHECK(values(ops::mean(x, {2})) == std::vector<double>{1.5, 5.5, 9.5, 13.5, 17.5, 21.5});
  CHECK(values(ops::mean(x)) == std::vector<double>{11.5});
  const auto m = ops::max(from_vector<double>({3, 7, 7, 1, -2, 0}, {2, 3}), 1);
  CHECK(values(m.values) == std::vector<double>{7, 1});
  CHECK(to_vector<int64_t>(m.indices) == std::vector<int64_t>{1, 0});  // the first of the tied 7s
  CHECK(to_vector<int64_t>(ops::argmin(from_vector<double>({3, 7, 7, 1, -2, 0}, {2, 3}), 0, true)) ==
        std::vector<int64_t>{1, 1, 1});
  CHECK(values(ops::max(x)) == std::vector<double>{23});
  CHECK(values(ops::min(x)) == std::vector<double>{0});
  CHECK(values(ops::sum(zeros({0, 3}, kFloat64), {0})) == std::vector<double>{0, 0, 0});
  CHECK(values(ops::sum_to(ones({2, 3, 4}, kFloat64), {3, 1})) == std::vector<double>{8, 8, 8});
  CHECK(test::error_of([] { ops::max(zeros({2, 0}), 1); }) == "max: cannot reduce over an empty dim of shape [2, 0]");
  CHECK(test::error_of([] { ops::sum(zeros({2}, kInt64)); }) == "sum: expected a float32 or float64 tensor, got int64");
}

TEST_CASE("reduce: long float32 sums are accurate (blocked summation)") {
  // 2^24 + many ones: a naive float running sum stalls at 2^24.
  const Tensor x = ones({1 << 22});
  CHECK(ops::sum(x).item<double>() == 4194304.0);
  CHECK(ops::mean(full({3000000}, 0.1)).item<double>() == doctest::Approx(0.1).epsilon(1e-5));
}

TEST_CASE("gradcheck: reductions") {
  const Tensor x = leaf({3, 4, 5}, 31);
  expect_gradcheck([](const V& in) { return ops::sum(in[0]); }, {x});
  expect_gradcheck([](const V& in) { return ops::sum(in[0], {1}); }, {x});
  expect_gradcheck([](const V& in) { return ops::sum(in[0], {0, 2}, true); }, {x});
  expect_gradcheck([](const V& in) { return ops::mean(in[0], {2}); }, {x});
  expect_gradcheck([](const V& in) { return ops::mean(in[0]); }, {x});
  expect_gradcheck([](const V& in) { return ops::max(in[0], 1).values; }, {x});
  expect_gradcheck([](const V& in) { return ops::min(in[0], 2, true).values; }, {x});
  expect_gradcheck([](const V& in) { return ops::max(in[0]); }, {x});
  expect_gradcheck([](const V& in) { return ops::sum(in[0], {1}); }, {test::noncontiguous_leaf({4, 6}, 32)});
  expect_gradcheck([](const V& in) { return ops::sum_to(in[0], {4, 1}); }, {leaf({2, 4, 3}, 33)});
}

TEST_CASE("cuda: reductions match the CPU") {
  if (test::setup_cuda_or_skip("reductions on CUDA")) return;
  // Sums of <= 35 O(1) terms in the same order per lane: 1e-13 (float64).
  test::expect_cuda_matches_cpu([](const V& v) { return ops::sum(v[0], {1}); }, {leaf({3, 5, 7}, 1)}, 1e-13);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::mean(v[0], {0, 2}, true); }, {leaf({3, 5, 7}, 2)}, 1e-13);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::sum(v[0]); }, {test::noncontiguous_leaf({4, 6}, 3)}, 1e-13);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::max(v[0], 1).values; }, {leaf({4, 9, 3}, 4)}, 0.0);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::min(v[0], 0, true).values; }, {leaf({6, 5}, 5)}, 0.0);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::argmax(v[0], 1); }, {leaf({4, 9, 3}, 6)}, 0.0);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::max(v[0]); }, {leaf({7, 3}, 7)}, 0.0);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::sum(v[0], {0}); }, {leaf({0, 4}, 8)}, 0.0);
  test::expect_cuda_gradcheck([](const V& v) { return ops::max(v[0], 1).values; }, {leaf({3, 6}, 9)});
}
