// Dice, IoU and HD95 against MedPy 0.5 (pip: medpy.metric.binary.dc, jc, hd95) on the masks built
// below, and the stated conventions for empty masks.
#include <cmath>

#include "maskrcnn/metrics.h"
#include "tests/helpers.h"

using namespace mrcnn;
using namespace mrcnn::detection;

TEST_CASE("overlap metrics: Dice, IoU, HD95 equal MedPy's") {
  const int64_t h = 20, w = 24;
  std::vector<uint8_t> truth(h * w), predicted(h * w);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      truth[y * w + x] = (y - 9) * (y - 9) + (x - 10) * (x - 10) <= 36;
      predicted[y * w + x] = (y - 11) * (y - 11) + (x - 12) * (x - 12) <= 30 || (y >= 1 && y <= 2 && x >= 20 && x <= 22);
    }
  const OverlapMetrics m = overlap_metrics(truth, predicted, h, w);
  CHECK(m.truth_pixels == 113);
  CHECK(m.predicted_pixels == 103);
  CHECK(m.dice == doctest::Approx(0.6666666666666666).epsilon(1e-12));
  CHECK(m.iou == doctest::Approx(0.5).epsilon(1e-12));
  CHECK(m.hd95 == doctest::Approx(7.176093866162352).epsilon(1e-12));
  // A 4x4 square shifted by one row: Dice 0.75, HD95 1 (MedPy: 0.75, 1.0).
  std::vector<uint8_t> a(100, 0), b(100, 0);
  for (int y = 2; y < 6; ++y)
    for (int x = 2; x < 6; ++x) a[y * 10 + x] = 1, b[(y + 1) * 10 + x] = 1;
  const OverlapMetrics s = overlap_metrics(a, b, 10, 10);
  CHECK(s.dice == doctest::Approx(0.75));
  CHECK(s.hd95 == doctest::Approx(1.0));
}

TEST_CASE("overlap metrics: empty-mask conventions") {
  const std::vector<uint8_t> none(12, 0);
  std::vector<uint8_t> some(12, 0);
  some[5] = 1;
  const OverlapMetrics both_empty = overlap_metrics(none, none, 3, 4);
  CHECK(both_empty.dice == 1.0);
  CHECK(both_empty.iou == 1.0);
  CHECK(both_empty.hd95 == 0.0);
  const OverlapMetrics missed = overlap_metrics(some, none, 3, 4);  // a tumour the model missed
  CHECK(missed.dice == 0.0);
  CHECK(std::isnan(missed.hd95));
  const OverlapMetrics false_alarm = overlap_metrics(none, some, 3, 4);
  CHECK(false_alarm.dice == 0.0);
  CHECK(false_alarm.iou == 0.0);
  CHECK(std::isnan(false_alarm.hd95));
  CHECK(test::error_of([&] { overlap_metrics(none, some, 4, 4); }) == "overlap_metrics: masks of 12 and 12 pixels for a 4x4 image");
}
