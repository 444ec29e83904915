// Fused optimizer updates: hand-computed SGD, AdamW and weight-average steps, argument errors, CUDA vs CPU.
#include <cmath>

#include "ops/optim.h"
#include "ops/optim_kernels.h"
#include "tensor/parallel.h"
#include "tests/helpers.h"

using namespace mrcnn;
using test::values;

TEST_CASE("sgd_step_: weight decay, momentum (first and later steps), nesterov") {
  Tensor p = from_vector<double>({1.0, -2.0}, {2});
  const Tensor g = from_vector<double>({0.5, 0.25}, {2});
  Tensor buffer = zeros({2}, kFloat64);
  // d = g + 0.1 p; first step: buffer = d; p -= 0.5 d (the same double operations: exact).
  ops::sgd_step_(p, g, buffer, {0.5, 0.9, 0.0, 0.1, false, true});
  const double d0 = 0.5 + 0.1 * 1.0, d1 = 0.25 + 0.1 * -2.0;
  CHECK(values(buffer) == std::vector<double>{d0, d1});
  CHECK(values(p) == std::vector<double>{1.0 - 0.5 * d0, -2.0 - 0.5 * d1});
  // Second step: d = g + 0.1 p; buffer = 0.9 buffer + d; nesterov: step = d + 0.9 buffer.
  const double p0 = 1.0 - 0.5 * d0, d = 0.5 + 0.1 * p0, b0 = 0.9 * d0 + d;
  ops::sgd_step_(p, g, buffer, {0.5, 0.9, 0.0, 0.1, true, false});
  CHECK(values(buffer)[0] == doctest::Approx(b0).epsilon(1e-15));
  CHECK(values(p)[0] == doctest::Approx(p0 - 0.5 * (d + 0.9 * b0)).epsilon(1e-15));
  // No momentum: plain p -= lr (g + wd p).
  Tensor q = from_vector<float>({2.0f}, {1});
  ops::sgd_step_(q, from_vector<float>({1.0f}, {1}), Tensor(), {0.25, 0, 0, 0.5, false, false});
  CHECK(values(q) == std::vector<double>{2.0 - 0.25 * (1.0 + 0.5 * 2.0)});
}

TEST_CASE("adamw_step_: one step by hand") {
  Tensor p = from_vector<double>({1.0}, {1}), m = zeros({1}, kFloat64), v = zeros({1}, kFloat64);
  ops::adamw_step_(p, from_vector<double>({0.5}, {1}), m, v, {0.1, 0.9, 0.999, 1e-8, 0.01, 1});
  // p *= 1 - lr wd; m = 0.05; v = 0.00025; p -= lr / (1 - 0.9) * m / (sqrt(v) / sqrt(1 - 0.999) + eps).
  const double expected = 1.0 * (1 - 0.1 * 0.01) - 0.1 / 0.1 * 0.05 / (std::sqrt(0.00025) / std::sqrt(0.001) + 1e-8);
  CHECK(values(m)[0] == doctest::Approx(0.05).epsilon(1e-15));
  CHECK(values(v)[0] == doctest::Approx(0.00025).epsilon(1e-15));
  CHECK(values(p)[0] == doctest::Approx(expected).epsilon(1e-14));
}

TEST_CASE("average_step_: lerp towards the value, and a constant value leaves its average exact") {
  Tensor a = from_vector<double>({1.0, -2.0, 0.1}, {3});
  ops::average_step_(a, from_vector<double>({3.0, -2.0, 0.7}, {3}), 0.25);
  CHECK(values(a) == std::vector<double>{1.0 + 0.25 * (3.0 - 1.0), -2.0, 0.1 + 0.25 * (0.7 - 0.1)});
  // A frozen buffer: 1000 steps with an awkward weight keep every bit (value - average is 0).
  Generator gen(5);
  const Tensor frozen = randn({64}, kFloat32, kCPU, &gen);
  Tensor average = copy_as(frozen, kFloat32, kCPU);
  for (int i = 0; i < 1000; ++i) ops::average_step_(average, frozen, 0.0123);
  CHECK(test::max_abs_diff(average, frozen) == 0);
  // Weight 1 copies, weight 0 keeps.
  Tensor b = from_vector<float>({5.0f}, {1});
  ops::average_step_(b, from_vector<float>({-1.5f}, {1}), 1.0);
  CHECK(values(b) == std::vector<double>{-1.5});
  ops::average_step_(b, from_vector<float>({7.0f}, {1}), 0.0);
  CHECK(values(b) == std::vector<double>{-1.5});
}

TEST_CASE("optimizer steps over many elements: every bit the one-element formula's, for 1 and 2 threads") {
  // Large parameters are split across threads (memory bounds the update); the split must not move
  // a bit, including the chunk edges and a tail shorter than a vector.
  const int64_t n = 3 * kParallelGrain + 5;
  Generator gen(11);
  const Tensor p0 = randn({n}, kFloat32, kCPU, &gen), g = randn({n}, kFloat32, kCPU, &gen), m0 = randn({n}, kFloat32, kCPU, &gen);
  const Tensor v0 = ops::abs(randn({n}, kFloat32, kCPU, &gen));
  const ops::SgdStep sgd{0.02, 0.9, 0.1, 3e-4, true, false};
  const ops::AdamWStep adam{1e-3, 0.9, 0.999, 1e-8, 0.05, 3};
  // The same element bodies in one plain loop.
  const auto floats = [](const Tensor& t) { return std::vector<float>(t.data<float>(), t.data<float>() + t.numel()); };
  const auto doubles = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };  // exact
  std::vector<float> p_sgd = floats(p0), b_sgd = floats(m0);
  std::vector<float> p_adam = p_sgd, m_adam = b_sgd, v_adam = floats(v0), avg = p_sgd;
  const std::vector<float> grad = floats(g);
  const SgdScalars<float> s{3e-4f, 0.9f, 0.9f, 0.02f, true, false};
  const double c1 = 1 - std::pow(0.9, 3.0), c2 = 1 - std::pow(0.999, 3.0);
  const AdamWScalars<float> a{0.9f, 0.999f, static_cast<float>(1 - 1e-3 * 0.05), static_cast<float>(1e-3 / c1),
                              static_cast<float>(std::sqrt(c2)), 1e-8f};
  for (int64_t i = 0; i < n; ++i) {
    sgd_element(&p_sgd[i], grad[i], &b_sgd[i], s);
    adamw_element(&p_adam[i], grad[i], &m_adam[i], &v_adam[i], a);
    average_element(&avg[i], grad[i], 0.25f);
  }
  for (const int threads : {1, 2}) {
    CAPTURE(threads);
    const test::ThreadCount thread_count(threads);
    Tensor p = copy_as(p0, kFloat32, kCPU), b = copy_as(m0, kFloat32, kCPU);
    ops::sgd_step_(p, g, b, sgd);
    CHECK(values(p) == doubles(p_sgd));
    CHECK(values(b) == doubles(b_sgd));
    Tensor q = copy_as(p0, kFloat32, kCPU), m = copy_as(m0, kFloat32, kCPU), v = copy_as(v0, kFloat32, kCPU);
    ops::adamw_step_(q, g, m, v, adam);
    CHECK(values(q) == doubles(p_adam));
    CHECK(values(m) == doubles(m_adam));
    CHECK(values(v) == doubles(v_adam));
    Tensor average = copy_as(p0, kFloat32, kCPU);
    ops::average_step_(average, g, 0.25);
    CHECK(values(average) == doubles(avg));
  }
}

TEST_CASE("optimizer steps: error messages") {
  const Tensor p = zeros({2}, kFloat32);
  CHECK(test::error_of([&] { ops::sgd_step_(p, zeros({3}, kFloat32), Tensor(), {}); }) ==
        "sgd_step_: grad must be a contiguous float32 tensor of shape [2] on cpu");
  CHECK(test::error_of([&] { ops::adamw_step_(p, zeros({2}, kFloat32), zeros({2}, kFloat64), zeros({2}, kFloat32), {}); }) ==
        "adamw_step_: exp_avg must be a contiguous float32 tensor of shape [2] on cpu");
  CHECK(test::error_of([&] { ops::average_step_(p, zeros({2}, kFloat64), 0.1); }) ==
        "average_step_: value must be a contiguous float32 tensor of shape [2] on cpu");
  CHECK(test::error_of([&] { ops::average_step_(p, zeros({2}, kFloat32), 1.5); }) ==
        "average_step_: the weight must be in [0, 1], got 1.5");
}

TEST_CASE("cuda: optimizer steps match the CPU") {
  if (test::setup_cuda_or_skip("optimizer steps on CUDA")) return;
  Generator gen(3);
  for (const DType dt : {kFloat32, kFloat64}) {
    const Tensor p0 = randn({1000}, dt, kCPU, &gen), g = randn({1000}, dt, kCPU, &gen), b0 = randn({1000}, dt, kCPU, &gen);
    Tensor p_cpu = copy_as(p0, dt, kCPU), b_cpu = copy_as(b0, dt, kCPU);
    Tensor p_gpu = copy_as(p0, dt, test::gpu()), b_gpu = copy_as(b0, dt, test::gpu());
    const ops::SgdStep sgd{0.1, 0.9, 0.1, 1e-4, true, false};
    ops::sgd_step_(p_cpu, g, b_cpu, sgd);
    ops::sgd_step_(p_gpu, ops::to(g, test::gpu()), b_gpu, sgd);
    // The same element body; the GPU may contract a * b + c into one FMA: a few ulp.
    const double tol = dt == kFloat32 ? 1e-6 : 1e-15;
    CHECK(test::max_abs_diff(p_cpu, ops::to(p_gpu, kCPU)) <= tol);
    CHECK(test::max_abs_diff(b_cpu, ops::to(b_gpu, kCPU)) <= tol);
    Tensor m_cpu = zeros({1000}, dt), v_cpu = zeros({1000}, dt), m_gpu = zeros({1000}, dt, test::gpu()), v_gpu = zeros({1000}, dt, test::gpu());
    const ops::AdamWStep adam{1e-3, 0.9, 0.999, 1e-8, 0.01, 3};
    ops::adamw_step_(p_cpu, g, m_cpu, v_cpu, adam);
    ops::adamw_step_(p_gpu, ops::to(g, test::gpu()), m_gpu, v_gpu, adam);
    CHECK(test::max_abs_diff(p_cpu, ops::to(p_gpu, kCPU)) <= tol);
    CHECK(test::max_abs_diff(v_cpu, ops::to(v_gpu, kCPU)) <= tol);
    ops::average_step_(b_cpu, p_cpu, 0.003);
    ops::average_step_(b_gpu, p_gpu, 0.003);
    CHECK(test::max_abs_diff(b_cpu, ops::to(b_gpu, kCPU)) <= tol);
  }
}
