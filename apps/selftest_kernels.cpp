// The float32 half of `mrcnn selftest`: the CPU kernels a model runs in float32 are chosen at run
// time from this CPU's features (AVX-512 direct-convolution tiles, AVX2/FMA packed GEMM, Winograd,
// framed weight gradients, ...), so the gradchecks, which run in float64 through the generic paths,
// never reach them. Each case here runs one convolution or product whose shape selects a kernel,
// forward and both gradients, in float32 and in float64, and compares them; the conv profile names
// the kernels that ran, so the table shows what this machine uses.
#include "apps/selftest_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "ops/conv_profile.h"
#include "ops/gemm.h"
#include "ops/ops.h"
#include "tensor/random.h"

namespace mrcnn::apps {

namespace {

using KernelCase = SelftestCase<Shape>;

std::vector<KernelCase> kernel_cases() {
  using namespace ops;
  const auto conv = [](Conv2dOptions o) { return [o](const auto& v) { return conv2d(v[0], v[1], Tensor(), o); }; };
  return {
      {"conv 3x3, 8 -> 20 channels, 20 x 48 maps", conv({1, 1}), {{2, 8, 20, 48}, {20, 8, 3, 3}}},
      {"conv 3x3, 16 -> 13 channels, 24 x 24 maps", conv({1, 1}), {{2, 16, 24, 24}, {13, 16, 3, 3}}},
      {"conv 3x3, 32 -> 24 channels, 8 x 8 maps", conv({1, 1}), {{2, 32, 8, 8}, {24, 32, 3, 3}}},
      {"conv 3x3, 128 channels, 8 x 7 maps", conv({1, 1}), {{2, 128, 8, 7}, {128, 128, 3, 3}}},
      {"conv 3x3, 64 channels, 8 x 6 maps, batch 4", conv({1, 1}), {{4, 64, 8, 6}, {64, 64, 3, 3}}},
      {"conv 3x3 stride 2, groups 2", conv({2, 1, 1, 2}), {{3, 6, 9, 7}, {4, 3, 3, 3}}},
      {"conv 7x7 stride 2 (stem)", conv({2, 3}), {{2, 3, 64, 48}, {16, 3, 7, 7}}},
      {"conv 1x1 stride 2, 24 -> 256 channels", conv({2, 0}), {{2, 24, 32, 32}, {256, 24, 1, 1}}},
      {"conv 1x1, 32 -> 48 channels", conv({1, 0}), {{2, 32, 20, 20}, {48, 32, 1, 1}}},
      {"conv 3x3, 8 -> 13 channels, 70 x 64 maps", conv({1, 1}), {{1, 8, 70, 64}, {13, 8, 3, 3}}},
      {"conv 3x3, 256 channels, 64 x 64 maps", conv({1, 1}), {{1, 256, 64, 64}, {256, 256, 3, 3}}},
      {"conv_transpose 2x2 stride 2 (mask head)",
       [](const auto& v) { return conv_transpose2d(v[0], v[1], Tensor(), {2}); }, {{6, 16, 14, 14}, {16, 8, 2, 2}}},
      {"matmul 70 x 300 x 90", [](const auto& v) { return matmul(v[0], v[1]); }, {{70, 300}, {300, 90}}},
  };
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// max |a - b| over max |b|: float32 rounding is relative to the values' scale.
double relative_error(const Tensor& a, const Tensor& b) {
  const auto x = to_vector<double>(ops::to(a, kFloat64)), y = to_vector<double>(b);
  if (x.size() != y.size()) return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
  return worst / std::max(max_abs(y), 1e-30);
}

// "forward: ..., input grad: ..., weight grad: ..." from the conv profile's records.
std::string routes_of(const std::vector<ops::ConvCallRecord>& records) {
  std::string out;
  for (const char* pass : {"forward", "input grad", "weight grad"})
    for (const auto& r : records)
      if (r.pass == pass) out += (out.empty() ? "" : "; ") + std::string(pass) + ": " + r.route;
  return out;
}

}  // namespace

void selftest_float32_kernels(int& passed, int& failed) {
  std::printf("float32 kernels of this CPU (AVX2/FMA %s, AVX-512 %s) vs float64: forward and gradients, max |error| / max |value| <= %.0e\n",
              cpu::cpu_has_avx2_fma() ? "yes" : "no", cpu::use_avx512() ? "yes" : "no", kFloat32KernelBound);
  uint64_t seed = 1000;
  for (const KernelCase& c : kernel_cases()) {
    std::string problem, routes;
    double worst = 0;
    try {
      std::vector<Tensor> in64, in32;
      for (const Shape& shape : c.inputs) {
        Generator generator(++seed);
        const Tensor values = randn(shape, kFloat64, kCPU, &generator);
        in64.push_back(values.detach().set_requires_grad(true));
        in32.push_back(ops::to(values, kFloat32).set_requires_grad(true));
      }
      const Tensor y64 = c.f(in64);
      Generator generator(++seed);
      const Tensor weights = randn(y64.sizes(), kFloat64, kCPU, &generator);
      autograd::backward(ops::sum(ops::mul(y64, weights)));
      ops::reset_conv_profile();
      ops::set_conv_profiling(true);
      const Tensor y32 = c.f(in32);
      autograd::backward(ops::sum(ops::mul(y32, ops::to(weights, kFloat32))));
      ops::set_conv_profiling(false);
      routes = routes_of(ops::conv_profile());
      ops::reset_conv_profile();
      worst = relative_error(y32, y64);
      for (size_t i = 0; i < in64.size(); ++i) worst = std::max(worst, relative_error(in32[i].grad(), in64[i].grad()));
    } catch (const std::exception& e) {
      ops::set_conv_profiling(false);
      problem = e.what();
    }
    const bool ok = problem.empty() && worst <= kFloat32KernelBound;
    ok ? ++passed : ++failed;
    std::printf("  %-44s %12.2e  %s%s%s\n", c.name.c_str(), worst, ok ? "pass" : "FAIL ", problem.c_str(),
                routes.empty() ? "" : ("  (" + routes + ")").c_str());
  }
}

}  // namespace mrcnn::apps
