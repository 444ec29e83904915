// Elementwise ops: forward values, gradchecks (plain, broadcast, non-contiguous), error messages,
// and CPU-vs-CUDA parity (skipped without a device).
#include <cmath>
#include <iostream>

#include "cuda/context.h"
#include "tests/helpers.h"

using namespace mrcnn;
using test::expect_gradcheck;
using test::leaf;
using test::values;
using V = std::vector<Tensor>;

namespace {
Tensor vec(std::vector<double> v) { return from_vector<double>(v, {static_cast<int64_t>(v.size())}); }
}  // namespace

TEST_CASE("elementwise: forward values") {
  const Tensor a = vec({-2, -0.5, 0, 1.5}), b = vec({1, 2, 4, -3});
  CHECK(values(a + b) == std::vector<double>{-1, 1.5, 4, -1.5});
  CHECK(values(a - b) == std::vector<double>{-3, -2.5, -4, 4.5});
  CHECK(values(a * b) == std::vector<double>{-2, -1, 0, -4.5});
  CHECK(values(a / b) == std::vector<double>{-2, -0.25, 0, -0.5});
  CHECK(values(-a) == std::vector<double>{2, 0.5, 0, -1.5});
  CHECK(values(ops::relu(a)) == std::vector<double>{0, 0, 0, 1.5});
  CHECK(values(ops::abs(a)) == std::vector<double>{2, 0.5, 0, 1.5});
  CHECK(values(ops::sign(a)) == std::vector<double>{-1, -1, 0, 1});
  CHECK(values(ops::maximum(a, b)) == std::vector<double>{1, 2, 4, 1.5});
  CHECK(values(ops::minimum(a, b)) == std::vector<double>{-2, -0.5, 0, -3});
  CHECK(values(ops::clamp(a, -1.0, 1.0)) == std::vector<double>{-1, -0.5, 0, 1});
  CHECK(values(ops::clamp(a, std::nullopt, 0.0)) == std::vector<double>{-2, -0.5, 0, 0});
  CHECK(values(ops::pow(b, 2)) == std::vector<double>{1, 4, 16, 9});
  CHECK(values(ops::sqrt(vec({4, 9}))) == std::vector<double>{2, 3});
  CHECK(values(ops::exp(vec({0, 1})))[1] == doctest::Approx(std::exp(1.0)));
  CHECK(values(ops::log(vec({1, std::exp(2.0)})))[1] == doctest::Approx(2.0));
  CHECK(values(ops::sigmoid(vec({0, -800, 800}))) == std::vector<double>{0.5, 0, 1});  // no overflow
  CHECK(values(ops::tanh(vec({0})))[0] == 0);
  CHECK(values(ops::where(ops::gt(a, 0.0), a, b)) == std::vector<double>{1, 2, 4, 1.5});
  CHECK(to_vector<uint8_t>(ops::ge(a, 0.0)) == std::vector<uint8_t>{0, 0, 1, 1});
  CHECK(to_vector<uint8_t>(ops::eq(a, b)) == std::vector<uint8_t>{0, 0, 0, 0});
  CHECK(to_vector<uint8_t>(ops::lt(arange(3), arange(1, 4, 1))) == std::vector<uint8_t>{1, 1, 1});
}

TEST_CASE("elementwise: broadcasting follows PyTorch") {
  const Tensor col = from_vector<double>({1, 2}, {2, 1});
  const Tensor row = from_vector<double>({10, 20, 30}, {3});
  const Tensor out = col + row;
  CHECK(out.sizes() == Shape{2, 3});
  CHECK(values(out) == std::vector<double>{11, 21, 31, 12, 22, 32});
  CHECK((scalar_tensor(2, kFloat64) * row).sizes() == Shape{3});
  CHECK((zeros({0, 3}, kFloat64) + row).sizes() == Shape{0, 3});
}

TEST_CASE("elementwise: mismatches name the op, shapes and dtypes") {
  CHECK(test::error_of([] { ones({2, 3}) + ones({4}); }) == "add: shapes [2, 3] and [4] cannot be broadcast together");
  CHECK(test::error_of([] { ones({2}) * ones({2}, kFloat64); }) ==
        "mul: dtype mismatch: [2] float32 and [2] float64");
  CHECK(test::error_of([] { ops::exp(ones({2}, kInt64)); }) ==
        "exp: expected a float32 or float64 tensor, got int64 of shape [2]");
  CHECK(test::error_of([] { ops::where(ones({2}), ones({2}), ones({2})); }) == "where: condition must be bool, got float32");
}

TEST_CASE("gradcheck: unary ops") {
  const Tensor x = leaf({3, 4}, 1);
  const Tensor positive = leaf({3, 4}, 2, 0.3, 2.0);  // away from 0 for log/sqrt/pow
  expect_gradcheck([](const V& in) { return ops::neg(in[0]); }, {x});
  expect_gradcheck([](const V& in) { return ops::exp(in[0]); }, {x});
  expect_gradcheck([](const V& in) { return ops::log(in[0]); }, {positive});
  expect_gradcheck([](const V& in) { return ops::sqrt(in[0]); }, {positive});
  expect_gradcheck([](const V& in) { return ops::abs(in[0]); }, {x});
  expect_gradcheck([](const V& in) { return ops::relu(in[0]); }, {x});
  expect_gradcheck([](const V& in) { return ops::sigmoid(in[0]); }, {x});
  expect_gradcheck([](const V& in) { return ops::tanh(in[0]); }, {x});
  expect_gradcheck([](const V& in) { return ops::pow(in[0], 3.0); }, {x});
  expect_gradcheck([](const V& in) { return ops::pow(in[0], -1.5); }, {positive});
  expect_gradcheck([](const V& in) { return ops::clamp(in[0], -0.5, 0.7); }, {x});
  expect_gradcheck([](const V& in) { return ops::clamp(in[0], 0.1, std::nullopt); }, {x});
  expect_gradcheck([](const V& in) { return ops::sign(in[0]); }, {x});
}

TEST_CASE("gradcheck: binary ops, same shape") {
  const Tensor a = leaf({2, 5}, 3), b = leaf({2, 5}, 4), away = leaf({2, 5}, 5, 0.5, 3.0);
  expect_gradcheck([](const V& in) { return in[0] + in[1]; }, {a, b});
  expect_gradcheck([](const V& in) { return in[0] - in[1]; }, {a, b});
  expect_gradcheck([](const V& in) { return in[0] * in[1]; }, {a, b});
  expect_gradcheck([](const V& in) { return in[0] / in[1]; }, {a, away});
  expect_gradcheck([](const V& in) { return ops::maximum(in[0], in[1]); }, {a, b});
  expect_gradcheck([](const V& in) { return ops::minimum(in[0], in[1]); }, {a, b});
  expect_gradcheck([](const V& in) { return ops::where(ops::gt(in[0], in[1]), in[0] * 2.0, in[1]); }, {a, b});
}

TEST_CASE("gradcheck: binary ops with broadcasting") {
  const Tensor a = leaf({3, 1, 4}, 6), b = leaf({2, 1}, 7), c = leaf({4}, 8, 0.5, 3.0);
  expect_gradcheck([](const V& in) { return in[0] + in[1]; }, {a, b});
  expect_gradcheck([](const V& in) { return in[0] - in[1]; }, {a, b});
  expect_gradcheck([](const V& in) { return in[0] * in[1]; }, {a, b});
  expect_gradcheck([](const V& in) { return in[0] / in[1]; }, {a, c});
  expect_gradcheck([](const V& in) { return ops::maximum(in[0], in[1]); }, {a, b});
  expect_gradcheck([](const V& in) { return ops::where(ops::gt(in[1], 0.0), in[0], in[1]); }, {a, b});
  expect_gradcheck([](const V& in) { return in[0] * 3.0 + 1.0; }, {a});
}

TEST_CASE("gradcheck: elementwise ops on non-contiguous inputs") {
  const Tensor a = test::noncontiguous_leaf({3, 4}, 9), b = test::noncontiguous_leaf({3, 4}, 10);
  expect_gradcheck([](const V& in) { return in[0] * in[1]; }, {a, b});
  expect_gradcheck([](const V& in) { return ops::tanh(in[0]) + in[1]; }, {a, b});
  expect_gradcheck([](const V& in) { return ops::exp(in[0]) / (ops::abs(in[1]) + 1.0); }, {a, b});
}

TEST_CASE("elementwise: ties in maximum split the gradient, like PyTorch") {
  Tensor a = vec({1, 2}).set_requires_grad(true), b = vec({1, 3}).set_requires_grad(true);
  autograd::backward(ops::sum(ops::maximum(a, b)));
  CHECK(values(a.grad()) == std::vector<double>{0.5, 0});
  CHECK(values(b.grad()) == std::vector<double>{0.5, 1});
}

// --- CUDA parity -----------------------------------------------------------------------------------


TEST_CASE("cuda: elementwise forward and backward match the CPU") {
  if (test::skip_without_cuda("elementwise on CUDA")) return;
  for (DType dtype : {kFloat32, kFloat64}) {
    Generator g(11);
    const Tensor a_cpu = copy_as(randn({7, 1, 33}, kFloat64, kCPU, &g), dtype, kCPU);
    const Tensor b_cpu = copy_as(randn({5, 33}, kFloat64, kCPU, &g), dtype, kCPU);
    // The outputs are O(10). float32 exp/log/tanh differ by a few ulp between glibc and CUDA's
    // libdevice (ulp at 10 is 1e-6), and FMA contraction on the GPU moves a product by one rounding:
    // 1e-5 absolute covers ten ulp. float64 ulp at 10 is 2e-15; 1e-12 leaves the same margin.
    const double tol = dtype == kFloat32 ? 1e-5 : 1e-12;
    auto run = [&](Device device) {
      Tensor a = ops::to(a_cpu, device).detach().set_requires_grad(true);
      Tensor b = ops::to(b_cpu, device).detach().set_requires_grad(true);
      Tensor y = ops::tanh(a) * ops::sigmoid(b) + ops::exp(ops::neg(ops::abs(a))) / (ops::relu(b) + 1.0) +
                 ops::maximum(a, b) - ops::clamp(ops::pow(b, 2.0), 0.1, 2.0) +
                 ops::where(ops::gt(a, b), ops::sqrt(ops::abs(b) + 1.0), ops::log(ops::abs(a) + 1.0));
      autograd::backward(ops::sum(y));
      return V{y, a.grad(), b.grad()};
    };
    const V cpu = run(kCPU), gpu = run(kCUDA);
    for (size_t i = 0; i < cpu.size(); ++i) CHECK(test::max_abs_diff(cpu[i], gpu[i]) <= tol);
  }
}

TEST_CASE("cuda: copies, fills and empty tensors round-trip") {
  if (test::skip_without_cuda("elementwise on CUDA")) return;
  const Tensor x = arange(0, 24, 1, kFloat64);
  const Tensor permuted = ops::permute(ops::reshape(x, {2, 3, 4}), {2, 0, 1});
  const Tensor on_gpu = ops::contiguous(ops::to(permuted, kCUDA));
  CHECK(values(on_gpu) == values(permuted));
  CHECK(values(full({3}, 7, kFloat32, kCUDA)) == std::vector<double>{7, 7, 7});
  CHECK(values(zeros({2}, kInt64, kCUDA)) == std::vector<double>{0, 0});
  CHECK((ops::exp(zeros({0, 4}, kFloat32, kCUDA))).sizes() == Shape{0, 4});
  const Tensor y = ops::add(ones({1000}, kFloat32, kCUDA), 1.0);
  CHECK(values(ops::sum(y)).at(0) == 2000);
}
