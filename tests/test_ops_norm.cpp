// batch_norm (train/eval, running statistics), frozen_batch_norm, group_norm, channel_affine:
// hand-computed values, running-stat updates, gradchecks, errors.
#include <algorithm>
#include <cmath>
#include <tuple>

#include "autograd/engine.h"
#include "ops/affine_kernels.h"
#include "ops/norm.h"
#include "tests/helpers.h"

using namespace mrcnn;
using test::expect_gradcheck;
using test::leaf;
using V = std::vector<Tensor>;

TEST_CASE("batch_norm: training statistics and running update") {
  // Channel 0 holds 1, 3, 5, 7 (mean 4, biased var 5, unbiased 20/3); channel 1 holds 2, 2, 2, 2.
  const Tensor x = ops::reshape(from_vector<double>({1, 3, 2, 2, 5, 7, 2, 2}, {8}), {2, 2, 1, 2});
  Tensor rm = from_vector<double>({0, 1}, {2}), rv = from_vector<double>({1, 1}, {2});
  const auto y = test::values(ops::batch_norm(x, rm, rv, Tensor(), Tensor(), true, 0.1, 1e-5));
  CHECK(y[0] == doctest::Approx(-3 / std::sqrt(5 + 1e-5)).epsilon(1e-12));
  CHECK(y[5] == doctest::Approx(3 / std::sqrt(5 + 1e-5)).epsilon(1e-12));
  CHECK(y[2] == 0);
  CHECK(test::values(rm) == std::vector<double>{0.4, 0.9 + 0.2});
  CHECK(test::values(rv)[0] == doctest::Approx(0.9 + 0.1 * 20.0 / 3).epsilon(1e-14));
  CHECK(test::values(rv)[1] == doctest::Approx(0.9).epsilon(1e-14));
  // eval uses the running statistics: (x - rm) / sqrt(rv + eps) * w + b.
  const auto e = test::values(ops::batch_norm(x, from_vector<double>({1, 2}, {2}), from_vector<double>({4, 9}, {2}),
                                              from_vector<double>({2, 3}, {2}), from_vector<double>({0.5, -1}, {2}),
                                              false, 0.1, 0.0));
  CHECK(e[1] == doctest::Approx((3 - 1) / 2.0 * 2 + 0.5));
  CHECK(e[2] == doctest::Approx((2 - 2) / 3.0 * 3 - 1));
}

TEST_CASE("frozen_batch_norm: torchvision's affine") {
  const Tensor x = ops::reshape(from_vector<float>({1, 2, 3, 4}, {4}), {1, 2, 2, 1});
  const auto y = test::values(ops::frozen_batch_norm(x, from_vector<float>({2, 1}, {2}), from_vector<float>({0, 1}, {2}),
                                                     from_vector<float>({1, 0}, {2}), from_vector<float>({4, 1}, {2})));
  // channel 0: scale 2 / sqrt(4 + 1e-5), shift -scale; channel 1: scale 1 / sqrt(1 + 1e-5), shift 1.
  const double s0 = 2 / std::sqrt(4 + 1e-5), s1 = 1 / std::sqrt(1 + 1e-5);
  CHECK(y[0] == doctest::Approx(1 * s0 - s0).epsilon(1e-6));
  CHECK(y[1] == doctest::Approx(2 * s0 - s0).epsilon(1e-6));
  CHECK(y[3] == doctest::Approx(4 * s1 + 1).epsilon(1e-6));
}

TEST_CASE("group_norm: values") {
  // One sample, 4 channels of 1 pixel, 2 groups: {1, 3} and {10, 20}.
  const Tensor x = ops::reshape(from_vector<double>({1, 3, 10, 20}, {4}), {1, 4, 1, 1});
  const auto y = test::values(ops::group_norm(x, 2, from_vector<double>({1, 2, 1, 1}, {4}),
                                              from_vector<double>({0, 0, 5, 0}, {4}), 0.0));
  const std::vector<double> expected{-1, 2, 4, 1};
  for (size_t i = 0; i < 4; ++i) CHECK(y[i] == doctest::Approx(expected[i]).epsilon(1e-14));
  // Each group of a random input is normalised to mean 0, variance 1 (no affine).
  const Tensor r = ops::group_norm(leaf({2, 6, 3, 3}, 701), 3, Tensor(), Tensor(), 0.0);
  const Tensor blocks = ops::reshape(r, {6, 18});
  for (double m : test::values(ops::mean(blocks, {1}))) CHECK(std::abs(m) < 1e-14);
  for (double v : test::values(ops::mean(ops::mul(blocks, blocks), {1}))) CHECK(v == doctest::Approx(1.0).epsilon(1e-12));
}

TEST_CASE("gradcheck: batch_norm, frozen_batch_norm, group_norm, channel_affine") {
  const Tensor x = leaf({3, 4, 2, 3}, 711), w = leaf({4}, 712), b = leaf({4}, 713);
  expect_gradcheck([](const V& in) { return ops::batch_norm(in[0], Tensor(), Tensor(), in[1], in[2], true); }, {x, w, b});
  expect_gradcheck([](const V& in) { return ops::batch_norm(in[0], Tensor(), Tensor(), Tensor(), Tensor(), true); },
                   {leaf({5, 3}, 714)});
  expect_gradcheck([](const V& in) { return ops::batch_norm(in[0], Tensor(), Tensor(), in[1], in[2], true); },
                   {test::noncontiguous_leaf({2, 4, 3, 2}, 715), w, b});
  const Tensor rm = leaf({4}, 716).detach(), rv = ops::add(ops::abs(leaf({4}, 717).detach()), 0.5);
  expect_gradcheck([rm, rv](const V& in) { return ops::batch_norm(in[0], rm, rv, in[1], in[2], false); }, {x, w, b});
  // Frozen BN: gradient to x; with the buffers requiring grad, to them as well (composed ops).
  expect_gradcheck([](const V& in) { return ops::frozen_batch_norm(in[0], in[1], in[2], in[3], in[4]); },
                   {x, w, b, leaf({4}, 718), ops::add(ops::abs(leaf({4}, 719).detach()), 0.5).set_requires_grad(true)});
  for (int64_t groups : {1, 2, 4}) {
    CAPTURE(groups);
    expect_gradcheck([groups](const V& in) { return ops::group_norm(in[0], groups, in[1], in[2]); }, {x, w, b});
  }
  expect_gradcheck([](const V& in) { return ops::group_norm(in[0], 2); }, {test::noncontiguous_leaf({2, 4, 3, 4}, 720)});
  expect_gradcheck([](const V& in) { return ops::channel_affine(in[0], in[1], in[2]); }, {x, w, b});
}

namespace {

// Forward output and every requested input gradient (of sum(out * dout)) of f, on x's device.
std::vector<Tensor> output_and_grads(const std::function<Tensor(const V&)>& f, const V& inputs, const Tensor& dout) {
  V in;
  for (const Tensor& t : inputs) in.push_back(t.requires_grad() ? t.detach().set_requires_grad(true) : t.detach());
  const Tensor out = f(in);
  autograd::backward(out, dout);
  std::vector<Tensor> results{out.detach()};
  for (const Tensor& t : in)
    if (t.requires_grad()) results.push_back(t.grad());
  return results;
}

// channel_affine_relu and frozen_batch_norm_relu against relu of the unfused op, bit for bit (on
// `device`): x with NaN, +-inf and +-0, a gradient with NaN and -0, only x needing a gradient (the
// fused backward pass) and all three.
void expect_fused_relu_bitwise(Device device) {
  for (const DType dt : {kFloat32, kFloat64}) {
    const std::string dtype = dtype_name(dt);
    CAPTURE(dtype);
    const double nan = std::nan(""), inf = INFINITY;
    std::vector<double> xs = test::values(leaf({2, 3, 4, 5}, 41));
    xs[0] = nan, xs[1] = inf, xs[2] = -inf, xs[3] = 0.0, xs[4] = -0.0, xs[7] = 1e-30;
    std::vector<double> ds = test::values(leaf({2, 3, 4, 5}, 42));
    ds[5] = nan, ds[6] = -0.0, ds[8] = -0.0;
    const Tensor x = ops::to(ops::to(from_vector(xs, {2, 3, 4, 5}), dt), device).set_requires_grad(true);
    const Tensor dout = ops::to(ops::to(from_vector(ds, {2, 3, 4, 5}), dt), device);
    Tensor scale = ops::to(ops::to(leaf({3}, 43), dt), device), shift = ops::to(ops::to(leaf({3}, 44), dt), device);
    // A residual with +-inf, -0 and NaN of its own, needing a gradient or not.
    std::vector<double> rs = test::values(leaf({2, 3, 4, 5}, 54));
    rs[9] = inf, rs[10] = -inf, rs[11] = -0.0, rs[12] = nan, rs[3] = -0.0;
    const Tensor residual_values = ops::to(ops::to(from_vector(rs, {2, 3, 4, 5}), dt), device);
    for (const int residual_kind : {0, 1, 2}) {  // none, without gradient, with gradient
      const Tensor residual = residual_kind == 0 ? Tensor() : residual_values.detach().set_requires_grad(residual_kind == 2);
      for (const bool all_grads : {false, true}) {
        CAPTURE(residual_kind);
        CAPTURE(all_grads);
        scale = scale.detach().set_requires_grad(all_grads), shift = shift.detach().set_requires_grad(all_grads);
        V inputs{x, scale, shift};
        if (residual.defined()) inputs.push_back(residual);
        const auto fused = output_and_grads(
            [](const V& v) { return ops::channel_affine_relu(v[0], v[1], v[2], v.size() > 3 ? v[3] : Tensor()); }, inputs, dout);
        const auto apart = output_and_grads(
            [](const V& v) {
              const Tensor y = ops::channel_affine(v[0], v[1], v[2]);
              return ops::relu(v.size() > 3 ? ops::add(y, v[3]) : y);
            },
            inputs, dout);
        REQUIRE(fused.size() == (all_grads ? 4u : 2u) + (residual_kind == 2 ? 1u : 0u));
        REQUIRE(fused.size() == apart.size());
        for (size_t i = 0; i < fused.size(); ++i) {
          CAPTURE(i);
          CHECK(fused[i].device() == device);
          CHECK(test::bitwise_equal(ops::to(fused[i], kCPU), ops::to(apart[i], kCPU)));
        }
        CHECK(std::isnan(test::values(ops::to(fused[0], kCPU))[0]));  // NaN stays NaN through relu
      }
    }
    {  // only the residual needs a gradient (x of a frozen stage)
      const V inputs{x.detach(), scale.detach(), shift.detach(), residual_values.detach().set_requires_grad(true)};
      const auto fused = output_and_grads([](const V& v) { return ops::channel_affine_relu(v[0], v[1], v[2], v[3]); }, inputs, dout);
      const auto apart = output_and_grads(
          [](const V& v) { return ops::relu(ops::add(ops::channel_affine(v[0], v[1], v[2]), v[3])); }, inputs, dout);
      REQUIRE(fused.size() == 2);
      REQUIRE(apart.size() == 2);
      CHECK(test::bitwise_equal(ops::to(fused[1], kCPU), ops::to(apart[1], kCPU)));
    }
    const Tensor mean = ops::to(ops::to(leaf({3}, 45), dt), device).detach();
    const Tensor var = ops::to(ops::to(leaf({3}, 46, 0.1, 1.0), dt), device).detach();
    const Tensor residual = residual_values.detach().set_requires_grad(true);
    const auto frozen = [&](bool fused_op, bool with_residual) {
      V inputs{x, scale.detach(), shift.detach()};
      if (with_residual) inputs.push_back(residual);
      return output_and_grads(
          [&](const V& v) {
            const Tensor r = v.size() > 3 ? v[3] : Tensor();
            if (fused_op) return ops::frozen_batch_norm_relu(v[0], v[1], v[2], mean, var, 1e-5, r);
            const Tensor y = ops::frozen_batch_norm(v[0], v[1], v[2], mean, var);
            return ops::relu(r.defined() ? ops::add(y, r) : y);
          },
          inputs, dout);
    };
    for (const bool with_residual : {false, true}) {
      CAPTURE(with_residual);
      const auto fused = frozen(true, with_residual), apart = frozen(false, with_residual);
      REQUIRE(fused.size() == (with_residual ? 3u : 2u));
      REQUIRE(fused.size() == apart.size());
      for (size_t i = 0; i < fused.size(); ++i) CHECK(test::bitwise_equal(ops::to(fused[i], kCPU), ops::to(apart[i], kCPU)));
    }
  }
}

}  // namespace

TEST_CASE("channel_affine_relu, frozen_batch_norm_relu: the bits of relu after the unfused op") {
  expect_fused_relu_bitwise(kCPU);
  expect_gradcheck([](const V& v) { return ops::channel_affine_relu(v[0], v[1], v[2]); },
                   {leaf({2, 3, 2, 2}, 47), leaf({3}, 48), leaf({3}, 49)});
  CHECK(test::error_of([] { ops::channel_affine_relu(zeros({2, 3}), zeros({2}), zeros({3})); }) ==
        "channel_affine_relu: scale must be a float32 vector of 3 elements (channels of [2, 3]), got float32 [2]");
  CHECK(test::error_of([] { ops::channel_affine_relu(zeros({2, 3}), zeros({3}), zeros({3}), zeros({3, 2})); }) ==
        "channel_affine_relu: residual must be float32 [2, 3] on cpu like x, got float32 [3, 2] on cpu");
  expect_gradcheck([](const V& v) { return ops::channel_affine_relu(v[0], v[1], v[2], v[3]); },
                   {leaf({2, 3, 2, 2}, 55), leaf({3}, 56), leaf({3}, 57), leaf({2, 3, 2, 2}, 58)});
}

TEST_CASE("group_norm_relu: the bits of group_norm, add and relu, forward and backward") {
  for (const DType dt : {kFloat32, kFloat64}) {
    const std::string dtype = dtype_name(dt);
    CAPTURE(dtype);
    const double nan = std::nan(""), inf = INFINITY;
    const auto as = [dt](const std::vector<double>& v, const Shape& s) { return ops::to(from_vector(v, s), dt); };
    // [2, 6, 3, 4] in 3 groups of 2 channels: a NaN poisons the first (sample, group) block.
    std::vector<double> xs = test::values(leaf({2, 6, 3, 4}, 61));
    xs[0] = nan, xs[30] = 0.0, xs[31] = -0.0;
    std::vector<double> ds = test::values(leaf({2, 6, 3, 4}, 62));
    ds[40] = nan, ds[41] = -0.0, ds[70] = -0.0;
    std::vector<double> rs = test::values(leaf({2, 6, 3, 4}, 63));
    rs[50] = inf, rs[51] = -inf, rs[52] = -0.0, rs[53] = nan;
    const Tensor x = as(xs, {2, 6, 3, 4}).set_requires_grad(true), dout = as(ds, {2, 6, 3, 4});
    const Tensor residual_values = as(rs, {2, 6, 3, 4});
    const Tensor weight_values = ops::to(leaf({6}, 64, 0.5, 1.0), dt), bias_values = ops::to(leaf({6}, 65), dt);
    for (const int residual_kind : {0, 1, 2})  // none, without gradient, with gradient
      for (const int affine_kind : {0, 1, 2}) {  // no weight and bias, without gradients, with gradients
        CAPTURE(residual_kind);
        CAPTURE(affine_kind);
        V inputs{x};
        if (affine_kind > 0) {
          inputs.push_back(weight_values.detach().set_requires_grad(affine_kind == 2));
          inputs.push_back(bias_values.detach().set_requires_grad(affine_kind == 2));
        }
        if (residual_kind > 0) inputs.push_back(residual_values.detach().set_requires_grad(residual_kind == 2));
        const auto parts = [affine_kind, residual_kind](const V& v) {
          const Tensor w = affine_kind > 0 ? v[1] : Tensor(), b = affine_kind > 0 ? v[2] : Tensor();
          return std::tuple<Tensor, Tensor, Tensor>{w, b, residual_kind > 0 ? v.back() : Tensor()};
        };
        const auto fused = output_and_grads(
            [&](const V& v) {
              const auto [w, b, r] = parts(v);
              return ops::group_norm_relu(v[0], 3, w, b, 1e-5, r);
            },
            inputs, dout);
        const auto apart = output_and_grads(
            [&](const V& v) {
              const auto [w, b, r] = parts(v);
              const Tensor y = ops::group_norm(v[0], 3, w, b, 1e-5);
              return ops::relu(r.defined() ? ops::add(y, r) : y);
            },
            inputs, dout);
        REQUIRE(fused.size() == 2u + (affine_kind == 2 ? 2u : 0u) + (residual_kind == 2 ? 1u : 0u));
        REQUIRE(fused.size() == apart.size());
        for (size_t i = 0; i < fused.size(); ++i) {
          CAPTURE(i);
          CHECK(test::bitwise_equal(fused[i], apart[i]));
        }
        const auto out = test::values(fused[0]);
        CHECK(std::isnan(out[0]));  // the NaN block stays NaN through relu
        CHECK(*std::min_element(out.begin() + 24, out.end()) == 0.0);  // relu cut the rest somewhere
      }
  }
  expect_gradcheck([](const V& v) { return ops::group_norm_relu(v[0], 2, v[1], v[2], 1e-5, v[3]); },
                   {leaf({2, 4, 3, 3}, 66), leaf({4}, 67, 0.5, 1.0), leaf({4}, 68), leaf({2, 4, 3, 3}, 69)});
  CHECK(test::error_of([] { ops::group_norm_relu(zeros({2, 6, 2, 2}), 3, Tensor(), Tensor(), 1e-5, zeros({2, 6, 4})); }) ==
        "group_norm_relu: residual must be float32 [2, 6, 2, 2] on cpu like x, got float32 [2, 6, 4] on cpu");
  CHECK(test::error_of([] { ops::group_norm_relu(zeros({2, 6, 2, 2}), 4, Tensor(), Tensor()); }) ==
        "group_norm_relu: 6 channels of [2, 6, 2, 2] cannot be split into 4 groups");
}

TEST_CASE("norms: error messages") {
  CHECK(test::error_of([] { ops::batch_norm(zeros({1, 3, 1, 1}), Tensor(), Tensor(), Tensor(), Tensor(), true); }) ==
        "batch_norm: expected more than 1 value per channel when training, got input [1, 3, 1, 1]");
  CHECK(test::error_of([] { ops::batch_norm(zeros({2, 3}), Tensor(), Tensor(), Tensor(), Tensor(), false); }) ==
        "batch_norm: running_mean is required");
  CHECK(test::error_of([] { ops::group_norm(zeros({2, 6, 2, 2}), 4); }) ==
        "group_norm: 6 channels of [2, 6, 2, 2] cannot be split into 4 groups");
  CHECK(test::error_of([] { ops::group_norm(zeros({2, 6, 2, 2}), 3, zeros({5})); }) ==
        "group_norm: weight must be a float32 vector of 6 elements (channels of [2, 6, 2, 2]), got float32 [5]");
  CHECK(test::error_of([] { ops::frozen_batch_norm(zeros({2, 6}), zeros({6}), zeros({6}), zeros({6}), Tensor()); }) ==
        "frozen_batch_norm: running_var is required");
}

TEST_CASE("cuda: batch, frozen and group norm match the CPU") {
  if (test::setup_cuda_or_skip("norms on CUDA")) return;
  // CUDA composes the norms from reductions and elementwise kernels (float sums in another order and
  // precision than the CPU's double accumulation): float64 1e-12 on O(1) values, float32 1e-4.
  for (const bool single : {false, true}) {
    const double tol = single ? 1e-4 : 1e-12;
    auto in = [&](const Shape& s, uint64_t seed, double scale = 1, double shift = 0) {
      const Tensor t = leaf(s, seed, scale, shift);
      return single ? ops::to(t, kFloat32) : t;
    };
    const DType dt = single ? kFloat32 : kFloat64;
    test::expect_cuda_matches_cpu([](const V& v) { return ops::group_norm(v[0], 2, v[1], v[2]); },
                                  {in({2, 4, 5, 3}, 1), in({4}, 2, 0.5, 1.0), in({4}, 3)}, tol);
    test::expect_cuda_matches_cpu([](const V& v) { return ops::frozen_batch_norm(v[0], v[1], v[2], v[3], v[4]); },
                                  {in({2, 3, 4, 4}, 4), in({3}, 5), in({3}, 6), in({3}, 7), in({3}, 8, 0.1, 1.0)}, tol);
    // Training batch norm: output, gradients, and the running statistics it updates in place.
    Tensor mean_cpu = zeros({3}, dt), var_cpu = ones({3}, dt);
    Tensor mean_gpu = zeros({3}, dt, test::gpu()), var_gpu = ones({3}, dt, test::gpu());
    int runs = 0;  // expect_cuda_matches_cpu runs the CPU first, then the device (the CPU again in a rehearsal)
    test::expect_cuda_matches_cpu(
        [&](const V& v) {
          const bool gpu = runs++ > 0;
          return ops::batch_norm(v[0], gpu ? mean_gpu : mean_cpu, gpu ? var_gpu : var_cpu, v[1], v[2], true, 0.1, 1e-5);
        },
        {in({4, 3, 2, 5}, 9), in({3}, 10, 0.5, 1.0), in({3}, 11)}, tol);
    CHECK(test::max_abs_diff(mean_cpu, ops::to(mean_gpu, kCPU)) <= tol);
    CHECK(test::max_abs_diff(var_cpu, ops::to(var_gpu, kCPU)) <= tol);
  }
  test::expect_cuda_matches_cpu([](const V& v) { return ops::group_norm(v[0], 1, v[1], v[2]); },
                                {test::noncontiguous_leaf({2, 3, 4, 5}, 12), leaf({3}, 13), leaf({3}, 14)}, 1e-12);
  test::expect_cuda_gradcheck([](const V& v) { return ops::group_norm(v[0], 2, v[1], v[2]); },
                              {leaf({2, 4, 3, 3}, 15), leaf({4}, 16, 0.5, 1.0), leaf({4}, 17)});
  // group_norm_relu: one op on the CPU, group_norm + add + relu on CUDA.
  test::expect_cuda_matches_cpu([](const V& v) { return ops::group_norm_relu(v[0], 2, v[1], v[2], 1e-5, v[3]); },
                                {leaf({2, 4, 5, 3}, 21), leaf({4}, 22, 0.5, 1.0), leaf({4}, 23), leaf({2, 4, 5, 3}, 24)}, 1e-12);
  // channel_affine's fused kernel: every input needing a gradient, or only x (a frozen norm), and
  // 2-D and 3-D inputs (inner = 1, and a non-contiguous one).
  test::expect_cuda_matches_cpu([](const V& v) { return ops::channel_affine(v[0], v[1], v[2]); },
                                {leaf({2, 5, 3, 4}, 18), leaf({5}, 19), leaf({5}, 20)}, 1e-12);
  const Tensor frozen_scale = leaf({4}, 19).detach(), frozen_shift = leaf({4}, 20).detach();
  test::expect_cuda_matches_cpu(
      [&](const V& v) {
        return ops::channel_affine(v[0], ops::to(frozen_scale, v[0].device()), ops::to(frozen_shift, v[0].device()));
      },
      {leaf({3, 4}, 21)}, 1e-12);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::channel_affine(v[0], v[1], v[2]); },
                                {test::noncontiguous_leaf({2, 3, 5}, 22), leaf({3}, 23), leaf({3}, 24)}, 1e-12);
  test::expect_cuda_gradcheck([](const V& v) { return ops::channel_affine(v[0], v[1], v[2]); },
                              {leaf({2, 3, 2, 2}, 25), leaf({3}, 26), leaf({3}, 27)});
  // Group norm's fused kernels without an affine, with one channel per group, and with a weight
  // that needs no gradient (the brain-tumour recipe's layers all have both).
  test::expect_cuda_matches_cpu([](const V& v) { return ops::group_norm(v[0], 3, Tensor(), Tensor()); },
                                {leaf({2, 6, 3, 4}, 31)}, 1e-12);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::group_norm(v[0], 4, v[1], v[2]); },
                                {ops::to(leaf({3, 4, 5, 5}, 32), kFloat32), ops::to(leaf({4}, 33), kFloat32),
                                 ops::to(leaf({4}, 34), kFloat32)},
                                1e-4);
  // The fused norm + relu on the GPU: bit-identical to relu after the unfused op there, and close
  // to the CPU's.
  expect_fused_relu_bitwise(test::gpu());
  test::expect_cuda_matches_cpu([](const V& v) { return ops::channel_affine_relu(v[0], v[1], v[2]); },
                                {leaf({2, 5, 3, 4}, 50), leaf({5}, 51), leaf({5}, 52)}, 1e-12);
  test::expect_cuda_matches_cpu(
      [&](const V& v) {
        return ops::channel_affine_relu(v[0], ops::to(frozen_scale, v[0].device()), ops::to(frozen_shift, v[0].device()));
      },
      {leaf({3, 4}, 53)}, 1e-12);
  test::expect_cuda_matches_cpu([](const V& v) { return ops::channel_affine_relu(v[0], v[1], v[2], v[3]); },
                                {leaf({2, 5, 3, 4}, 59), leaf({5}, 60), leaf({5}, 61), test::noncontiguous_leaf({2, 5, 3, 4}, 62)},
                                1e-12);
  const Tensor fixed_weight = test::leaf({4}, 35).detach();
  test::expect_cuda_matches_cpu(
      [&](const V& v) { return ops::group_norm(v[0], 2, ops::to(fixed_weight, v[0].device()), Tensor()); },
      {leaf({2, 4, 3, 2}, 36)}, 1e-12);
}

TEST_CASE("group_norm: the CUDA kernels' per-element bodies reproduce the CPU op") {
  // The bodies in a plain loop, with each group's statistics and gradient means computed here in
  // double as the CPU op does: the forward equals it, the input gradient to 1e-14.
  const int64_t batch = 2, channels = 6, groups = 3, inner = 5, block = channels / groups * inner;
  Tensor x = test::leaf({batch, channels, inner}, 37), weight = test::leaf({channels}, 38), bias = test::leaf({channels}, 39);
  const Tensor dy = test::leaf({batch, channels, inner}, 40).detach();
  const Tensor y = ops::group_norm(x, groups, weight, bias);
  autograd::backward(y, dy);
  const auto xs = test::values(x), ws = test::values(weight), bs = test::values(bias), dys = test::values(dy);
  const auto ys = test::values(y), dxs = test::values(x.grad());
  std::vector<double> mean(batch * groups), invstd(batch * groups), mean_dxhat(batch * groups), mean_dxhat_xhat(batch * groups);
  for (int64_t b = 0; b < batch * groups; ++b) {
    double total = 0, squares = 0, t1 = 0, t2 = 0;
    for (int64_t i = b * block; i < (b + 1) * block; ++i) total += xs[i];
    mean[b] = total / block;
    for (int64_t i = b * block; i < (b + 1) * block; ++i) squares += (xs[i] - mean[b]) * (xs[i] - mean[b]);
    invstd[b] = 1.0 / std::sqrt(squares / block + 1e-5);
    for (int64_t i = b * block; i < (b + 1) * block; ++i) {
      const double dxhat = dys[i] * ws[i / inner % channels];
      t1 += dxhat, t2 += dxhat * (xs[i] - mean[b]) * invstd[b];
    }
    mean_dxhat[b] = t1 / block, mean_dxhat_xhat[b] = t2 / block;
  }
  for (int64_t i = 0; i < batch * channels * inner; ++i) {
    const int64_t c = i / inner % channels, b = group_of(i, channels, groups, inner);
    CHECK(b == i / (channels * inner) * groups + c / (channels / groups));
    double a, shift;
    group_norm_affine(mean[b], invstd[b], ws[c], bs[c], a, shift);
    CHECK(std::abs(xs[i] * a + shift - ys[i]) <= 1e-14);
    CHECK(std::abs(group_norm_dx(dys[i], xs[i], mean[b], invstd[b], ws[c], mean_dxhat[b], mean_dxhat_xhat[b]) - dxs[i]) <=
          1e-14);
  }
}

TEST_CASE("channel_affine: the CUDA kernel's per-element body indexes channels as the CPU loop does") {
  for (const auto [batch, channels, inner] : std::vector<std::array<int64_t, 3>>{{2, 5, 12}, {3, 4, 1}, {1, 1, 7}}) {
    const Tensor x = test::leaf({batch, channels, inner}, 28 + inner);
    const Tensor scale = test::leaf({channels}, 29), shift = test::leaf({channels}, 30);
    const auto expected = test::values(ops::channel_affine(x, scale, shift));
    const auto unshifted = test::values(ops::channel_affine(x, scale, zeros({channels}, kFloat64)));
    const auto xs = test::values(x), ss = test::values(scale), bs = test::values(shift);
    for (int64_t i = 0; i < x.numel(); ++i) {
      // x * a + b in double, each side free to fuse it: within an ulp of O(1) values.
      CHECK(std::abs(channel_affine_element(xs.data(), ss.data(), bs.data(), i, channels, inner) - expected[i]) <= 1e-15);
      CHECK(channel_affine_element<double>(xs.data(), ss.data(), nullptr, i, channels, inner) == unshifted[i]);
    }
  }
}

TEST_CASE("index dividers: multiply-high quotients equal division below 2^31, and locate channels and groups") {
  // Divisors: small, powers of two and their neighbours, odd large ones, the largest allowed.
  std::vector<int64_t> divisors{1, 2, 3, 5, 6, 7, 12, 49, 196, 255, 256, 257, 1000, 4096, 65535, 65536, 65537, 123456789,
                                (int64_t{1} << 30) + 1, cuda::kMaxDividedIndex};
  std::vector<uint32_t> numbers{0, 1, 2, 3, 63, 64, 65, 1000, 65535, 65536, 999999937u, (1u << 30) + 5, 2147483646u,
                                2147483647u};
  Generator g(41);
  for (const double r : test::values(rand({200}, kFloat64, kCPU, &g)))
    numbers.push_back(static_cast<uint32_t>(r * static_cast<double>(cuda::kMaxDividedIndex)));
  for (const int64_t d : divisors) {
    const cuda::IndexDivider divider(d);
    CAPTURE(d);
    for (const uint32_t n : numbers) {
      CAPTURE(n);
      for (const uint32_t m : {n, n - n % static_cast<uint32_t>(d), n / static_cast<uint32_t>(d) * static_cast<uint32_t>(d) - 1}) {
        if (m > static_cast<uint32_t>(cuda::kMaxDividedIndex)) continue;  // the n - 1 of n = 0 wraps
        CHECK(divider.quotient(m) == m / static_cast<uint32_t>(d));
        CHECK(divider.remainder(m) == m % static_cast<uint32_t>(d));
      }
    }
  }
  // The locator the GPU kernels use agrees with plain division on every element of a few layouts.
  for (const auto [batch, channels, inner, groups] :
       std::vector<std::array<int64_t, 4>>{{2, 6, 49, 3}, {3, 256, 196, 32}, {1, 1, 1, 1}, {4, 12, 7, 12}}) {
    const ChannelLocator plain{channels, inner, channels / groups * inner};
    const FastChannelLocator fast(plain);
    int64_t mismatches = 0;
    for (int64_t i = 0; i < batch * channels * inner; ++i)
      mismatches += fast.channel(i) != plain.channel(i) || fast.group(i) != plain.group(i) ||
                    plain.group(i) != group_of(i, channels, groups, inner);
    CHECK(mismatches == 0);
  }
}
