// interpolate: PyTorch's nearest index rule and half-pixel bilinear on hand-computed cases,
// gradchecks on integer and non-integer scales, up and down, align_corners both ways.
#include "ops/interpolate.h"
#include "tests/helpers.h"

using namespace mrcnn;
using ops::InterpolateMode;
using test::expect_gradcheck;
using test::leaf;
using V = std::vector<Tensor>;

TEST_CASE("interpolate: nearest index rule") {
  const Tensor x = ops::reshape(arange(0, 3, 1, kFloat32), {1, 1, 1, 3});
  // 3 -> 7: src = floor(i * 3/7) = 0 0 0 1 1 2 2.
  CHECK(test::values(ops::interpolate(x, {1, 7}, InterpolateMode::Nearest)) == std::vector<double>{0, 0, 0, 1, 1, 2, 2});
  // 3 -> 6 is the exact-2x case: i >> 1.
  CHECK(test::values(ops::interpolate(x, {1, 6}, InterpolateMode::Nearest)) == std::vector<double>{0, 0, 1, 1, 2, 2});
  // 3 -> 2 downsamples: floor(i * 1.5) = 0, 1.
  CHECK(test::values(ops::interpolate(x, {1, 2}, InterpolateMode::Nearest)) == std::vector<double>{0, 1});
}

TEST_CASE("interpolate: bilinear half-pixel rule") {
  const Tensor x = ops::reshape(from_vector<double>({0, 10}, {2}), {1, 1, 1, 2});
  // 2 -> 4: src = 0.5 * (i + 0.5) - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped by the edge).
  CHECK(test::values(ops::interpolate(x, {1, 4}, InterpolateMode::Bilinear)) == std::vector<double>{0, 2.5, 7.5, 10});
  // align_corners: src = i * (2 - 1) / (4 - 1).
  const auto aligned = test::values(ops::interpolate(x, {1, 4}, InterpolateMode::Bilinear, true));
  CHECK(aligned[1] == doctest::Approx(10.0 / 3));
  CHECK(aligned[3] == 10);
  // 2x2 -> 3x3 mixes rows and columns: the centre is the mean of all four.
  const Tensor sq = ops::reshape(from_vector<double>({0, 1, 2, 3}, {4}), {1, 1, 2, 2});
  CHECK(test::values(ops::interpolate(sq, {3, 3}, InterpolateMode::Bilinear))[4] == doctest::Approx(1.5));
  // Same size copies through.
  CHECK(test::max_abs_diff(ops::interpolate(sq, {2, 2}, InterpolateMode::Bilinear), sq) == 0);
}

TEST_CASE("gradcheck: interpolate") {
  const Tensor x = leaf({2, 2, 5, 7}, 601);
  for (const ops::Size2 size : {ops::Size2(10, 14), ops::Size2(8, 11), ops::Size2(3, 4), ops::Size2(5, 7)}) {
    CAPTURE(size.h);
    expect_gradcheck([size](const V& in) { return ops::interpolate(in[0], size, InterpolateMode::Nearest); }, {x});
    expect_gradcheck([size](const V& in) { return ops::interpolate(in[0], size, InterpolateMode::Bilinear); }, {x});
    expect_gradcheck([size](const V& in) { return ops::interpolate(in[0], size, InterpolateMode::Bilinear, true); },
                     {x});
  }
  expect_gradcheck([](const V& in) { return ops::interpolate(in[0], {9, 4}, InterpolateMode::Bilinear); },
                   {test::noncontiguous_leaf({1, 2, 4, 6}, 602)});
}

TEST_CASE("interpolate: error messages") {
  CHECK(test::error_of([] { ops::interpolate(zeros({1, 1, 2, 2}), {0, 3}, InterpolateMode::Bilinear); }) ==
        "interpolate: output size must be positive, got (0, 3)");
  CHECK(test::error_of([] { ops::interpolate(zeros({1, 1, 2, 2}), {3, 3}, InterpolateMode::Nearest, true); }) ==
        "interpolate: align_corners only applies to bilinear mode");
}

TEST_CASE("cuda: interpolate matches the CPU") {
  if (test::setup_cuda_or_skip("interpolate on CUDA")) return;
  using VT = std::vector<Tensor>;
  using test::leaf;
  const auto nearest = ops::InterpolateMode::Nearest, bilinear = ops::InterpolateMode::Bilinear;
  // The same taps (computed once on the host) and the same expression order: outputs agree to the
  // last bit but for FMA contraction on the GPU (float64 1e-14); gradients are atomic sums of <= 16 terms.
  test::expect_cuda_matches_cpu([&](const VT& v) { return ops::interpolate(v[0], {8, 6}, nearest); }, {leaf({2, 3, 4, 3}, 1)}, 1e-14);
  test::expect_cuda_matches_cpu([&](const VT& v) { return ops::interpolate(v[0], {7, 9}, nearest); }, {leaf({1, 2, 5, 4}, 2)}, 1e-14);
  test::expect_cuda_matches_cpu([&](const VT& v) { return ops::interpolate(v[0], {7, 9}, bilinear); }, {leaf({1, 2, 4, 5}, 3)}, 1e-14);
  test::expect_cuda_matches_cpu([&](const VT& v) { return ops::interpolate(v[0], {3, 4}, bilinear, true); },
                                {test::noncontiguous_leaf({1, 2, 6, 7}, 4)}, 1e-14);
  test::expect_cuda_matches_cpu([&](const VT& v) { return ops::interpolate(v[0], {13, 11}, bilinear); },
                                {ops::to(leaf({2, 2, 6, 5}, 5), kFloat32)}, 1e-5);
  test::expect_cuda_matches_cpu([&](const VT& v) { return ops::interpolate(v[0], {4, 4}, bilinear); }, {leaf({0, 2, 3, 3}, 6)}, 0.0);
  test::expect_cuda_gradcheck([&](const VT& v) { return ops::interpolate(v[0], {5, 7}, bilinear); }, {leaf({1, 2, 3, 4}, 7)});
  // The uploaded taps are kept per spatial shape: the same resize on another batch and channel count
  // (a cache hit with other planes), then a float32 input of that shape (another entry).
  test::expect_cuda_matches_cpu([&](const VT& v) { return ops::interpolate(v[0], {7, 9}, bilinear); }, {leaf({3, 5, 4, 5}, 8)}, 1e-14);
  test::expect_cuda_matches_cpu([&](const VT& v) { return ops::interpolate(v[0], {7, 9}, bilinear); },
                                {ops::to(leaf({2, 1, 4, 5}, 9), kFloat32)}, 1e-5);
}
