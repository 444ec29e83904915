// interpolate: PyTorch's nearest index rule and half-pixel bilinear on hand-computed cases,
// gradchecks on integer and non-integer scales, up and down, align_corners both ways.
#include <limits>

#include "autograd/engine.h"
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

TEST_CASE("interpolate: zero-weight taps are skipped, so an infinite pixel stays infinite and alone") {
  // PyTorch reads only the taps it needs; multiplying the unused ones by 0 made inf * 0 = NaN.
  const double inf = std::numeric_limits<double>::infinity();
  Tensor x = from_vector<double>({1, inf, 3, 4}, {1, 1, 2, 2}).set_requires_grad(true);
  const Tensor up = ops::interpolate(x, {4, 4}, InterpolateMode::Nearest);
  const auto v = test::values(up);
  CHECK(v[0] == 1);
  CHECK(v[2] == inf);
  CHECK(v[3] == inf);
  CHECK(v[8] == 3);
  CHECK(v[15] == 4);
  // An unchanged size in bilinear mode copies, inf included; a real blend of inf stays inf.
  const auto same = test::values(ops::interpolate(x, {2, 2}, InterpolateMode::Bilinear));
  CHECK(same == std::vector<double>{1, inf, 3, 4});
  // Backward: an infinite output gradient reaches only its source pixel.
  std::vector<double> g(16, 1.0);
  g[0] = inf;
  autograd::backward(up, from_vector<double>(g, {1, 1, 4, 4}));
  CHECK(test::values(x.grad()) == std::vector<double>{inf, 4, 4, 4});
}

TEST_CASE("resize_masks_nearest: the float nearest resize of the masks, on bytes") {
  Generator g(11);
  const Tensor masks = ops::gt(rand({3, 13, 17}, kFloat32, kCPU, &g), 0.6);
  for (const auto& size : std::vector<ops::Size2>{{13, 17}, {26, 34}, {7, 40}, {29, 5}, {1, 1}}) {
    CAPTURE(size.h);
    CAPTURE(size.w);
    const Tensor through_float = ops::ne(
        ops::select(ops::interpolate(ops::unsqueeze(ops::to(masks, kFloat32), 1), size, InterpolateMode::Nearest), 1, 0), 0.0);
    for (const Tensor& input : {masks, ops::transpose(ops::contiguous(ops::transpose(masks, 1, 2)), 1, 2)}) {
      const Tensor resized = ops::resize_masks_nearest(input, size);
      CHECK(resized.dtype() == kBool);
      CHECK(resized.sizes() == Shape{3, size.h, size.w});
      CHECK(test::values(resized) == test::values(through_float));
    }
  }
  CHECK(ops::resize_masks_nearest(zeros({0, 4, 4}, kBool), {8, 8}).sizes() == Shape{0, 8, 8});
  CHECK(test::error_of([] { ops::resize_masks_nearest(zeros({2, 4, 4}), {8, 8}); }) ==
        "resize_masks_nearest: masks must be host bool [K, H, W], got float32 [2, 4, 4] on cpu");
  CHECK(test::error_of([] { ops::resize_masks_nearest(zeros({2, 4, 4}, kBool), {0, 8}); }) ==
        "resize_masks_nearest: output size must be positive, got (0, 8)");
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

namespace {

// paste_masks as torchvision composes it (and as this project did before the one-pass op): pad the
// mask, resize it to the expanded box with interpolate, copy the part inside the image.
Tensor paste_reference(const Tensor& masks, const Tensor& boxes, int64_t im_h, int64_t im_w, int64_t padding) {
  const int64_t n = masks.size(0), m = masks.size(-1);
  Tensor out = zeros({n, 1, im_h, im_w});
  const double scale = static_cast<double>(m + 2 * padding) / static_cast<double>(m);
  const auto bp = to_vector<float>(boxes);
  for (int64_t i = 0; i < n; ++i) {
    const float* box = bp.data() + i * 4;
    const float w_half = (box[2] - box[0]) * 0.5f * static_cast<float>(scale);
    const float h_half = (box[3] - box[1]) * 0.5f * static_cast<float>(scale);
    const float x_c = (box[2] + box[0]) * 0.5f, y_c = (box[3] + box[1]) * 0.5f;
    const int64_t x0 = static_cast<int64_t>(x_c - w_half), y0 = static_cast<int64_t>(y_c - h_half);
    const int64_t x1 = static_cast<int64_t>(x_c + w_half), y1 = static_cast<int64_t>(y_c + h_half);
    const int64_t w = std::max<int64_t>(x1 - x0 + 1, 1), h = std::max<int64_t>(y1 - y0 + 1, 1);
    Tensor padded = zeros({1, 1, m + 2 * padding, m + 2 * padding});
    copy_into(ops::narrow(ops::narrow(padded, 2, padding, m), 3, padding, m), ops::reshape(ops::select(masks, 0, i), {1, 1, m, m}));
    const Tensor pasted = ops::contiguous(ops::interpolate(padded, {h, w}, InterpolateMode::Bilinear));
    const int64_t cx0 = std::max<int64_t>(x0, 0), cx1 = std::min<int64_t>(x1 + 1, im_w);
    const int64_t cy0 = std::max<int64_t>(y0, 0), cy1 = std::min<int64_t>(y1 + 1, im_h);
    if (cx1 <= cx0 || cy1 <= cy0) continue;
    const Tensor src = ops::narrow(ops::narrow(ops::reshape(pasted, {h, w}), 0, cy0 - y0, cy1 - cy0), 1, cx0 - x0, cx1 - cx0);
    copy_into(ops::narrow(ops::narrow(ops::select(ops::select(out, 0, i), 0, 0), 0, cy0, cy1 - cy0), 1, cx0, cx1 - cx0), src);
  }
  return out;
}

// Boxes of every kind: inside, straddling each border, wholly outside, degenerate (zero or negative
// size), one exactly the size of the padded mask (an unchanged axis copies), fractional corners.
Tensor paste_test_boxes(int64_t im_h, int64_t im_w) {
  const float h = static_cast<float>(im_h), w = static_cast<float>(im_w);
  return from_vector<float>({3.2f, 4.7f, 20.9f, 31.1f,   -6.5f, -3.f, 9.f, 12.4f,   w - 10.f, h - 7.f, w + 5.f, h + 9.f,
                             w + 3.f, 2.f, w + 20.f, 9.f,   5.f, 5.f, 5.f, 5.f,   12.f, 9.f, 7.f, 4.f,
                             0.f, 0.f, 6.f, 6.f,   0.5f, 1.5f, w - 0.5f, h - 1.5f},
                            {8, 4});
}

}  // namespace

TEST_CASE("paste_masks: one pass equals pad + bilinear resize + copy to float rounding, every kind of box") {
  Generator g(61);
  for (const int64_t padding : {1, 0, 2}) {
    for (const auto [m, im_h, im_w] : std::vector<std::array<int64_t, 3>>{{4, 37, 53}, {7, 64, 48}, {28, 120, 96}}) {
      const Tensor masks = rand({8, 1, m, m}, kFloat32, kCPU, &g), boxes = paste_test_boxes(im_h, im_w);
      const Tensor pasted = ops::paste_masks(masks, boxes, im_h, im_w, padding);
      CHECK(pasted.sizes() == Shape{8, 1, im_h, im_w});
      // The same float arithmetic in the same order; the compiler may fuse a product and a sum
      // into one FMA in one place and not the other (-mfma), each a half-ulp rounding of values in
      // [0, 1]: <= 4 roundings apart, 4 * 2^-23 = 4.8e-7. (Measured: 1.2e-7, one ulp.)
      CHECK(test::max_abs_diff(pasted, paste_reference(masks, boxes, im_h, im_w, padding)) <= 4.8e-7);
    }
  }
  // An unchanged axis: a 4x4 mask padded to 6 in a box that expands to exactly 6 pixels is copied.
  const Tensor ones_mask = ones({1, 4, 4});
  const Tensor copied = ops::paste_masks(ones_mask, from_vector<float>({1.f, 1.f, 4.75f, 4.75f}, {1, 4}), 8, 8);
  const auto v = test::values(copied);
  CHECK(v[0 * 8 + 0] == 0.0);  // the zero border
  CHECK(v[1 * 8 + 1] == 1.0);
  CHECK(v[4 * 8 + 4] == 1.0);
  CHECK(v[7 * 8 + 7] == 0.0);
  // Boxes a diverged model could output: NaN or infinite corners paste nothing, huge finite ones
  // lie outside the image (no cast of NaN or 1e20 to an integer, which is undefined behaviour).
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const Tensor wild = from_vector<float>({nan, 1.f, 5.f, 6.f, 0.f, 0.f, inf, 4.f, -inf, -inf, inf, inf, 1e20f, 1e20f, 2e20f, 2e20f},
                                         {4, 4});
  const Tensor wild_pasted = ops::paste_masks(ones({4, 1, 5, 5}), wild, 9, 11);
  CHECK(ops::sum(wild_pasted).item<double>() == 0.0);
  // No detections, an empty image.
  CHECK(ops::paste_masks(zeros({0, 1, 28, 28}), zeros({0, 4}), 5, 6).sizes() == Shape{0, 1, 5, 6});
  CHECK(ops::paste_masks(ones({2, 28, 28}), zeros({2, 4}), 0, 6).sizes() == Shape{2, 1, 0, 6});
}

TEST_CASE("paste_masks: error messages") {
  CHECK(test::error_of([] { ops::paste_masks(zeros({2, 3, 5, 5}), zeros({2, 4}), 8, 8); }) ==
        "paste_masks: masks must be [D, 1, M, M] or [D, M, M], got [2, 3, 5, 5]");
  CHECK(test::error_of([] { ops::paste_masks(zeros({2, 5, 5}), zeros({3, 4}), 8, 8); }) ==
        "paste_masks: boxes must be [2, 4], got [3, 4]");
  CHECK(test::error_of([] { ops::paste_masks(zeros({2, 5, 5}, kFloat64), zeros({2, 4}), 8, 8); }) ==
        "paste_masks: masks must be float32, got float64");
  CHECK(test::error_of([] { ops::paste_masks(zeros({2, 5, 5}), zeros({2, 4}), -1, 8); }) ==
        "paste_masks: image -1x8 and padding 1 must not be negative");
}

TEST_CASE("cuda: paste_masks matches the CPU") {
  if (test::setup_cuda_or_skip("paste_masks on CUDA")) return;
  Generator g(62);
  for (const int64_t padding : {1, 0}) {
    const Tensor masks = rand({8, 1, 28, 28}, kFloat32, kCPU, &g), boxes = paste_test_boxes(70, 90);
    const Tensor cpu = ops::paste_masks(masks, boxes, 70, 90, padding);
    // Boxes on either device; the result lives with the masks.
    for (const Device box_device : {Device(kCPU), Device(test::gpu())}) {
      const Tensor gpu = ops::paste_masks(ops::to(masks, test::gpu()), ops::to(boxes, box_device), 70, 90, padding);
      CHECK(gpu.device() == test::gpu());
      // nvcc may fuse the bilinear blend into FMAs: a few float ulps of values in [0, 1].
      CHECK(test::max_abs_diff(ops::to(gpu, kCPU), cpu) < 1e-6);
    }
  }
  CHECK(ops::paste_masks(zeros({0, 1, 28, 28}, kFloat32, test::gpu()), zeros({0, 4}), 5, 6).sizes() == Shape{0, 1, 5, 6});
}
