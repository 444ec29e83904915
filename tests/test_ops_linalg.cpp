// matmul/linear: values against a naive product, transposed operands, batches, gradchecks.
#include <fstream>
#include <iostream>
#include <sstream>

#include "bench/timing.h"
#include "cuda/context.h"
#include "ops/fma_peak.h"
#include "ops/gemm.h"
#include "tensor/flop_count.h"
#include "tensor/parallel.h"
#include "tests/helpers.h"

using namespace mrcnn;
using test::expect_gradcheck;
using test::leaf;
using test::values;
using V = std::vector<Tensor>;

namespace {
Tensor naive_matmul(const Tensor& a, const Tensor& b) {
  const auto va = values(ops::contiguous(a)), vb = values(ops::contiguous(b));
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  std::vector<double> c(static_cast<size_t>(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t p = 0; p < k; ++p) c[i * n + j] += va[i * k + p] * vb[p * n + j];
  return from_vector<double>(c, {m, n});
}
}  // namespace

TEST_CASE("matmul: values match a naive product, including transposed views and large panels") {
  CHECK(values(ops::matmul(from_vector<double>({1, 2, 3, 4}, {2, 2}), from_vector<double>({5, 6, 7, 8}, {2, 2}))) ==
        std::vector<double>{19, 22, 43, 50});
  Generator g(41);
  for (auto [m, k, n] : std::vector<std::array<int64_t, 3>>{{3, 5, 4}, {130, 70, 300}, {300, 64, 20}, {1, 7, 1}}) {
    const Tensor a = randn({m, k}, kFloat64, kCPU, &g), b = randn({k, n}, kFloat64, kCPU, &g);
    const Tensor expected = naive_matmul(a, b);
    CHECK(test::max_abs_diff(ops::matmul(a, b), expected) < 1e-12 * static_cast<double>(k));
    const Tensor at = ops::contiguous(ops::transpose(a, 0, 1)), bt = ops::contiguous(ops::transpose(b, 0, 1));
    CHECK(test::max_abs_diff(ops::matmul(ops::transpose(at, 0, 1), ops::transpose(bt, 0, 1)), expected) <
          1e-12 * static_cast<double>(k));
  }
  CHECK(values(ops::matmul(zeros({2, 0}, kFloat64), zeros({0, 3}, kFloat64))) == std::vector<double>(6, 0.0));
}

TEST_CASE("matmul: batched and broadcast forms, linear") {
  Generator g(42);
  const Tensor a = randn({3, 4, 5}, kFloat64, kCPU, &g), b = randn({3, 5, 2}, kFloat64, kCPU, &g);
  const Tensor c = ops::matmul(a, b);
  CHECK(c.sizes() == Shape{3, 4, 2});
  CHECK(test::max_abs_diff(ops::select(c, 0, 1), naive_matmul(ops::select(a, 0, 1), ops::select(b, 0, 1))) < 1e-12);
  const Tensor w = randn({5, 6}, kFloat64, kCPU, &g);
  CHECK(ops::matmul(a, w).sizes() == Shape{3, 4, 6});
  const Tensor weight = from_vector<double>({1, 0, 0, 1, 1, 1}, {3, 2}), bias = from_vector<double>({0, 10, 20}, {3});
  CHECK(values(ops::linear(from_vector<double>({2, 3}, {1, 2}), weight, bias)) == std::vector<double>{2, 13, 25});
  CHECK(test::error_of([] { ops::matmul(zeros({2, 3}), zeros({4, 5})); }) ==
        "matmul: shapes [2, 3] and [4, 5] cannot be multiplied (3 != 4)");
  CHECK(test::error_of([] { ops::linear(zeros({2, 3}), zeros({4, 5})); }) ==
        "linear: input [2, 3] does not end in weight's in_features 5");
}

TEST_CASE("gradcheck: matmul and linear") {
  expect_gradcheck([](const V& in) { return ops::matmul(in[0], in[1]); }, {leaf({3, 4}, 43), leaf({4, 2}, 44)});
  expect_gradcheck([](const V& in) { return ops::matmul(in[0], in[1]); }, {leaf({2, 3, 4}, 45), leaf({2, 4, 5}, 46)});
  expect_gradcheck([](const V& in) { return ops::matmul(in[0], in[1]); }, {leaf({2, 3, 4}, 47), leaf({4, 5}, 48)});
  expect_gradcheck([](const V& in) { return ops::matmul(in[0], in[1]); },
                   {test::noncontiguous_leaf({3, 4}, 49), test::noncontiguous_leaf({4, 2}, 50)});
  expect_gradcheck([](const V& in) { return ops::linear(in[0], in[1], in[2]); },
                   {leaf({2, 3, 4}, 51), leaf({5, 4}, 52), leaf({5}, 53)});
}

TEST_CASE("linear: the weight's gradient is computed contiguous, equal to dout^T x") {
  // linear multiplies by weight^T, a transposed view; its gradient is produced in the weight's own
  // layout, so the leaf takes it without copying it out of a transposed view.
  Generator g(54);
  for (const DType dtype : {kFloat64, kFloat32}) {
    Tensor x = ops::to(randn({7, 5}, kFloat64, kCPU, &g), dtype).set_requires_grad(true);
    Tensor weight = ops::to(randn({3, 5}, kFloat64, kCPU, &g), dtype).set_requires_grad(true);
    const Tensor dout = ops::to(randn({7, 3}, kFloat64, kCPU, &g), dtype);
    autograd::backward(ops::linear(x, weight), dout);
    REQUIRE(weight.grad().defined());
    CHECK(weight.grad().is_contiguous());
    const double tol = dtype == kFloat64 ? 1e-12 : 1e-5;
    CHECK(test::max_abs_diff(weight.grad(), naive_matmul(ops::transpose(ops::to(dout, kFloat64), 0, 1), ops::to(x, kFloat64))) < tol);
    CHECK(test::max_abs_diff(x.grad(), naive_matmul(ops::to(dout, kFloat64), ops::to(weight, kFloat64))) < tol);
  }
  // What matmul hands back for its transposed operand: the transpose of a contiguous [3, 5], i.e.
  // strides {1, 5} like the operand itself (a probe op between transpose and matmul records it).
  Tensor weight = randn({3, 5}, kFloat64, kCPU, &g).set_requires_grad(true);
  Tensor seen;
  const Tensor wt = ops::transpose(weight, 0, 1);
  const Tensor probe = autograd::record("probe", wt.detach(), {wt}, [&seen](const Tensor& d) {
    seen = d;
    return std::vector<Tensor>{d};
  });
  autograd::backward(ops::sum(ops::matmul(randn({4, 5}, kFloat64, kCPU, &g), probe)));
  REQUIRE(seen.defined());
  CHECK(seen.sizes() == Shape{5, 3});
  CHECK(seen.strides() == Shape{1, 5});
  CHECK(weight.grad().is_contiguous());
}

TEST_CASE("gemm: float32 accumulate mode adds into C") {
  std::vector<float> a{1, 2, 3, 4}, b{1, 0, 0, 1}, c{10, 10, 10, 10};
  cpu::gemm<float>(false, false, 2, 2, 2, a.data(), 2, b.data(), 2, c.data(), 2, true);
  CHECK(c == std::vector<float>{11, 12, 13, 14});
  cpu::gemm<float>(true, false, 2, 2, 2, a.data(), 2, b.data(), 2, c.data(), 2, false);
  CHECK(c == std::vector<float>{1, 3, 2, 4});
}

TEST_CASE("gemm: packed float kernel on edge shapes, every transpose, both panel splits") {
  // Shapes cross the kernel's tile (6 x 16), depth block (256) and column block (3072) edges; the
  // next two have enough work for several panels, split by rows and by columns respectively; the
  // last has a C too small for panels and is split along K (4 chunks of 1250).
  const std::vector<std::array<int64_t, 3>> shapes = {{1, 1, 1},       {7, 19, 5},     {6, 16, 256},
                                                      {13, 33, 300},   {300, 100, 300}, {50, 3100, 40},
                                                      {40, 50, 5000}};
  Generator g(43);
  for (const cpu::GemmKernel kernel : {cpu::GemmKernel::Packed, cpu::GemmKernel::Eigen}) {
    cpu::set_gemm_kernel(kernel);
    for (const auto& [m, n, k] : shapes)
      for (const bool trans_a : {false, true})
        for (const bool trans_b : {false, true})
          for (const bool accumulate : {false, true}) {
            CAPTURE(m);
            CAPTURE(n);
            CAPTURE(k);
            CAPTURE(trans_a);
            CAPTURE(trans_b);
            CAPTURE(accumulate);
            const Tensor a = randn(trans_a ? Shape{k, m} : Shape{m, k}, kFloat32, kCPU, &g);
            const Tensor b = randn(trans_b ? Shape{n, k} : Shape{k, n}, kFloat32, kCPU, &g);
            const Tensor c0 = randn({m, n}, kFloat32, kCPU, &g);
            Tensor c = ops::clone(c0);
            cpu::gemm<float>(trans_a, trans_b, m, n, k, a.data<float>(), trans_a ? m : k, b.data<float>(),
                             trans_b ? k : n, c.data<float>(), n, accumulate);
            const Tensor op_a = ops::to(trans_a ? ops::transpose(a, 0, 1) : a, kFloat64);
            const Tensor op_b = ops::to(trans_b ? ops::transpose(b, 0, 1) : b, kFloat64);
            Tensor expected = naive_matmul(op_a, op_b);
            if (accumulate) expected = ops::add(expected, ops::to(c0, kFloat64));
            // float32 sums of k products of N(0,1) values: rounding grows like k * 2^-24 per term.
            CHECK(test::max_abs_diff(ops::to(c, kFloat64), expected) < 1e-6 * static_cast<double>(k + 4));
          }
  }
  cpu::set_gemm_kernel(cpu::GemmKernel::Packed);
}

namespace {
bool cublas_mapped() {
  std::ifstream maps("/proc/self/maps");
  std::stringstream text;
  text << maps.rdbuf();
  return text.str().find("libcublas") != std::string::npos;
}
}  // namespace

TEST_CASE("cublas: not loaded at start-up, but on first use, with every entry point (no GPU needed)") {
  if (!cuda::built_with_cuda()) {
    MESSAGE("SKIPPED: cuBLAS loading: built without CUDA");
    std::cout << "SKIPPED: cuBLAS loading: built without CUDA\n";
    return;
  }
  // CPU work in a CUDA build never maps cuBLAS (nor the 500 MB libcublasLt it pulls in).
  (void)ops::matmul(ones({4, 3}), ones({3, 2}));
  CHECK(!cublas_mapped());
  CHECK(cuda::cublas_load_error() == "");
  CHECK(cublas_mapped());
}

TEST_CASE("cuda: matmul and linear match the CPU (cuBLAS)") {
  if (test::setup_cuda_or_skip("matmul on CUDA")) return;
  using test::leaf;
  using VT = std::vector<Tensor>;
  // float64 sums of <= 40 O(1) products in another order: 1e-12. float32 (TF32 off): 1e-4.
  for (const bool single : {false, true}) {
    const double tol = single ? 1e-4 : 1e-12;
    auto in = [&](const Shape& s, uint64_t seed) { return single ? ops::to(leaf(s, seed), kFloat32) : leaf(s, seed); };
    test::expect_cuda_matches_cpu([](const VT& v) { return ops::matmul(v[0], v[1]); }, {in({7, 40}, 1), in({40, 9}, 2)}, tol);
    test::expect_cuda_matches_cpu([](const VT& v) { return ops::matmul(v[0], v[1]); }, {in({3, 5, 6}, 3), in({3, 6, 4}, 4)}, tol);
    test::expect_cuda_matches_cpu([](const VT& v) { return ops::matmul(v[0], v[1]); }, {in({3, 5, 6}, 5), in({6, 4}, 6)}, tol);
    test::expect_cuda_matches_cpu([](const VT& v) { return ops::linear(v[0], v[1], v[2]); },
                                  {in({5, 12}, 7), in({3, 12}, 8), in({3}, 9)}, tol);
  }
  // Transposed views go to cuBLAS as transposed operands; empty and k = 0 products.
  test::expect_cuda_matches_cpu([](const VT& v) { return ops::matmul(ops::transpose(v[0], 0, 1), v[1]); },
                                {leaf({6, 5}, 10), test::noncontiguous_leaf({6, 3}, 11)}, 1e-12);
  test::expect_cuda_matches_cpu([](const VT& v) { return ops::matmul(v[0], v[1]); }, {leaf({0, 4}, 12), leaf({4, 3}, 13)}, 0.0);
  test::expect_cuda_matches_cpu([](const VT& v) { return ops::matmul(v[0], v[1]); }, {leaf({2, 0}, 14), leaf({0, 3}, 15)}, 0.0);
  test::expect_cuda_gradcheck([](const VT& v) { return ops::linear(v[0], v[1], v[2]); },
                              {leaf({4, 5}, 16), leaf({3, 5}, 17), leaf({3}, 18)});
}

TEST_CASE("matmul and linear count their arithmetic: 2 flops per multiply-add, forward and each gradient") {
  Tensor a = leaf({3, 5}, 601), b = leaf({5, 7}, 602);
  int64_t before = flops_counted();
  Tensor c = ops::matmul(a, b);
  CHECK(flops_counted() - before == 2 * 3 * 5 * 7);
  before = flops_counted();
  autograd::backward(ops::sum(c));
  CHECK(flops_counted() - before == 2 * (2 * 3 * 5 * 7));  // dA = dC B^T and dB = A^T dC
  before = flops_counted();
  autograd::backward(ops::sum(ops::matmul(a.detach(), b)));  // forward, then only dB
  CHECK(flops_counted() - before == 2 * (2 * 3 * 5 * 7));
  before = flops_counted();
  (void)ops::matmul(leaf({4, 3, 5}, 603), leaf({4, 5, 7}, 604));
  (void)ops::matmul(leaf({4, 3, 5}, 605), b);
  CHECK(flops_counted() - before == 2 * (2 * 4 * 3 * 5 * 7));
  before = flops_counted();
  (void)ops::linear(leaf({6, 5}, 606), leaf({7, 5}, 607), leaf({7}, 608));
  CHECK(flops_counted() - before == 2 * 6 * 5 * 7);  // the bias add is not counted
}

TEST_CASE("measure_fma_peak: within what the vector width allows, and not beaten by the packed GEMM") {
  if (!cpu::cpu_has_avx2_fma()) {
    MESSAGE("SKIPPED: this CPU has no AVX2/FMA, measure_fma_peak reports 0");
    CHECK(cpu::measure_fma_peak(1).gflops == 0);
    return;
  }
  const cpu::FmaPeak one = cpu::measure_fma_peak(1);
  CHECK(one.threads == 1);
  CHECK((one.vector_floats == 8 || one.vector_floats == 16));
  // No core retires more than two vector FMAs per cycle, and none runs at 6 GHz: a flop miscount by
  // the chain or lane count would exceed this.
  CHECK(one.gflops > 0);
  CHECK(one.gflops <= 2 * one.vector_floats * 2 * 6.0);
  // The packed GEMM (~85-92% of peak on this size) cannot run faster than the FMA units: a peak
  // counted too low by half (half the chains, half the lanes) would put it at ~1.8x. The bound
  // leaves room for noise: best of five GEMMs against the highest of six peak measurements taken
  // between them, and 1.5x, so that another process slowing one side does not decide it (with only
  // two peak measurements, a build sharing both cores once slowed both and the test failed).
  const int64_t n = 384;
  std::vector<float> x(static_cast<size_t>(n * n), 0.5f), y(static_cast<size_t>(n * n), 0.25f), z(static_cast<size_t>(n * n));
  double best_seconds = 1e9, peak = one.gflops;
  {
    const test::ThreadCount single(1);
    for (int run = 0; run < 5; ++run) {
      best_seconds = std::min(best_seconds, bench::median_seconds([&] {
        cpu::gemm<float>(false, false, n, n, n, x.data(), n, y.data(), n, z.data(), n);
      }, {1, 0.0, 1}));
      peak = std::max(peak, cpu::measure_fma_peak(1).gflops);
    }
  }
  const double gemm_gflops = 2.0 * n * n * n / best_seconds * 1e-9;
  CHECK(z[0] == doctest::Approx(0.5 * 0.25 * n));
  CHECK(gemm_gflops < 1.5 * peak);
  MESSAGE("FMA peak on one thread " << peak << " GFLOP/s, packed GEMM " << n << "^3 " << gemm_gflops << " GFLOP/s");
}

TEST_CASE("cuda: the GPU's measured FMA peak lies within what its SMs and clock allow") {
  if (test::setup_real_cuda_or_skip("GPU FMA peak")) return;
  const cuda::GpuFmaPeak peak = cuda::measure_fma_peak();
  REQUIRE(peak.multiprocessors > 0);
  REQUIRE(peak.max_clock_ghz > 0);
  // 128 float32 lanes per SM is the most any NVIDIA architecture has had (Ampere, Hopper); a flop
  // miscount, or a kernel that leaves SMs idle, lands outside. The lower end allows 64-lane SMs
  // (Turing) and a clock held below its maximum under load.
  const double bound = peak.multiprocessors * 128 * 2 * peak.max_clock_ghz;
  CHECK(peak.gflops <= 1.05 * bound);
  CHECK(peak.gflops >= 0.25 * bound);
  MESSAGE("GPU FMA peak " << peak.gflops << " GFLOP/s; bound " << bound << " GFLOP/s (" << peak.multiprocessors << " SMs, "
                          << peak.max_clock_ghz << " GHz)");
}
