// softmax / log_softmax: values, stability at large logits, gradchecks on every dim.
#include <cmath>

#include "tests/helpers.h"

using namespace mrcnn;
using test::expect_gradcheck;
using test::leaf;
using test::values;
using V = std::vector<Tensor>;

TEST_CASE("softmax: values and stability") {
  const auto s = values(ops::softmax(from_vector<double>({1, 2, 3}, {3}), 0));
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  CHECK(s[0] == doctest::Approx(std::exp(1.0) / z).epsilon(1e-14));
  CHECK(s[2] == doctest::Approx(std::exp(3.0) / z).epsilon(1e-14));
  const auto big = values(ops::log_softmax(from_vector<float>({1000, 0}, {2}), 0));
  CHECK(big[0] == doctest::Approx(0.0));
  CHECK(big[1] == doctest::Approx(-1000.0));
  const auto cols = values(ops::softmax(ops::reshape(arange(0, 6, 1, kFloat64), {2, 3}), 0));
  CHECK(cols[0] + cols[3] == doctest::Approx(1.0));
}

TEST_CASE("gradcheck: softmax and log_softmax") {
  const Tensor x = leaf({2, 3, 4}, 81);
  for (int64_t dim : {0, 1, 2}) {
    expect_gradcheck([dim](const V& in) { return ops::softmax(in[0], dim); }, {x});
    expect_gradcheck([dim](const V& in) { return ops::log_softmax(in[0], dim); }, {x});
  }
  expect_gradcheck([](const V& in) { return ops::softmax(in[0], -1); }, {test::noncontiguous_leaf({3, 5}, 82)});
}

TEST_CASE("cuda: softmax and log_softmax match the CPU") {
  if (test::setup_cuda_or_skip("softmax on CUDA")) return;
  // Same lane loop; exp/log of libdevice vs glibc differ by an ulp or two: 1e-14 (f64), 1e-6 (f32).
  test::expect_cuda_matches_cpu([](const V& v) { return ops::softmax(v[0], 1); }, {leaf({4, 7}, 1)}, 1e-14);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::log_softmax(v[0], 0); }, {leaf({5, 3, 2}, 2)}, 1e-14);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::log_softmax(v[0], -1); }, {test::noncontiguous_leaf({3, 6}, 3)}, 1e-14);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::softmax(v[0], 1); }, {ops::to(leaf({8, 91}, 4), kFloat32)}, 1e-6);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::softmax(v[0], 1); }, {leaf({0, 5}, 5)}, 0.0);
  test::expect_cuda_gradcheck([](const V& v) { return ops::log_softmax(v[0], 1); }, {leaf({3, 4}, 6)});
}
