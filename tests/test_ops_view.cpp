// Views and copies: shapes, shared storage, gradchecks through views, errors.
#include "tests/helpers.h"

using namespace mrcnn;
using test::expect_gradcheck;
using test::leaf;
using test::values;
using V = std::vector<Tensor>;

TEST_CASE("view: reshape, permute, transpose, narrow, slice, expand, squeeze share storage") {
  const Tensor x = arange(0, 24, 1, kFloat64);
  const Tensor r = ops::reshape(x, {2, -1, 4});
  CHECK(r.sizes() == Shape{2, 3, 4});
  CHECK(r.storage() == x.storage());
  const Tensor p = ops::permute(r, {2, 0, 1});
  CHECK(p.sizes() == Shape{4, 2, 3});
  CHECK(p.strides() == Shape{1, 12, 4});
  CHECK(values(ops::narrow(r, 1, 1, 1)) == std::vector<double>{4, 5, 6, 7, 16, 17, 18, 19});
  CHECK(values(ops::slice(x, 0, 1, 10, 4)) == std::vector<double>{1, 5, 9});
  CHECK(values(ops::slice(x, 0, -3, 100)) == std::vector<double>{21, 22, 23});
  CHECK(values(ops::select(r, 2, -1)) == std::vector<double>{3, 7, 11, 15, 19, 23});
  const Tensor e = ops::expand(from_vector<double>({1, 2}, {2, 1}), {3, 2, 4});
  CHECK(e.strides() == Shape{0, 1, 0});
  CHECK(values(ops::sum(e)).at(0) == 36);
  CHECK(ops::unsqueeze(x, 0).sizes() == Shape{1, 24});
  CHECK(ops::unsqueeze(x, -1).sizes() == Shape{24, 1});
  CHECK(ops::squeeze(zeros({1, 3, 1})).sizes() == Shape{3});
  CHECK(ops::squeeze(zeros({1, 3, 1}), 2).sizes() == Shape{1, 3});
  CHECK(ops::flatten(zeros({2, 3, 4}), 1).sizes() == Shape{2, 12});
  CHECK(ops::transpose(r, 0, 2).sizes() == Shape{4, 3, 2});
  // reshape of a non-contiguous view copies; contiguous() of a contiguous tensor does not.
  CHECK(ops::reshape(p, {-1}).storage() != x.storage());
  CHECK(values(ops::reshape(p, {-1}))[1] == 4);  // p[0][0][1] = r[0][1][0]
  CHECK(ops::contiguous(x).storage() == x.storage());
}

TEST_CASE("view: errors name the op and shapes") {
  CHECK(test::error_of([] { ops::reshape(zeros({2, 3}), {4, -1}); }) ==
        "reshape: shape [4, -1] is invalid for input of shape [2, 3]");
  CHECK(test::error_of([] { ops::view(ops::transpose(zeros({2, 3}), 0, 1), {6}); }) ==
        "view: input of shape [3, 2] with strides [1, 3] is not contiguous; use reshape");
  CHECK(test::error_of([] { ops::expand(zeros({2}), {3, 3}); }) == "expand: cannot expand shape [2] to [3, 3]");
  CHECK(test::error_of([] { ops::narrow(zeros({4}), 0, 2, 3); }) == "narrow: [2, 5) is out of range for dim 0 of shape [4]");
  CHECK(test::error_of([] { ops::permute(zeros({2, 3}), {0, 0}); }) == "permute: dim 0 repeated in [0, 0]");
}

TEST_CASE("gradcheck: views") {
  const Tensor x = leaf({2, 3, 4}, 21);
  expect_gradcheck([](const V& in) { return ops::reshape(in[0], {4, 6}) * 2.0; }, {x});
  expect_gradcheck([](const V& in) { return ops::permute(in[0], {1, 2, 0}) * 2.0; }, {x});
  expect_gradcheck([](const V& in) { return ops::transpose(in[0], 0, 2) * 2.0; }, {x});
  expect_gradcheck([](const V& in) { return ops::narrow(in[0], 2, 1, 2) * 2.0; }, {x});
  expect_gradcheck([](const V& in) { return ops::slice(in[0], 2, 0, 4, 3) * 2.0; }, {x});
  expect_gradcheck([](const V& in) { return ops::select(in[0], 1, 2) * 2.0; }, {x});
  expect_gradcheck([](const V& in) { return ops::unsqueeze(in[0], 1) * 2.0; }, {x});
  expect_gradcheck([](const V& in) { return ops::flatten(in[0]) * 2.0; }, {x});
  expect_gradcheck([](const V& in) { return ops::contiguous(ops::permute(in[0], {2, 0, 1})) * 2.0; }, {x});
  expect_gradcheck([](const V& in) { return ops::clone(in[0]) * 2.0; }, {x});
  const Tensor col = leaf({3, 1}, 22);
  expect_gradcheck([](const V& in) { return ops::expand(in[0], {2, 3, 5}) * 2.0; }, {col});
  expect_gradcheck([](const V& in) { return ops::squeeze(in[0]) * 2.0; }, {col});
  expect_gradcheck([](const V& in) { return ops::to(ops::to(in[0], kFloat32), kFloat64) * 2.0; }, {leaf({3}, 23, 0.0, 0.5)},
                   // A step of 2^-10 keeps 0.5 +- step exact in float32, so the numeric side is exact; the
                   // analytic gradient crosses the float32 section and carries its rounding (6e-8 relative).
                   {1.0 / 1024, 1e-12, 1e-6, 1});
}
