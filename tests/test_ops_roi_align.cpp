// roi_align: exact values on linear feature maps, torchvision's border and small-RoI rules,
// gradchecks on edge cases (outside, smaller than a bin, shared pixels, empty list), thread invariance.
#include "cuda/context.h"
#include "cuda/roi_align.h"
#include "ops/roi_align.h"
#include "ops/roi_align_kernels.h"
#include "tests/helpers.h"

using namespace mrcnn;
using test::expect_gradcheck;
using test::leaf;
using V = std::vector<Tensor>;

namespace {

// A [1, 1, 8, 8] float64 map whose value at (y, x) is x + 10 * y: bilinear sampling reproduces it exactly.
Tensor ramp() {
  std::vector<double> v;
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x) v.push_back(x + 10.0 * y);
  return from_vector<double>(v, {1, 1, 8, 8});
}

Tensor rois_of(const std::vector<double>& rows) { return from_vector<double>(rows, {static_cast<int64_t>(rows.size() / 5), 5}); }

}  // namespace

TEST_CASE("roi_align: values on a linear map") {
  // Box (1, 1)-(5, 5), 2x2 bins of 2 pixels, 2x2 samples at 1.5, 2.5 | 3.5, 4.5: bin means 2 and 4.
  const auto y = test::values(ops::roi_align(ramp(), rois_of({0, 1, 1, 5, 5}), 2, 1.0, 2, false));
  CHECK(y == std::vector<double>{22, 24, 42, 44});
  // aligned=true moves the box by half a pixel: 1.5 and 3.5.
  const auto a = test::values(ops::roi_align(ramp(), rois_of({0, 1, 1, 5, 5}), 2, 1.0, 2, true));
  CHECK(a == std::vector<double>{16.5, 18.5, 36.5, 38.5});
  // spatial_scale 0.5 maps image box (2, 2)-(10, 10) to the same feature box.
  const auto s = test::values(ops::roi_align(ramp(), rois_of({0, 2, 2, 10, 10}), 2, 0.5, 2, false));
  CHECK(s == y);
  // Adaptive sampling (ratio <= 0): ceil(4 / 2) = 2 samples per bin side, the same points here.
  CHECK(test::values(ops::roi_align(ramp(), rois_of({0, 1, 1, 5, 5}), 2, 1.0, 0, false)) == y);
}

TEST_CASE("roi_align: torchvision's border and small-RoI rules") {
  // A sample beyond -1 contributes zero but still counts in the average: box (-4, 0)-(0, 1), one bin,
  // samples at x = -3, -1 (in: clamped to 0 -> value 0 + 10 * 0.5) with y = 0.25, 0.75.
  const auto o = test::values(ops::roi_align(ramp(), rois_of({0, -4, 0, 0, 1}), 1, 1.0, 2, false));
  CHECK(o[0] == doctest::Approx((0 + 0 + 2.5 + 7.5) / 4));
  // Samples past the last pixel clamp to it: x = 7.5 reads column 7.
  const auto edge = test::values(ops::roi_align(ramp(), rois_of({0, 7, 0, 8, 1}), 1, 1.0, 1, false));
  CHECK(edge[0] == doctest::Approx(7 + 10 * 0.5));
  // aligned=false forces a degenerate box to 1x1; wholly outside boxes give zeros.
  const auto tiny = test::values(ops::roi_align(ramp(), rois_of({0, 2, 2, 2, 2}), 1, 1.0, 1, false));
  CHECK(tiny[0] == doctest::Approx(2.5 + 25));
  CHECK(test::values(ops::roi_align(ramp(), rois_of({0, 20, 20, 30, 30}), 2, 1.0, 2, false)) ==
        std::vector<double>{0, 0, 0, 0});
  // The empty RoI list gives an empty [0, C, h, w] result.
  CHECK(ops::roi_align(ramp(), empty({0, 5}, kFloat64), {7, 7}, 1.0).sizes() == Shape{0, 1, 7, 7});
}

TEST_CASE("gradcheck: roi_align edge cases") {
  const Tensor x = leaf({2, 3, 6, 7}, 801);
  const Tensor rois = rois_of({
      0, 0.5, 1.2, 4.7, 5.1,    // inside
      1, -2.0, -1.5, 3.0, 2.5,  // partly outside (top-left)
      1, 5.5, 4.0, 9.0, 8.0,    // partly outside (bottom-right)
      0, 10, 10, 14, 14,        // wholly outside
      0, 2.2, 2.3, 2.4, 2.45,   // smaller than a bin
      1, 1.0, 1.0, 3.0, 3.0,    // the next three share pixels
      1, 1.0, 1.0, 3.0, 3.0,
      1, 1.5, 0.5, 2.5, 3.5,
  });
  for (const bool aligned : {false, true})
    for (const int64_t ratio : {2, 0, -1}) {
      CAPTURE(aligned);
      CAPTURE(ratio);
      expect_gradcheck([&](const V& in) { return ops::roi_align(in[0], rois, {3, 2}, 1.0, ratio, aligned); }, {x});
    }
  // FPN-like scale (boxes in image coordinates twice the map's) and an empty RoI list.
  const Tensor scaled = ops::cat({ops::narrow(rois, 1, 0, 1), ops::mul(ops::narrow(rois, 1, 1, 4), 2.0)}, 1);
  expect_gradcheck([&](const V& in) { return ops::roi_align(in[0], scaled, 2, 0.5, 2, false); }, {x});
  expect_gradcheck([](const V& in) { return ops::roi_align(in[0], empty({0, 5}, kFloat64), 2, 1.0); }, {x});
  expect_gradcheck([&](const V& in) { return ops::roi_align(in[0], rois, 2, 1.0, 2, false); },
                   {test::noncontiguous_leaf({2, 3, 6, 7}, 802)});
  // 16 channels and these 8 RoIs on a 5x6 map: the channel-last kernels.
  CHECK(cpu::roi_align_channel_last(2, 16, 5, 6, 8, {3, 2}));
  for (const int64_t ratio : {2, 0})
    expect_gradcheck([&](const V& in) { return ops::roi_align(in[0], rois, {3, 2}, 1.0, ratio, false); },
                     {leaf({2, 16, 5, 6}, 803)});
}

TEST_CASE("roi_align: backward is the same with 1 and 2 threads, in either layout") {
  // 64 RoIs on a 20x20 map run channel-last; 3 RoIs on a 60x60 map run on planes.
  for (const int64_t size : {20, 60}) {
    const int64_t count = size == 20 ? 64 : 3;
    CAPTURE(size);
    CHECK(cpu::roi_align_channel_last(1, 40, size, size, count, 7) == (size == 20));
    Tensor x = ops::to(leaf({1, 40, size, size}, 811), kFloat32).detach().set_requires_grad(true);
    std::vector<double> rows;
    for (int i = 0; i < count; ++i) rows.insert(rows.end(), {0.0, 0.3 * (i % 11), 0.7 * (i % 9), 6 + 0.2 * i, 8 + 0.1 * i});
    const Tensor rois = ops::to(rois_of(rows), kFloat32);
    const Tensor r = ops::to(leaf({count, 40, 7, 7}, 812), kFloat32).detach();
    Tensor grads[2];
    for (int threads : {1, 2}) {
      const test::ThreadCount thread_count(threads);
      x.zero_grad();
      autograd::backward(ops::sum(ops::mul(ops::roi_align(x, rois, 7, 1.0, 0, false), r)));
      grads[threads - 1] = x.grad();
    }
    CHECK(test::bitwise_equal(grads[0], grads[1]));
  }
}

TEST_CASE("roi_align: the channel-last kernels give the planar kernels' bits, forward and backward") {
  // 40 RoIs sample an 11x13 map densely enough for the channel-last copy; switched off, or one RoI at
  // a time, the planes are read. 20 channels and 143 pixels: the copies' 8x8 blocks leave edges. Boxes inside, partly and wholly outside, on both images; fixed 2x2
  // samples (the multiply-by-reciprocal branch) and adaptive ones (3x3, 5x2, ...: the division branch).
  CHECK(cpu::roi_align_channel_last(2, 20, 11, 13, 40, 2));
  CHECK_FALSE(cpu::roi_align_channel_last(2, 20, 11, 13, 1, 2));
  CHECK_FALSE(cpu::roi_align_channel_last(2, 15, 11, 13, 40, 2));  // few channels: the vector loop is too short
  std::vector<double> rows;
  for (int i = 0; i < 40; ++i)
    rows.insert(rows.end(), {static_cast<double>(i % 2), -3.0 + 0.45 * i, -2.0 + 0.3 * (i % 13), 1.0 + 0.5 * i,
                             3.0 + 0.7 * (i % 17)});
  for (const DType dtype : {kFloat64, kFloat32})
    for (const int64_t ratio : {2, 0})
      for (const bool aligned : {false, true}) {
        CAPTURE(dtype_name(dtype));
        CAPTURE(ratio);
        CAPTURE(aligned);
        const Tensor rois = ops::to(rois_of(rows), dtype);
        const Tensor r = ops::to(leaf({40, 20, 2, 2}, 822), dtype).detach();
        Tensor outputs[2], grads[2];
        for (const bool channel_last : {true, false}) {
          cpu::allow_roi_align_channel_last(channel_last);
          CHECK(cpu::roi_align_channel_last(2, 20, 11, 13, 40, 2) == channel_last);
          Tensor x = ops::to(leaf({2, 20, 11, 13}, 821), dtype).detach().set_requires_grad(true);
          outputs[channel_last] = ops::roi_align(x, rois, 2, 1.0, ratio, aligned);
          autograd::backward(ops::sum(ops::mul(outputs[channel_last], r)));
          grads[channel_last] = x.grad();
        }
        cpu::allow_roi_align_channel_last(true);
        CHECK(test::bitwise_equal(outputs[0], outputs[1]));
        CHECK(test::bitwise_equal(grads[0], grads[1]));
        CHECK(ops::max(ops::abs(grads[1])).item<double>() > 0.1);
        // And one RoI at a time (planes), as an independent forward.
        std::vector<Tensor> singles;
        const Tensor map = ops::to(leaf({2, 20, 11, 13}, 821), dtype);
        for (int64_t i = 0; i < 40; ++i) singles.push_back(ops::roi_align(map, ops::narrow(rois, 0, i, 1), 2, 1.0, ratio, aligned));
        CHECK(test::bitwise_equal(ops::cat(singles, 0), outputs[1]));
      }
}

TEST_CASE("roi_align: backward's division by the sample count, as a multiplication where that is exact") {
  // Grids of 1x1 .. 4x4 samples (sampling_ratio fixed) over a 10x10 map; values from huge to subnormal.
  const std::vector<float> values{1.0f, 0.1f, -3.7e-3f, 12345.678f, 3.4e38f, 1.1754944e-38f, 7.0e-45f, -2.5e-40f};
  for (int64_t ratio = 1; ratio <= 4; ++ratio) {
    const RoiAlignParams p{10, 10, 2, 2, 1.0, ratio, false};
    const float roi[5] = {0, 1.0f, 1.5f, 8.0f, 9.0f};
    const RoiGrid<float> grid = roi_grid(p, roi);
    const int64_t samples = ratio * ratio;
    CAPTURE(samples);
    CHECK(grid.count == static_cast<float>(samples));
    CHECK(grid.exact_reciprocal == (samples == 1 || samples == 4 || samples == 16));
    for (const float v : values) CHECK(divide_by_count(grid, v) == v / grid.count);  // bit for bit
  }
}

TEST_CASE("roi_align: error messages") {
  CHECK(test::error_of([] { ops::roi_align(ramp(), zeros({2, 4}, kFloat64), 2, 1.0); }) ==
        "roi_align: rois must be [R, 5] rows of (batch_index, x1, y1, x2, y2), got [2, 4]");
  CHECK(test::error_of([] { ops::roi_align(ramp(), rois_of({1, 0, 0, 2, 2}), 2, 1.0); }) ==
        "roi_align: RoI 0 has batch index 1 but the input holds 1 images");
  CHECK(test::error_of([] { ops::roi_align(ramp(), zeros({1, 5}), 2, 1.0); }) ==
        "roi_align: rois are float32 on cpu but the input is float64 on cpu");
}

TEST_CASE("cuda: roi_align matches the CPU, atomic and deterministic backward") {
  if (test::setup_cuda_or_skip("roi_align on CUDA")) return;
  // RoIs over the border, degenerate, and on both images; integer batch indices.
  const Tensor rois = from_vector<double>({0, 0.5, 0.7, 4.2, 5.1, 1, 1.3, 0.2, 6.8, 3.9, 0, -1.0, 2.0, 3.0, 8.5,
                                           1, 3.0, 3.0, 3.0, 3.0, 0, 5.5, 4.5, 9.0, 7.0},
                                          {5, 5});
  // The same per-sample arithmetic: outputs equal but for FMA contraction (1e-14 in float64 on O(1)
  // values); atomic gradients add the same terms in arrival order.
  for (const bool deterministic : {false, true}) {
    cuda::set_deterministic(deterministic);
    test::expect_cuda_matches_cpu([&](const V& v) { return ops::roi_align(v[0], ops::to(rois, v[0].device()), {3, 3}, 1.0, 2, false); },
                                  {leaf({2, 3, 6, 7}, 1)}, 1e-13);
    test::expect_cuda_matches_cpu([&](const V& v) { return ops::roi_align(v[0], ops::to(rois, v[0].device()), {2, 2}, 0.5, -1, true); },
                                  {leaf({2, 2, 12, 14}, 2)}, 1e-13);
    test::expect_cuda_matches_cpu(
        [&](const V& v) { return ops::roi_align(v[0], ops::to(ops::to(rois, kFloat32), v[0].device()), {7, 7}, 0.25, 2, true); },
        {ops::to(leaf({2, 4, 24, 28}, 3), kFloat32)}, 1e-5);
  }
  cuda::set_deterministic(false);
  test::expect_cuda_matches_cpu([&](const V& v) { return ops::roi_align(v[0], zeros({0, 5}, kFloat64, v[0].device()), {2, 2}, 1.0, 2, false); },
                                {leaf({1, 2, 5, 5}, 4)}, 0.0);
  test::expect_cuda_gradcheck([&](const V& v) { return ops::roi_align(v[0], ops::to(rois, test::gpu()), {2, 2}, 1.0, 2, true); },
                              {leaf({2, 2, 6, 7}, 5)});
  CHECK(test::error_of([] {
          ops::roi_align(zeros({1, 1, 4, 4}, kFloat32, test::gpu()), ops::to(from_vector<float>({1, 0, 0, 1, 1}, {1, 5}), test::gpu()),
                         {2, 2}, 1.0, 2, false);
        }) == "roi_align: RoI 0 has batch index 1 but the input holds 1 images");
  // RoIs held on the host go with GPU features as they are: checked there, uploaded, no download.
  test::expect_cuda_matches_cpu([&](const V& v) { return ops::roi_align(v[0], rois, {3, 3}, 1.0, 2, false); },
                                {leaf({2, 3, 6, 7}, 6)}, 1e-13);
  const Tensor features = ops::to(leaf({2, 3, 6, 7}, 7), test::gpu());
  cuda::reset_transfer_stats();
  (void)ops::roi_align(features, rois, {3, 3}, 1.0, 2, false);
  CHECK(cuda::transfer_stats().downloads == 0);
  CHECK(test::error_of([] {
          ops::roi_align(zeros({1, 1, 4, 4}, kFloat32, test::gpu()), from_vector<float>({1, 0, 0, 1, 1}, {1, 5}), {2, 2}, 1.0, 2, false);
        }) == "roi_align: RoI 0 has batch index 1 but the input holds 1 images");
}
