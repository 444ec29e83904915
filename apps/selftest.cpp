// `mrcnn selftest`: on the user's own machine, every differentiable op's analytic gradient against
// float64 central differences (autograd/gradcheck.h), one case per op family and mode that the
// model uses; the float32 kernels this CPU selects against float64 (apps/selftest_kernels.cpp);
// and, where a CUDA device is present, each gradcheck case's forward and gradients on the GPU
// against the CPU. Prints a pass/fail table; exits 1 if anything failed.
#include <chrono>
#include <cstdio>
#include <functional>

#include "apps/commands.h"
#include "apps/selftest_kernels.h"
#include "autograd/gradcheck.h"
#include "cuda/context.h"
#include "ops/ops.h"
#include "tensor/parallel.h"
#include "tensor/random.h"

namespace mrcnn::apps {

namespace {

using Case = SelftestCase<Tensor>;

Tensor leaf(const Shape& shape, uint64_t seed, double scale = 1.0, double shift = 0.0) {
  Generator generator(seed);
  autograd::NoGradGuard no_grad;
  return ops::add(ops::mul(randn(shape, kFloat64, kCPU, &generator), scale), shift).set_requires_grad(true);
}

Tensor constant(const std::vector<double>& values, const Shape& shape) { return from_vector(values, shape); }

std::vector<Case> cases() {
  using namespace ops;
  std::vector<Case> c;
  c.push_back({"conv2d 3x3 pad 1 + bias", [](const auto& v) { return conv2d(v[0], v[1], v[2], {1, 1, 1, 1}); },
               {leaf({2, 3, 6, 5}, 1), leaf({4, 3, 3, 3}, 2), leaf({4}, 3)}});
  c.push_back({"conv2d 7x7 stride 2 (stem)", [](const auto& v) { return conv2d(v[0], v[1], Tensor(), {2, 3, 1, 1}); },
               {leaf({1, 1, 9, 9}, 4), leaf({2, 1, 7, 7}, 5)}});
  c.push_back({"conv2d groups 2 dilation 2", [](const auto& v) { return conv2d(v[0], v[1], Tensor(), {1, 2, 2, 2}); },
               {leaf({1, 4, 7, 7}, 6), leaf({4, 2, 3, 3}, 7)}});
  c.push_back({"conv_transpose2d 2x2 stride 2", [](const auto& v) { return conv_transpose2d(v[0], v[1], v[2], {2}); },
               {leaf({2, 3, 3, 4}, 8), leaf({3, 2, 2, 2}, 9), leaf({2}, 10)}});
  c.push_back({"linear", [](const auto& v) { return linear(v[0], v[1], v[2]); },
               {leaf({5, 6}, 11), leaf({3, 6}, 12), leaf({3}, 13)}});
  c.push_back({"matmul", [](const auto& v) { return matmul(v[0], v[1]); }, {leaf({4, 5}, 14), leaf({5, 3}, 15)}});
  c.push_back({"max_pool2d 3x3 stride 2 pad 1",
               [](const auto& v) { return max_pool2d(v[0], {3, 2, 1}); }, {leaf({1, 2, 7, 6}, 16)}});
  c.push_back({"interpolate nearest 2x", [](const auto& v) { return interpolate(v[0], {8, 6}, InterpolateMode::Nearest); },
               {leaf({1, 2, 4, 3}, 17)}});
  c.push_back({"interpolate bilinear", [](const auto& v) { return interpolate(v[0], {7, 9}, InterpolateMode::Bilinear); },
               {leaf({1, 2, 4, 5}, 18)}});
  c.push_back({"group_norm 2 groups", [](const auto& v) { return group_norm(v[0], 2, v[1], v[2]); },
               {leaf({2, 4, 3, 3}, 19), leaf({4}, 20, 0.5, 1.0), leaf({4}, 21)}});
  c.push_back({"batch_norm (training)",
               [](const auto& v) {
                 return batch_norm(v[0], zeros({3}, kFloat64, v[0].device()), ones({3}, kFloat64, v[0].device()), v[1], v[2], true);
               },
               {leaf({4, 3, 2, 2}, 22), leaf({3}, 23, 0.5, 1.0), leaf({3}, 24)}});
  c.push_back({"frozen_batch_norm",
               [](const auto& v) { return frozen_batch_norm(v[0], v[1], v[2], v[3], v[4]); },
               {leaf({2, 3, 2, 2}, 25), leaf({3}, 26), leaf({3}, 27), leaf({3}, 28), leaf({3}, 29, 0.1, 1.0)}});
  const Tensor rois = constant({0, 0.5, 0.7, 4.2, 5.1, 1, 1.3, 0.2, 6.8, 3.9, 0, -1.0, 2.0, 3.0, 8.5}, {3, 5});
  c.push_back({"roi_align 3x3 sampling 2", [rois](const auto& v) { return roi_align(v[0], to(rois, v[0].device()), {3, 3}, 1.0, 2, false); },
               {leaf({2, 2, 6, 7}, 30)}});
  c.push_back({"roi_align aligned, adaptive", [rois](const auto& v) { return roi_align(v[0], to(rois, v[0].device()), {2, 2}, 0.5, -1, true); },
               {leaf({2, 2, 12, 14}, 31)}});
  c.push_back({"softmax", [](const auto& v) { return softmax(v[0], 1); }, {leaf({3, 5}, 32)}});
  const Tensor classes = from_vector(std::vector<int64_t>{0, 2, 1, 4}, {4});
  c.push_back({"cross_entropy", [classes](const auto& v) { return cross_entropy(v[0], to(classes, v[0].device())); }, {leaf({4, 5}, 33)}});
  const Tensor targets = constant({0, 1, 1, 0, 1, 0}, {2, 3});
  c.push_back({"binary_cross_entropy_with_logits",
               [targets](const auto& v) { return binary_cross_entropy_with_logits(v[0], to(targets, v[0].device())); }, {leaf({2, 3}, 34)}});
  c.push_back({"smooth_l1_loss beta 1/9", [](const auto& v) { return smooth_l1_loss(v[0], v[1], 1.0 / 9, Reduction::Sum); },
               {leaf({4, 4}, 35), leaf({4, 4}, 36)}});
  c.push_back({"elementwise: exp, log, sigmoid, relu, div",
               [](const auto& v) {
                 return add(mul(exp(v[0]), sigmoid(v[1])), div(relu(v[0]), log(v[2])));
               },
               {leaf({3, 4}, 37), leaf({3, 4}, 38), leaf({3, 4}, 39, 0.1, 3.0)}});
  c.push_back({"broadcast add, sqrt, pow, clamp",
               [](const auto& v) {
                 return add(sqrt(v[0]), pow(clamp(v[1], -1.0, 1.0), 3.0));
               },
               {leaf({3, 1}, 40, 0.1, 2.0), leaf({1, 4}, 41)}});
  c.push_back({"reductions: sum, mean over dims", [](const auto& v) { return add(sum(v[0], {1}), mean(v[0], {1})); },
               {leaf({3, 5}, 42)}});
  const Tensor rows = from_vector(std::vector<int64_t>{2, 0, 2}, {3});
  c.push_back({"index_select (repeated rows)", [rows](const auto& v) { return index_select(v[0], 0, to(rows, v[0].device())); }, {leaf({3, 4}, 43)}});
  c.push_back({"cat, permute, slice",
               [](const auto& v) { return slice(permute(cat({v[0], v[1]}, 1), {1, 0}), 0, 1, 5, 2); },
               {leaf({3, 2}, 44), leaf({3, 4}, 45)}});
  return c;
}

double max_difference(const Tensor& a, const Tensor& b) {
  const auto x = to_vector<double>(ops::to(a, kFloat64)), y = to_vector<double>(ops::to(b, kFloat64));
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
  return x.size() == y.size() ? worst : INFINITY;
}

}  // namespace

int selftest() {
  const auto start = std::chrono::steady_clock::now();
  std::printf("mrcnn selftest: %d threads; gradients vs float64 central differences (eps 1e-6, |a-n| <= 1e-6 + 1e-4|n|)\n",
              num_threads());
  std::printf("  %-44s %12s  %s\n", "op", "max |error|", "result");
  int failed = 0, passed = 0;
  const auto all = cases();
  for (const Case& c : all) {
    autograd::GradcheckResult r;
    try {
      r = autograd::gradcheck(c.f, c.inputs);
    } catch (const std::exception& e) {
      r.ok = false;
      r.message = e.what();
    }
    r.ok ? ++passed : ++failed;
    std::printf("  %-44s %12.2e  %s%s\n", c.name.c_str(), r.max_abs_error, r.ok ? "pass" : "FAIL ", r.message.c_str());
  }
  selftest_float32_kernels(passed, failed);
  if (cuda::is_available()) {
    std::printf("CUDA (%s) vs CPU, float64: forward and gradients\n", cuda::device_name(0).c_str());
    for (const Case& c : all) {
      std::string problem;
      double worst = 0;
      try {
        for (Tensor x : c.inputs) x.zero_grad();  // gradcheck above left its gradients in the leaves
        std::vector<Tensor> on_gpu;
        for (const Tensor& x : c.inputs) on_gpu.push_back(ops::to(x.detach(), kCUDA).set_requires_grad(x.requires_grad()));
        const Tensor cpu_out = c.f(c.inputs), gpu_out = c.f(on_gpu);
        worst = max_difference(cpu_out, ops::to(gpu_out, kCPU));
        autograd::backward(ops::sum(cpu_out));
        autograd::backward(ops::sum(gpu_out));
        for (size_t i = 0; i < c.inputs.size(); ++i)
          if (c.inputs[i].requires_grad()) worst = std::max(worst, max_difference(c.inputs[i].grad(), ops::to(on_gpu[i].grad(), kCPU)));
      } catch (const std::exception& e) {
        problem = e.what();
      }
      const bool ok = problem.empty() && worst <= 1e-9;
      ok ? ++passed : ++failed;
      std::printf("  %-44s %12.2e  %s%s\n", c.name.c_str(), worst, ok ? "pass" : "FAIL ", problem.c_str());
    }
  } else {
    std::printf("CUDA vs CPU: skipped (%s)\n", cuda::unavailable_reason().c_str());
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%d passed, %d failed in %.1f s\n", passed, failed, seconds);
  return failed ? 1 : 0;
}

}  // namespace mrcnn::apps
