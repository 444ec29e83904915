// index_select, gather, scatter_add, index_add, nonzero: values, duplicates, bounds, gradchecks.
#include "cuda/context.h"
#include "tests/helpers.h"

using namespace mrcnn;
using test::expect_gradcheck;
using test::leaf;
using test::values;
using V = std::vector<Tensor>;

namespace {
Tensor idx(std::vector<int64_t> v, Shape shape) { return from_vector<int64_t>(v, shape); }
}  // namespace

TEST_CASE("index: values, including duplicate indices") {
  const Tensor x = ops::reshape(arange(0, 12, 1, kFloat64), {3, 4});
  CHECK(values(ops::index_select(x, 0, idx({2, 0, 2}, {3}))) == std::vector<double>{8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11});
  CHECK(values(ops::index_select(x, 1, idx({3}, {1}))) == std::vector<double>{3, 7, 11});
  CHECK(values(ops::gather(x, 1, idx({0, 3, 1, 1, 2, 0}, {3, 2}))) == std::vector<double>{0, 3, 5, 5, 10, 8});
  const Tensor added = ops::scatter_add(zeros({2, 3}, kFloat64), 1, idx({0, 0, 2, 1}, {2, 2}),
                                        from_vector<double>({1, 2, 3, 4}, {2, 2}));
  CHECK(values(added) == std::vector<double>{3, 0, 0, 0, 4, 3});
  const Tensor indexed = ops::index_add(zeros({3}, kFloat64), 0, idx({1, 1, 0}, {3}), from_vector<double>({1, 2, 4}, {3}));
  CHECK(values(indexed) == std::vector<double>{4, 3, 0});
  const Tensor nz = ops::nonzero(from_vector<double>({0, 1, 0, 2, 3, 0}, {2, 3}));
  CHECK(nz.sizes() == Shape{3, 2});
  CHECK(to_vector<int64_t>(nz) == std::vector<int64_t>{0, 1, 1, 0, 1, 1});
  CHECK(ops::nonzero(zeros({4})).sizes() == Shape{0, 1});
}

TEST_CASE("index: out-of-range indices and bad shapes are reported") {
  const Tensor x = zeros({3, 4});
  CHECK(test::error_of([&] { ops::index_select(x, 0, idx({3}, {1})); }) ==
        "index_select: index 3 is out of bounds for dim 0 with size 3");
  CHECK(test::error_of([&] { ops::gather(x, 1, idx({-1}, {1, 1})); }) ==
        "gather: index -1 is out of bounds for dim 1 with size 4");
  CHECK(test::error_of([&] { ops::gather(x, 1, idx({0}, {1})); }) ==
        "gather: index [1] must have as many dims as input [3, 4]");
  CHECK(test::error_of([&] { ops::index_select(x, 0, zeros({1})); }) == "index_select: index must be int64, got float32");
  // Bool tensors cannot be accumulated into.
  const Tensor flags = zeros({2, 2}, kBool);
  CHECK(test::error_of([&] { ops::index_add(flags, 0, idx({1}, {1}), zeros({1, 2}, kBool)); }) ==
        "index_add: bool tensors are not supported");
  CHECK(test::error_of([&] { ops::scatter_add(flags, 1, idx({0}, {1, 1}), zeros({1, 1}, kBool)); }) ==
        "scatter_add: bool tensors are not supported");
}

TEST_CASE("gradcheck: index ops") {
  expect_gradcheck([](const V& in) { return ops::index_select(in[0], 1, idx({2, 0, 2}, {3})); }, {leaf({3, 4}, 71)});
  expect_gradcheck([](const V& in) { return ops::index_select(in[0], 0, idx({1, 1}, {2})); },
                   {test::noncontiguous_leaf({3, 4}, 72)});
  expect_gradcheck([](const V& in) { return ops::gather(in[0], 0, idx({0, 2, 2, 1, 0, 0}, {2, 3})); }, {leaf({3, 3}, 73)});
  expect_gradcheck([](const V& in) { return ops::scatter_add(in[0], 1, idx({0, 0, 2, 1}, {2, 2}), in[1]); },
                   {leaf({2, 3}, 74), leaf({2, 2}, 75)});
  expect_gradcheck([](const V& in) { return ops::index_add(in[0], 0, idx({1, 1, 0}, {3}), in[1]); },
                   {leaf({2, 4}, 76), leaf({3, 4}, 77)});
}

TEST_CASE("cuda: index ops match the CPU") {
  if (test::setup_cuda_or_skip("index ops on CUDA")) return;
  const Tensor rows = from_vector<int64_t>({2, 0, 2, 1}, {4});
  const Tensor fibers = from_vector<int64_t>({0, 2, 1, 1, 0, 2}, {3, 2});
  // Copies are exact; gradients are atomic sums of a few O(1) values: 1e-14.
  test::expect_cuda_matches_cpu([&](const V& v) { return ops::index_select(v[0], 0, ops::to(rows, v[0].device())); },
                                {leaf({3, 4}, 1)}, 1e-14);
  test::expect_cuda_matches_cpu([&](const V& v) { return ops::index_select(v[0], 1, ops::to(rows, v[0].device())); },
                                {test::noncontiguous_leaf({2, 3}, 2)}, 1e-14);
  test::expect_cuda_matches_cpu([&](const V& v) { return ops::gather(v[0], 1, ops::to(fibers, v[0].device())); },
                                {leaf({3, 3}, 3)}, 1e-14);
  test::expect_cuda_matches_cpu(
      [&](const V& v) { return ops::scatter_add(v[0], 1, ops::to(fibers, v[0].device()), v[1]); },
      {leaf({3, 3}, 4), leaf({3, 2}, 5)}, 1e-14);
  test::expect_cuda_matches_cpu([&](const V& v) { return ops::index_add(v[0], 0, ops::to(rows, v[0].device()), v[1]); },
                                {leaf({3, 2}, 6), leaf({4, 2}, 7)}, 1e-14);
  test::expect_cuda_matches_cpu([&](const V& v) { return ops::index_select(v[0], 0, zeros({0}, kInt64, v[0].device())); },
                                {leaf({3, 4}, 8)}, 0.0);
  const Tensor mask = from_vector<double>({0, 1, 0, 2, 0, 3}, {2, 3});
  CHECK(test::values(ops::nonzero(ops::to(mask, test::gpu()))) == test::values(ops::nonzero(mask)));
  CHECK(ops::nonzero(ops::to(mask, test::gpu())).device() == test::gpu());
  test::expect_cuda_gradcheck([&](const V& v) { return ops::gather(v[0], 1, ops::to(fibers, test::gpu())); }, {leaf({3, 3}, 9)});
  CHECK(test::error_of([] { ops::index_select(zeros({3}, kFloat32, test::gpu()), 0, ops::to(from_vector<int64_t>({3}, {1}), test::gpu())); }) ==
        "index_select: index 3 is out of bounds for dim 0 with size 3");
  // Indices held on the host go with GPU data as they are (checked there, then uploaded): forward
  // and backward equal the CPU's, and no download happens for the check.
  test::expect_cuda_matches_cpu([&](const V& v) { return ops::index_select(v[0], 0, rows); }, {leaf({3, 4}, 10)}, 1e-14);
  test::expect_cuda_matches_cpu([&](const V& v) { return ops::gather(v[0], 1, fibers); }, {leaf({3, 3}, 11)}, 1e-14);
  test::expect_cuda_matches_cpu([&](const V& v) { return ops::scatter_add(v[0], 1, fibers, v[1]); },
                                {leaf({3, 3}, 12), leaf({3, 2}, 13)}, 1e-14);
  test::expect_cuda_matches_cpu([&](const V& v) { return ops::index_add(v[0], 0, rows, v[1]); },
                                {leaf({3, 2}, 14), leaf({4, 2}, 15)}, 1e-14);
  const Tensor data = ops::to(leaf({3, 4}, 16), test::gpu());
  cuda::reset_transfer_stats();
  (void)ops::index_select(data, 0, rows);
  CHECK(cuda::transfer_stats().downloads == 0);
  CHECK(test::error_of([] { ops::gather(zeros({2, 2}, kFloat32, test::gpu()), 1, from_vector<int64_t>({0, 2, 1, 0}, {2, 2})); }) ==
        "gather: index 2 is out of bounds for dim 1 with size 2");
  // A GPU index with host data stays an error.
  if (!test::rehearsing())
    CHECK(test::error_of([] { ops::index_select(zeros({3}), 0, ops::to(from_vector<int64_t>({1}, {1}), test::gpu())); }) ==
          "index_select: tensors on different devices: cpu and cuda:0");
}
