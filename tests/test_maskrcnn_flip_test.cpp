// Flip test-time augmentation: the merge rule on hand-made detections, and the whole path's
// symmetry (an image and its mirror image must give mirrored results).
#include <cmath>

#include "maskrcnn/augment.h"
#include "maskrcnn/flip_test.h"
#include "maskrcnn/mask_rcnn.h"
#include "tests/helpers.h"

using namespace mrcnn;
using namespace mrcnn::detection;

namespace {

Detections detections(const std::vector<float>& boxes, const std::vector<float>& scores, const std::vector<int64_t>& labels) {
  const int64_t n = static_cast<int64_t>(scores.size());
  return {from_vector(boxes, {n, 4}), from_vector(scores, {n}), from_vector(labels, {n}), Tensor()};
}

}  // namespace

TEST_CASE("flip test: the views' detections merge by NMS and score their mean over both views") {
  Config c = test::small_maskrcnn_config();
  c.box_nms_thresh = 0.5;
  c.box_detections_per_img = 3;
  // original view: a0 (label 1), a1 (label 1, seen only here), a2 (label 2, seen only here)
  const Detections a = detections({0, 0, 10, 10, 20, 20, 30, 30, 40, 40, 50, 50}, {0.9f, 0.6f, 0.8f}, {1, 1, 2});
  // mirrored view, mapped back: b0 overlaps a0 (IoU 90/110), b1 lies on a2 but is label 1, b2 (label 2) alone
  const Detections b = detections({1, 0, 11, 10, 40, 40, 50, 50, 60, 60, 70, 70}, {0.7f, 0.4f, 0.3f}, {1, 1, 2});
  const Detections d = merge_flip_views(a, b, c);
  // NMS keeps a0 (b0 suppressed), a1, b1, a2, b2; mean scores 0.8, 0.3, 0.2, 0.4, 0.15; top 3.
  REQUIRE(d.scores.sizes() == Shape{3});
  const auto scores = to_vector<float>(d.scores);
  CHECK(scores[0] == doctest::Approx(0.8).epsilon(1e-6));
  CHECK(scores[1] == doctest::Approx(0.4).epsilon(1e-6));
  CHECK(scores[2] == doctest::Approx(0.3).epsilon(1e-6));
  CHECK(to_vector<int64_t>(d.labels) == std::vector<int64_t>{1, 2, 1});
  CHECK(to_vector<float>(d.boxes) == std::vector<float>{0, 0, 10, 10, 40, 40, 50, 50, 20, 20, 30, 30});
  CHECK(!d.masks.defined());

  // The mean uses the best-overlapping same-class box of the other view, not the best-scoring one.
  const Detections one = detections({0, 0, 10, 10}, {0.9f}, {1});
  const Detections two = detections({0, 0, 10, 9, 0, 3, 10, 13}, {0.5f, 0.7f}, {1, 1});  // IoU 0.9 and 0.54 with `one`
  const auto merged = to_vector<float>(merge_flip_views(one, two, c).scores);
  REQUIRE(merged.size() == 1);  // both of `two` overlap `one` above 0.5
  CHECK(merged[0] == doctest::Approx(0.7).epsilon(1e-6));  // (0.9 + 0.5) / 2

  // Nothing in either view: nothing out.
  const Detections none = detections({}, {}, {});
  const Detections empty = merge_flip_views(none, none, c);
  CHECK(empty.boxes.sizes() == Shape{0, 4});
  CHECK(empty.scores.sizes() == Shape{0});
}

TEST_CASE("flip test: an image and its mirror image give mirrored detections and masks, and off forward is unchanged") {
  Config c = test::small_maskrcnn_config();  // 64x64 images: no resize, so the two runs see the same views
  manual_seed(11);
  MaskRCNN net(c);
  net.eval();
  Generator g(5);
  const Tensor image = rand({1, 64, 64}, kFloat32, kCPU, &g);
  autograd::NoGradGuard no_grad;
  const auto plain = net.forward({image});
  CHECK(!net.flip_test());
  Config asks = c;
  asks.flip_test = true;
  CHECK(MaskRCNN(asks).flip_test());  // a model starts as its config says
  net.set_flip_test(true);
  const auto out = net.forward({image});
  const auto mirrored = net.forward({mirrored_image(image)});
  net.set_flip_test(false);
  const auto plain_again = net.forward({image});

  // Off: the same bits as before it was switched on.
  CHECK(to_vector<float>(plain_again.detections[0].scores) == to_vector<float>(plain.detections[0].scores));
  CHECK(to_vector<float>(plain_again.detections[0].masks) == to_vector<float>(plain.detections[0].masks));

  const Detections& d = out.roi.detections[0];  // 28x28 probabilities, before pasting
  const Detections& m = mirrored.roi.detections[0];
  const int64_t n = d.scores.size(0);
  REQUIRE(n > 0);  // an untrained model scores many boxes above 0.05
  CHECK(n <= c.box_detections_per_img);
  REQUIRE(m.scores.size(0) == n);
  CHECK(to_vector<float>(m.scores) == to_vector<float>(d.scores));
  CHECK(to_vector<int64_t>(m.labels) == to_vector<int64_t>(d.labels));
  const auto boxes = to_vector<float>(d.boxes), mirrored_boxes_seen = to_vector<float>(m.boxes);
  const auto expected_boxes = to_vector<float>(mirrored_boxes(d.boxes, 64.0f));
  for (size_t i = 0; i < boxes.size(); ++i) CHECK(mirrored_boxes_seen[i] == doctest::Approx(expected_boxes[i]).epsilon(1e-6));
  REQUIRE(d.masks.sizes() == Shape{n, 1, 28, 28});
  // A box mirrored twice (x -> 64 - (64 - x)) may come back an ulp off, and RoIAlign then samples a
  // hair's breadth away. Each run mirrors every box once for its second view, and the boxes the
  // mirror-image run starts from are the first run's mirrored: where all of these round trips are
  // exact, the two runs pool the same points and the masks must be exactly mirrored.
  const auto round_trip = to_vector<float>(mirrored_boxes(mirrored_boxes(d.boxes, 64.0f), 64.0f));
  const auto mirrored_round_trip = to_vector<float>(mirrored_boxes(mirrored_boxes(m.boxes, 64.0f), 64.0f));
  const auto masks = to_vector<float>(d.masks), mirrored_masks = to_vector<float>(m.masks);
  int64_t exact_boxes = 0;
  for (int64_t k = 0; k < n; ++k) {
    bool exact = true;
    for (int j = 0; j < 4; ++j)
      exact = exact && mirrored_boxes_seen[k * 4 + j] == expected_boxes[k * 4 + j] && round_trip[k * 4 + j] == boxes[k * 4 + j] &&
              mirrored_round_trip[k * 4 + j] == mirrored_boxes_seen[k * 4 + j];
    exact_boxes += exact;
    float worst = 0;
    for (int64_t i = 0; i < 28 * 28; ++i) {
      const int64_t y = i / 28, x = i % 28;
      worst = std::max(worst, std::abs(mirrored_masks[k * 784 + i] - masks[k * 784 + y * 28 + 27 - x]));
    }
    CAPTURE(k);
    if (exact) CHECK(worst == 0.0f);
    else CHECK(worst <= 1e-5f);
  }
  MESSAGE(exact_boxes << " of " << n << " detections with exact round trips");
  CHECK(exact_boxes > n / 4);
  // Pasted into the 64x64 image like forward's masks.
  CHECK(out.detections[0].masks.sizes() == Shape{n, 1, 64, 64});
}
