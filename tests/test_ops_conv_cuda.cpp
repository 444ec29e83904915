// conv2d / conv_transpose2d on CUDA: cuDNN's algorithm choice and batch buckets (checked without a
// GPU), and every direction against the CPU through cuDNN and, for 1x1 convolutions, through
// cuBLAS products (skipped without a device, rehearsed on the CPU).
#include <limits>
#include <set>

#include "cuda/context.h"
#include "cuda/conv.h"
#include "autograd/engine.h"
#include "ops/conv.h"
#include "ops/conv_profile.h"
#include "ops/ops.h"
#include "tests/helpers.h"

using namespace mrcnn;
using ops::conv2d;
using ops::conv_transpose2d;
using test::leaf;
using VT = std::vector<Tensor>;

namespace {
Tensor f32(const Tensor& x) { return ops::to(x, kFloat32); }
}  // namespace

TEST_CASE("conv2d: on CUDA the algorithm is the fastest allowed within the workspace limit (no GPU needed)") {
  constexpr size_t none = std::numeric_limits<size_t>::max();
  // As cuDNN lists them, fastest first: one that failed, a TF32 one, then 100 and 10 bytes of workspace.
  const std::vector<cuda::AlgorithmCandidate> found = {{false, false, 0}, {true, true, 0}, {true, false, 100}, {true, false, 10}};
  CHECK(cuda::choose_algorithm(found, false, none) == 2);  // no limit: the fastest FMA one
  CHECK(cuda::choose_algorithm(found, true, none) == 1);   // TF32 allowed: the TF32 one
  CHECK(cuda::choose_algorithm(found, false, 100) == 2);   // the limit is inclusive
  CHECK(cuda::choose_algorithm(found, false, 50) == 3);    // the fastest that fits
  CHECK(cuda::choose_algorithm(found, false, 5) == 3);     // none fits: the least workspace
  // Ties on the least workspace go to the faster one; nothing allowed is -1.
  CHECK(cuda::choose_algorithm({{true, false, 30}, {true, false, 20}, {true, false, 20}}, false, 0) == 1);
  CHECK(cuda::choose_algorithm({{false, false, 0}, {true, true, 0}}, false, none) == -1);
  CHECK(cuda::choose_algorithm({}, true, none) == -1);
  // An exact shape keeps its batch bucket's algorithm when cuDNN takes it there within the limit, or
  // when it exceeded the limit at the bucket already (no search per exact shape then); else it searches.
  CHECK(cuda::keep_bucket_algorithm(true, 100, 120, none));
  CHECK(cuda::keep_bucket_algorithm(true, 100, 90, 100));    // fits, the limit inclusive
  CHECK(!cuda::keep_bucket_algorithm(true, 101, 90, 100));   // fitted at the bucket, not here: search
  CHECK(cuda::keep_bucket_algorithm(true, 300, 200, 100));   // nothing fitted at the bucket: keep
  CHECK(!cuda::keep_bucket_algorithm(false, 0, 0, none));    // refused at the exact shape: search
  // Without CUDA the limit is inert; with it, set and read back (it ends unlimited, as it began).
  if (cuda::built_with_cuda()) {
    cuda::set_conv_workspace_limit(size_t(64) << 20);
    CHECK(cuda::conv_workspace_limit() == size_t(64) << 20);
    cuda::set_conv_workspace_limit(none);
  }
  CHECK(cuda::conv_workspace_limit() == none);
}

TEST_CASE("conv2d: on CUDA the algorithm search runs once per power-of-two batch (no GPU needed)") {
  CHECK(cuda::search_batch(0) == 1);
  CHECK(cuda::search_batch(1) == 1);
  CHECK(cuda::search_batch(2) == 2);
  CHECK(cuda::search_batch(3) == 4);
  CHECK(cuda::search_batch(5) == 8);
  CHECK(cuda::search_batch(8) == 8);
  CHECK(cuda::search_batch(9) == 16);
  CHECK(cuda::search_batch(255) == 256);
  CHECK(cuda::search_batch(256) == 256);
  CHECK(cuda::search_batch(257) == 512);
  // 512 RoIs per image and 16 images: every count the heads see maps to one of 14 buckets.
  std::set<int64_t> buckets;
  for (int64_t n = 1; n <= 8192; ++n) buckets.insert(cuda::search_batch(n));
  CHECK(buckets.size() == 14);
}

TEST_CASE("cuda: conv2d and conv_transpose2d match the CPU (cuDNN)") {
  if (test::setup_cuda_or_skip("conv2d/conv_transpose2d on CUDA")) return;
  // float64: cuDNN and the CPU's GEMM sum the same <= 300 products of O(1) terms in different
  // orders; 1e-11 is ~1000 ulp of the O(10) results. float32: the same at 1e-7 relative -> 1e-4.
  for (const bool single : {false, true}) {
    const double tol = single ? 1e-4 : 1e-11;
    auto in = [&](const Shape& s, uint64_t seed) { return single ? f32(leaf(s, seed)) : leaf(s, seed); };
    test::expect_cuda_matches_cpu([](const VT& v) { return conv2d(v[0], v[1], v[2], {1, 1, 1, 1}); },
                                  {in({2, 3, 9, 8}, 1), in({4, 3, 3, 3}, 2), in({4}, 3)}, tol);
    test::expect_cuda_matches_cpu([](const VT& v) { return conv2d(v[0], v[1], Tensor(), {2, 3, 1, 1}); },
                                  {in({2, 1, 17, 15}, 4), in({3, 1, 7, 7}, 5)}, tol);
    test::expect_cuda_matches_cpu([](const VT& v) { return conv2d(v[0], v[1], Tensor(), {1, 2, 2, 2}); },
                                  {in({1, 4, 9, 9}, 6), in({4, 2, 3, 3}, 7)}, tol);
    test::expect_cuda_matches_cpu([](const VT& v) { return conv2d(v[0], v[1], v[2], {}); },
                                  {in({2, 6, 5, 4}, 8), in({5, 6, 1, 1}, 9), in({5}, 10)}, tol);
    test::expect_cuda_matches_cpu([](const VT& v) { return conv_transpose2d(v[0], v[1], v[2], {2}); },
                                  {in({2, 3, 4, 5}, 11), in({3, 2, 2, 2}, 12), in({2}, 13)}, tol);
    test::expect_cuda_matches_cpu([](const VT& v) { return conv_transpose2d(v[0], v[1], Tensor(), {2, 1, 1}); },
                                  {in({1, 4, 3, 3}, 14), in({4, 3, 3, 3}, 15)}, tol);
  }
  // A non-contiguous input and an empty batch.
  test::expect_cuda_matches_cpu([](const VT& v) { return conv2d(v[0], v[1], Tensor(), {1, 1, 1, 1}); },
                                {test::noncontiguous_leaf({1, 2, 6, 7}, 16), leaf({3, 2, 3, 3}, 17)}, 1e-11);
  test::expect_cuda_matches_cpu([](const VT& v) { return conv2d(v[0], v[1], v[2], {1, 1, 1, 1}); },
                                {leaf({0, 3, 5, 5}, 18), leaf({4, 3, 3, 3}, 19), leaf({4}, 20)}, 0.0);
  // Batches that share a search bucket (5, 6, 7 -> 8) and one that is its own (8): the algorithm
  // searched for the bucket runs the other batches (the mask head's batch is the RoI count). The
  // weight and bias gradients sum batch x 14 x 14 products, up to 1,568, where two float32 orders
  // part by more than the 1e-4 above allows for 300 (on an H200 three of these ten calls did: up to
  // 1.4e-4): each device's float32 is held to the summation bound against float64 instead.
  for (const int64_t batch : {5, 8, 6, 7, 3}) {
    test::expect_cuda_f32_within_summation_bound([](const VT& v) { return conv2d(v[0], v[1], v[2], {1, 1, 1, 1}); },
                                                 {leaf({batch, 8, 14, 14}, 27 + batch), leaf({8, 8, 3, 3}, 28), leaf({8}, 29)},
                                                 batch * 14 * 14);
    test::expect_cuda_f32_within_summation_bound([](const VT& v) { return conv_transpose2d(v[0], v[1], v[2], {2}); },
                                                 {leaf({batch, 8, 7, 7}, 40 + batch), leaf({8, 4, 2, 2}, 41), leaf({4}, 42)},
                                                 batch * 14 * 14);
  }
  test::expect_cuda_gradcheck([](const VT& v) { return conv2d(v[0], v[1], v[2], {2, 1, 1, 1}); },
                              {leaf({1, 2, 5, 6}, 21), leaf({3, 2, 3, 3}, 22), leaf({3}, 23)});
  if (!test::rehearsing()) {
    // The largest workspace is recorded with the convolution that took it (bench --profile prints it).
    cuda::reset_conv_workspace_record();
    CHECK(cuda::largest_conv_workspace().bytes == 0);
    CHECK(cuda::largest_conv_workspace().convolution.empty());
    (void)conv2d(ops::to(f32(leaf({4, 16, 33, 35}, 60)), test::gpu()), ops::to(f32(leaf({32, 16, 5, 5}, 61)), test::gpu()), Tensor(),
                 {1, 2, 1, 1});
    const cuda::ConvWorkspaceRecord record = cuda::largest_conv_workspace();
    if (record.bytes > 0)  // cuDNN's fastest algorithm may need none
      CHECK(record.convolution.rfind("forward float32 x [4, 16, 33, 35] w [32, 16, 5, 5] stride 1 pad 2, algorithm ", 0) == 0);
  }
  test::expect_cuda_gradcheck([](const VT& v) { return conv_transpose2d(v[0], v[1], v[2], {2}); },
                              {leaf({1, 2, 3, 3}, 24), leaf({2, 3, 2, 2}, 25), leaf({3}, 26)});
}

TEST_CASE("cuda: 1x1 convolutions match the CPU through cuBLAS products and through cuDNN") {
  if (test::setup_cuda_or_skip("1x1 conv2d/conv_transpose2d on CUDA")) return;
  const cuda::PointwiseRoute before = cuda::pointwise_route();
  const auto pointwise = [](const VT& v) { return conv2d(v[0], v[1], v[2], {}); };
  const auto pointwise_transposed = [](const VT& v) { return conv_transpose2d(v[0], v[1], v[2], {}); };
  for (const auto route : {cuda::PointwiseRoute::Products, cuda::PointwiseRoute::Cudnn, cuda::PointwiseRoute::Timed}) {
    CAPTURE(static_cast<int>(route));
    cuda::set_pointwise_route(route);
    for (const int64_t batch : {1, 3}) {
      CAPTURE(batch);
      // float64: at most 24 products per output or input gradient, batch x 35 per weight gradient.
      test::expect_cuda_matches_cpu(pointwise, {leaf({batch, 24, 5, 7}, 70 + batch), leaf({16, 24, 1, 1}, 71), leaf({16}, 72)}, 1e-11);
      test::expect_cuda_matches_cpu(pointwise_transposed, {leaf({batch, 16, 5, 7}, 73 + batch), leaf({16, 24, 1, 1}, 74), leaf({24}, 75)},
                                    1e-11);
      test::expect_cuda_f32_within_summation_bound(pointwise, {leaf({batch, 24, 5, 7}, 76 + batch), leaf({16, 24, 1, 1}, 77), leaf({16}, 78)},
                                                   batch * 35);
    }
    test::expect_cuda_matches_cpu(pointwise, {leaf({0, 24, 5, 7}, 79), leaf({16, 24, 1, 1}, 80), leaf({16}, 81)}, 0.0);
  }
  cuda::set_pointwise_route(cuda::PointwiseRoute::Products);
  // Strided or padded 1x1 convolutions are not products of the images' matrices: cuDNN's.
  test::expect_cuda_matches_cpu([](const VT& v) { return conv2d(v[0], v[1], v[2], {2}); },
                                {leaf({2, 8, 7, 6}, 82), leaf({4, 8, 1, 1}, 83), leaf({4}, 84)}, 1e-11);
  test::expect_cuda_matches_cpu([](const VT& v) { return conv2d(v[0], v[1], v[2], {1, 1}); },
                                {leaf({2, 8, 7, 6}, 85), leaf({4, 8, 1, 1}, 86), leaf({4}, 87)}, 1e-11);
  test::expect_cuda_gradcheck(pointwise, {leaf({2, 3, 4, 5}, 88), leaf({2, 3, 1, 1}, 89), leaf({2}, 90)});
  if (!test::rehearsing()) {
    // The profile names the route each direction took.
    for (const auto route : {cuda::PointwiseRoute::Products, cuda::PointwiseRoute::Cudnn}) {
      cuda::set_pointwise_route(route);
      ops::reset_conv_profile();
      ops::set_conv_profiling(true);
      const Tensor x = ops::to(leaf({2, 8, 6, 5}, 91), test::gpu()).detach().set_requires_grad(true);
      const Tensor w = ops::to(leaf({4, 8, 1, 1}, 92), test::gpu()).detach().set_requires_grad(true);
      autograd::backward(ops::sum(conv2d(x, w, Tensor(), {})));
      ops::set_conv_profiling(false);
      const auto records = ops::conv_profile();
      CHECK(records.size() == 3);
      for (const ops::ConvCallRecord& r : records) {
        CAPTURE(r.pass);
        CHECK(r.route == (route == cuda::PointwiseRoute::Products ? "cuBLAS (1x1 as products)" : "cuDNN"));
      }
    }
    ops::reset_conv_profile();
  }
  cuda::set_pointwise_route(before);
}
