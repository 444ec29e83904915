// sort/topk: values, stability of ties, NaN order, k bounds; results are detached.
#include <cmath>

#include "tests/helpers.h"

using namespace mrcnn;
using test::values;

TEST_CASE("sort: ascending, descending and stable ties") {
  const Tensor x = from_vector<double>({3, 1, 2, 1, 5, 0}, {2, 3});
  const auto s = ops::sort(x, 1);
  CHECK(values(s.values) == std::vector<double>{1, 2, 3, 0, 1, 5});
  CHECK(to_vector<int64_t>(s.indices) == std::vector<int64_t>{1, 2, 0, 2, 0, 1});
  const auto ties = ops::sort(from_vector<double>({2, 1, 2, 1}, {4}), 0, true);
  CHECK(to_vector<int64_t>(ties.indices) == std::vector<int64_t>{0, 2, 1, 3});
  const auto columns = ops::sort(x, 0);
  CHECK(values(columns.values) == std::vector<double>{1, 1, 0, 3, 5, 2});
  const auto nan_last = ops::sort(from_vector<double>({NAN, 1, 0}, {3}));
  CHECK(to_vector<int64_t>(nan_last.indices) == std::vector<int64_t>{2, 1, 0});
}

TEST_CASE("topk: largest and smallest k in order") {
  const Tensor x = from_vector<double>({0.1, 0.9, 0.5, 0.7}, {4});
  const auto top = ops::topk(x, 2);
  CHECK(values(top.values) == std::vector<double>{0.9, 0.7});
  CHECK(to_vector<int64_t>(top.indices) == std::vector<int64_t>{1, 3});
  CHECK(to_vector<int64_t>(ops::topk(x, 3, 0, false).indices) == std::vector<int64_t>{0, 2, 3});
  CHECK(ops::topk(x, 0).values.sizes() == Shape{0});
  CHECK(test::error_of([&] { ops::topk(x, 5); }) == "topk: k = 5 is out of range for dim 0 of shape [4]");
  Tensor g = ones({3}, kFloat64).set_requires_grad(true);
  CHECK(!ops::sort(g).values.requires_grad());
}

TEST_CASE("cuda: sort and topk match the CPU (CUB, stable)") {
  if (test::setup_cuda_or_skip("sort on CUDA")) return;
  // Ties (repeated values) must keep index order, as the CPU's stable sort does.
  const Tensor x = from_vector<double>({3, 1, 2, 3, 0, 1, 5, 5, -1, 2, 2, 7}, {3, 4});
  for (const DType dt : {kFloat32, kFloat64, kInt64}) {
    const Tensor cpu_x = ops::to(x, dt), gpu_x = ops::to(cpu_x, test::gpu());
    for (const bool descending : {false, true})
      for (const int64_t dim : {0, 1}) {
        const auto c = ops::sort(cpu_x, dim, descending), g = ops::sort(gpu_x, dim, descending);
        CHECK(test::values(c.values) == test::values(g.values));
        CHECK(test::values(c.indices) == test::values(g.indices));
      }
    const auto c = ops::topk(cpu_x, 2, 1), g = ops::topk(gpu_x, 2, 1);
    CHECK(test::values(c.values) == test::values(g.values));
    CHECK(test::values(c.indices) == test::values(g.indices));
  }
  // One long row (the single-segment path) of random values with many ties.
  Generator gen(5);
  const Tensor scores = ops::to(ops::mul(randn({5000}, kFloat64, kCPU, &gen), 3.0), kInt64);
  const auto c = ops::sort(scores, 0, true), g = ops::sort(ops::to(scores, test::gpu()), 0, true);
  CHECK(test::values(c.indices) == test::values(g.indices));
  CHECK(ops::sort(zeros({0}, kFloat32, test::gpu()), 0).values.numel() == 0);
}
