// Elementwise ops: forward values, gradchecks (plain, broadcast, non-contiguous), error messages,
// and CPU-vs-CUDA parity (skipped without a device).
#include <cmath>
#include <iostream>

#include "cuda/context.h"
#include "cuda/elementwise.h"
#include "cuda/packs.h"
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

namespace {
// relu_ on `device` leaves the bits relu returns (NaN, +-inf and -0 included), in x's own memory.
void expect_relu_in_place_equals_relu(Device device) {
  for (const DType dt : {kFloat32, kFloat64}) {
    std::vector<double> xs = test::values(test::leaf({3, 5, 7}, 9));
    xs[0] = std::nan(""), xs[1] = INFINITY, xs[2] = -INFINITY, xs[3] = -0.0, xs[4] = 0.0;
    const Tensor x = ops::to(ops::to(from_vector(xs, {3, 5, 7}), dt), device);
    const Tensor expected = ops::relu(x);
    const void* memory = x.raw_data();
    ops::relu_(x);
    CHECK(x.raw_data() == memory);
    CHECK(test::bitwise_equal(ops::to(x, kCPU), ops::to(expected, kCPU)));
  }
}
}  // namespace

TEST_CASE("relu_: relu in place, for inference only") {
  expect_relu_in_place_equals_relu(kCPU);
  ops::relu_(zeros({0, 3}));  // empty: nothing to do
  CHECK(test::error_of([] { ops::relu_(test::leaf({2, 2}, 1)); }) ==
        "relu_: x needs a gradient, and an in-place relu would overwrite what backward reads; use relu");
  {
    autograd::NoGradGuard no_grad;  // with grad mode off, a leaf's values may be overwritten
    const Tensor leaf = test::leaf({2, 2}, 1);
    ops::relu_(leaf);
    CHECK(test::values(leaf) == test::values(ops::relu(leaf)));
  }
  CHECK(test::error_of([] { ops::relu_(ops::transpose(zeros({2, 3}), 0, 1)); }) ==
        "relu_: x must be contiguous, got [3, 2] with strides [1, 3]");
  CHECK(test::error_of([] { ops::relu_(zeros({2}, kInt64)); }) == "relu_: expected a float32 or float64 tensor, got int64");
}

TEST_CASE("packed loop: every element exactly once, for any length, pack width and thread count") {
  // The contiguous CUDA kernels split work with this function; here it runs for every thread index.
  CHECK(cuda::pack_width<float>() == 4);
  CHECK(cuda::pack_width<double>() == 2);
  CHECK(cuda::pack_width<uint8_t, float>() == 4);   // compare: float inputs, bool output
  CHECK(cuda::pack_width<double, uint8_t>() == 2);  // copy uint8 -> float64
  CHECK(alignof(cuda::Pack<float, 4>) == 16);
  CHECK(alignof(cuda::Pack<uint8_t, 4>) == 4);
  auto check_cover = [](auto width_tag, int64_t n, int64_t threads) {
    constexpr int W = decltype(width_tag)::value;
    std::vector<int> visits(static_cast<size_t>(n), 0);
    for (int64_t t = 0; t < threads; ++t)
      cuda::packed_loop<W>(
          t, threads, n,
          [&](int64_t p) {
            for (int k = 0; k < W; ++k) ++visits[static_cast<size_t>(p * W + k)];
          },
          [&](int64_t i) { ++visits[static_cast<size_t>(i)]; });
    return std::all_of(visits.begin(), visits.end(), [](int v) { return v == 1; });
  };
  int cases = 0;
  for (int64_t n : {0, 1, 3, 4, 5, 15, 16, 17, 255, 256, 257, 1023, 4099})
    for (int64_t threads : {16, 32, 256, 512}) {
      CAPTURE(n);
      CAPTURE(threads);
      CHECK(check_cover(std::integral_constant<int, 2>{}, n, threads));
      CHECK(check_cover(std::integral_constant<int, 4>{}, n, threads));
      CHECK(check_cover(std::integral_constant<int, 16>{}, n, threads));
      ++cases;
    }
  CHECK(cases == 52);
}

// --- CUDA parity -----------------------------------------------------------------------------------


TEST_CASE("cuda: elementwise forward and backward match the CPU") {
  if (test::setup_cuda_or_skip("elementwise on CUDA")) return;
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
    const V cpu = run(kCPU), gpu = run(test::gpu());
    for (size_t i = 0; i < cpu.size(); ++i) CHECK(test::max_abs_diff(cpu[i], gpu[i]) <= tol);
  }
}

TEST_CASE("cuda: copies, fills and empty tensors round-trip") {
  if (test::setup_cuda_or_skip("elementwise on CUDA")) return;
  const Tensor x = arange(0, 24, 1, kFloat64);
  const Tensor permuted = ops::permute(ops::reshape(x, {2, 3, 4}), {2, 0, 1});
  const Tensor on_gpu = ops::contiguous(ops::to(permuted, test::gpu()));
  CHECK(values(on_gpu) == values(permuted));
  CHECK(values(full({3}, 7, kFloat32, test::gpu())) == std::vector<double>{7, 7, 7});
  CHECK(values(zeros({2}, kInt64, test::gpu())) == std::vector<double>{0, 0});
  CHECK((ops::exp(zeros({0, 4}, kFloat32, test::gpu()))).sizes() == Shape{0, 4});
  const Tensor y = ops::add(ones({1000}, kFloat32, test::gpu()), 1.0);
  CHECK(values(ops::sum(y)).at(0) == 2000);
  expect_relu_in_place_equals_relu(test::gpu());
}

TEST_CASE("cuda: packed contiguous kernels equal the strided ones and the CPU, tails and offsets included") {
  if (test::setup_real_cuda_or_skip("packed elementwise on CUDA")) return;
  for (DType dtype : {kFloat32, kFloat64}) {
    for (int64_t n : {1, 3, 4, 5, 17, 1001}) {
      CAPTURE(n);
      Generator g(static_cast<uint64_t>(n));
      const Tensor a_cpu = copy_as(randn({n + 1}, kFloat64, kCPU, &g), dtype, kCPU);
      const Tensor b_cpu = copy_as(randn({n + 1}, kFloat64, kCPU, &g), dtype, kCPU);
      const Tensor a_gpu = ops::to(a_cpu, test::gpu()), b_gpu = ops::to(b_cpu, test::gpu());
      // Offset 0 takes the packed kernels; offset 1 is off the 16-byte alignment and takes the
      // strided ones. The per-element functors are shared, so both equal each other bit for bit.
      for (int64_t offset : {0, 1}) {
        CAPTURE(offset);
        const Tensor a = ops::narrow(a_gpu, 0, offset, n), b = ops::narrow(b_gpu, 0, offset, n);
        const Tensor ac = ops::narrow(a_cpu, 0, offset, n), bc = ops::narrow(b_cpu, 0, offset, n);
        const V gpu{ops::tanh(a), ops::mul(a, b), ops::to(ops::gt(a, b), dtype), ops::to(ops::to(a, kFloat64), dtype)};
        const V cpu{ops::tanh(ac), ops::mul(ac, bc), ops::to(ops::gt(ac, bc), dtype), ops::to(ops::to(ac, kFloat64), dtype)};
        const double tol = dtype == kFloat32 ? 1e-6 : 1e-14;  // tanh: a few ulp between glibc and libdevice
        for (size_t i = 0; i < gpu.size(); ++i) {
          CAPTURE(i);
          CHECK(gpu[i].sizes() == Shape{n});
          CHECK(test::max_abs_diff(gpu[i], cpu[i]) <= tol);
        }
        if (offset == 1) {
          const V aligned{ops::tanh(ops::narrow(a_gpu, 0, 0, n + 1)), ops::mul(ops::narrow(a_gpu, 0, 0, n + 1), ops::narrow(b_gpu, 0, 0, n + 1))};
          CHECK(test::bitwise_equal(ops::narrow(aligned[0], 0, 1, n), gpu[0]));
          CHECK(test::bitwise_equal(ops::narrow(aligned[1], 0, 1, n), gpu[1]));
        }
      }
      Tensor filled = empty({n + 1}, dtype, test::gpu());
      cuda::fill(ops::narrow(filled, 0, 1, n), 3.5);  // off alignment: the element kernel
      cuda::fill(ops::narrow(filled, 0, 0, 1), -1.0);
      std::vector<double> expected(static_cast<size_t>(n + 1), 3.5);
      expected[0] = -1.0;
      CHECK(values(filled) == expected);
    }
  }
  // Large row sums take the packed, warp-shuffle reduction: a row of 4099 ones and a misaligned row.
  const Tensor ones_gpu = ones({3, 4099}, kFloat32, test::gpu());
  CHECK(values(ops::sum(ones_gpu, {1})) == std::vector<double>{4099, 4099, 4099});
  const Tensor shifted = ops::narrow(ones({4100}, kFloat32, test::gpu()), 0, 1, 4099);
  CHECK(values(ops::sum(shifted)) == std::vector<double>{4099});
}
