// cat, stack, split.
#include "tests/helpers.h"

using namespace mrcnn;
using test::expect_gradcheck;
using test::leaf;
using test::values;
using V = std::vector<Tensor>;

TEST_CASE("join: cat, stack and split values and shapes") {
  const Tensor a = from_vector<double>({1, 2, 3, 4}, {2, 2}), b = from_vector<double>({5, 6}, {2, 1});
  CHECK(values(ops::cat({a, b}, 1)) == std::vector<double>{1, 2, 5, 3, 4, 6});
  CHECK(ops::cat({a, zeros({0, 2}, kFloat64)}, 0).sizes() == Shape{2, 2});
  const Tensor s = ops::stack({a, a}, 1);
  CHECK(s.sizes() == Shape{2, 2, 2});
  CHECK(values(s) == std::vector<double>{1, 2, 1, 2, 3, 4, 3, 4});
  const auto pieces = ops::split(arange(0, 7, 1, kFloat64), 3);
  REQUIRE(pieces.size() == 3);
  CHECK(values(pieces[2]) == std::vector<double>{6});
  const auto sized = ops::split(a, std::vector<int64_t>{1, 1}, 1);
  CHECK(values(sized[1]) == std::vector<double>{2, 4});
  CHECK(test::error_of([&] { ops::cat({a, ones({3, 3}, kFloat64)}, 1); }) ==
        "cat: tensor 1 has shape [3, 3], which does not match [2, 2] except in dim 1");
  CHECK(test::error_of([&] { ops::cat({a, ones({2, 1})}, 1); }) ==
        "cat: tensor 1 is float32 on cpu, tensor 0 is float64 on cpu");
  CHECK(test::error_of([&] { ops::split(a, std::vector<int64_t>{1, 2}, 0); }) ==
        "split: sizes [1, 2] sum to 3 but dim 0 of [2, 2] has 2");
}

TEST_CASE("gradcheck: cat, stack, split") {
  expect_gradcheck([](const V& in) { return ops::cat({in[0], in[1], in[0]}, 1); }, {leaf({2, 3}, 61), leaf({2, 1}, 62)});
  expect_gradcheck([](const V& in) { return ops::cat({in[0], in[1]}, 0); },
                   {test::noncontiguous_leaf({2, 3}, 63), leaf({1, 3}, 64)});
  expect_gradcheck([](const V& in) { return ops::stack({in[0], in[1]}, 2); }, {leaf({2, 3}, 65), leaf({2, 3}, 66)});
  expect_gradcheck([](const V& in) {
    const auto parts = ops::split(in[0], 2, 1);
    return parts[0] * parts[1] + parts[2];  // [2,2] * [2,2] + [2,1]
  }, {leaf({2, 5}, 67)});
}
