// Dice, IoU and HD95 against MedPy 0.5 (pip: medpy.metric.binary.dc, jc, hd95) on the masks built
// below, the stated conventions for empty masks, and the per-image/per-patient/lesion summary.
#include <algorithm>
#include <cmath>

#include "maskrcnn/bootstrap.h"
#include "maskrcnn/evaluate.h"
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

namespace {

// A w x h mask with the rectangle [x0, x1) x [y0, y1) set.
std::vector<uint8_t> rectangle(int64_t h, int64_t w, int64_t x0, int64_t y0, int64_t x1, int64_t y1) {
  std::vector<uint8_t> m(static_cast<size_t>(h * w), 0);
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t x = x0; x < x1; ++x) m[y * w + x] = 1;
  return m;
}

detection::CocoAnnotation lesion(const std::vector<uint8_t>& mask, int64_t h, int64_t w) {
  detection::CocoAnnotation a;
  a.category_id = a.label = 1;
  a.rle = detection::rle_encode(mask.data(), h, w);
  return a;
}

void add_detection(detection::ImagePrediction& p, const std::vector<uint8_t>& mask, double score) {
  detection::EvalDetection d;
  d.score = score;
  p.detections.push_back(d);
  p.masks.push_back(mask);
}

}  // namespace

TEST_CASE("percentile of sorted values: numpy.percentile's linear rule, and its errors") {
  // numpy.percentile([1, 2, 3, 4], q) for q = 0, 50, 95, 100; [0.25, 0.5, 1, 3, 8] at 2.5 and 97.5.
  const std::vector<double> four = {1, 2, 3, 4}, five = {0.25, 0.5, 1, 3, 8};
  CHECK(percentile_of_sorted(four, 0) == 1);
  CHECK(percentile_of_sorted(four, 0.5) == 2.5);
  CHECK(percentile_of_sorted(four, 0.95) == doctest::Approx(3.85).epsilon(1e-15));
  CHECK(percentile_of_sorted(four, 1) == 4);
  CHECK(percentile_of_sorted(five, 0.025) == doctest::Approx(0.275).epsilon(1e-15));
  CHECK(percentile_of_sorted(five, 0.975) == doctest::Approx(7.5).epsilon(1e-15));
  CHECK(percentile_of_sorted({7}, 0.3) == 7);
  // At an order statistic the value itself, even beside an infinity (interpolating would give inf * 0).
  CHECK(percentile_of_sorted({1, INFINITY}, 0) == 1);
  CHECK(percentile_of_sorted({1, 2, INFINITY}, 0.5) == 2);
  CHECK(test::error_of([] { percentile_of_sorted({}, 0.5); }) ==
        "percentile_of_sorted: 0 values, fraction 0.5 (needs values and a fraction in [0, 1])");
  CHECK(test::error_of([] { percentile_of_sorted({1, 2}, 1.5); }) ==
        "percentile_of_sorted: 2 values, fraction 1.5 (needs values and a fraction in [0, 1])");
}

TEST_CASE("evaluation summary: per-image, per-patient and lesion figures on hand-made masks") {
  using namespace detection;
  constexpr int64_t h = 10, w = 10;
  CocoDataset truth;
  CocoImage a{1, w, h, "p1_a.png", {}}, b{2, w, h, "p1_b.png", {}}, c{3, w, h, "p2_a.png", {}};
  a.annotations = {lesion(rectangle(h, w, 1, 1, 4, 4), h, w), lesion(rectangle(h, w, 6, 6, 8, 8), h, w)};
  c.annotations = {lesion(rectangle(h, w, 2, 2, 5, 5), h, w)};
  truth.images = {a, b, c};
  std::vector<ImagePrediction> predictions(3);
  add_detection(predictions[0], rectangle(h, w, 1, 1, 4, 4), 0.9);  // the first lesion exactly
  add_detection(predictions[0], rectangle(h, w, 8, 0, 10, 1), 0.8); // 2 pixels of nothing: a false positive
  add_detection(predictions[0], rectangle(h, w, 6, 6, 8, 8), 0.3);  // the second lesion, below the threshold
  // Image b: nothing in truth, nothing predicted. Image c: a lesion, nothing predicted.
  const auto s = summarize_segmentation(truth, predictions, {"p1", "p1", "p2"}, 0.5, 0.5);
  REQUIRE(s.images.size() == 3);
  // a: truth 9 + 4 px, prediction 9 + 2 px, overlap 9.
  CHECK(s.images[0].overlap.dice == doctest::Approx(18.0 / 24.0));
  CHECK(s.images[0].overlap.iou == doctest::Approx(9.0 / 15.0));
  CHECK(s.images[0].lesions == 2);
  CHECK(s.images[0].detected == 1);
  CHECK(s.images[0].false_positives == 1);
  CHECK(s.images[1].overlap.dice == 1.0);  // both empty: a correct "no tumour"
  CHECK(s.images[1].overlap.hd95 == 0.0);
  CHECK(s.images[2].overlap.dice == 0.0);  // missed lesion
  CHECK(std::isnan(s.images[2].overlap.hd95));
  CHECK(s.mean_dice == doctest::Approx((0.75 + 1.0 + 0.0) / 3));
  CHECK(s.hd95_undefined == 1);
  CHECK(s.mean_hd95 == doctest::Approx((s.images[0].overlap.hd95 + 0.0) / 2));
  CHECK(s.lesions == 3);
  CHECK(s.detected == 1);
  CHECK(s.sensitivity == doctest::Approx(1.0 / 3));
  CHECK(s.false_positives_per_image == doctest::Approx(1.0 / 3));
  REQUIRE(s.patients.size() == 2);
  CHECK(s.patients[0].patient == "p1");
  CHECK(s.patients[0].images == 2);
  CHECK(s.patients[0].dice == doctest::Approx(0.75));  // pooled: b adds no pixels
  CHECK(s.patients[1].dice == 0.0);
  CHECK(std::isnan(s.patients[1].hd95));
  // Areas summed over a patient's slices: p1 has 9 + 4 labelled and 9 + 2 predicted pixels, p2 9 and 0.
  CHECK(s.patients[0].truth_pixels == 13);
  CHECK(s.patients[0].predicted_pixels == 11);
  CHECK(s.patients[0].area_difference() == doctest::Approx(-2.0 / 13));
  CHECK(s.patients[1].truth_pixels == 9);
  CHECK(s.patients[1].area_difference() == -1.0);
  CHECK(s.median_area_difference == doctest::Approx((2.0 / 13 + 1.0) / 2));
  // Lowering the threshold brings in the second lesion's detection.
  const auto low = summarize_segmentation(truth, predictions, {"p1", "p1", "p2"}, 0.25, 0.5);
  CHECK(low.images[0].detected == 2);
  CHECK(low.images[0].overlap.dice == doctest::Approx(26.0 / 28.0));
  // A patient with nothing labelled has no area difference and stays out of the median.
  const auto alone = summarize_segmentation(truth, predictions, {"p1", "p3", "p2"}, 0.25, 0.5);
  REQUIRE(alone.patients.size() == 3);
  CHECK(alone.patients[1].truth_pixels == 0);
  CHECK(std::isnan(alone.patients[1].area_difference()));
  CHECK(alone.patients[0].predicted_pixels == 15);  // the second lesion's 4 pixels now in
  CHECK(alone.median_area_difference == doctest::Approx((2.0 / 13 + 1.0) / 2));
  PatientScore nothing;
  CHECK(std::isnan(nothing.area_difference()));
  // A stricter lesion rule: a half-overlapping detection no longer counts.
  predictions[0].masks[0] = rectangle(h, w, 1, 1, 4, 3);  // 6 of the lesion's 9 pixels: IoU 0.67
  CHECK(summarize_segmentation(truth, predictions, {"p1", "p1", "p2"}, 0.5, 0.7).images[0].detected == 0);
  CHECK(summarize_segmentation(truth, predictions, {"p1", "p1", "p2"}, 0.5, 0.6).images[0].detected == 1);
}

TEST_CASE("evaluation by category: each structure scored against its own annotations and detections") {
  using namespace detection;
  constexpr int64_t h = 10, w = 10;
  CocoDataset truth;
  truth.categories = {{3, "tumor"}, {7, "edema"}};
  CocoImage a{1, w, h, "p1_a.png", {}}, b{2, w, h, "p2_a.png", {}};
  a.annotations = {lesion(rectangle(h, w, 1, 1, 4, 4), h, w), lesion(rectangle(h, w, 6, 6, 8, 8), h, w)};
  a.annotations[0].category_id = 3, a.annotations[1].category_id = 7, a.annotations[1].label = 2;
  b.annotations = {lesion(rectangle(h, w, 2, 2, 4, 4), h, w)};
  b.annotations[0].category_id = 7, b.annotations[0].label = 2;
  truth.images = {a, b};
  std::vector<ImagePrediction> predictions(2);
  add_detection(predictions[0], rectangle(h, w, 1, 1, 4, 4), 0.9);  // the tumour, as tumour
  add_detection(predictions[0], rectangle(h, w, 1, 1, 4, 4), 0.8);  // the tumour again, called edema
  add_detection(predictions[1], rectangle(h, w, 2, 2, 4, 4), 0.7);  // b's edema, as edema
  predictions[0].detections[0].category_id = 3;
  predictions[0].detections[1].category_id = 7;
  predictions[1].detections[0].category_id = 7;
  const std::vector<std::string> patients = {"p1", "p2"};
  const auto by = summarize_by_category(truth, predictions, patients, 0.5, 0.5);
  REQUIRE(by.size() == 2);
  CHECK(by[0].category.id == 3);
  CHECK(by[0].category.name == "tumor");
  const SegmentationSummary& tumour = by[0].summary;
  CHECK(tumour.images[0].overlap.dice == 1.0);
  CHECK(tumour.images[1].overlap.dice == 1.0);  // no tumour, none predicted
  CHECK(tumour.lesions == 1);
  CHECK(tumour.detected == 1);
  CHECK(tumour.false_positives == 0);
  const SegmentationSummary& edema = by[1].summary;
  CHECK(by[1].category.name == "edema");
  CHECK(edema.images[0].overlap.dice == 0.0);  // 4 true pixels, 9 predicted elsewhere
  CHECK(edema.images[1].overlap.dice == 1.0);
  CHECK(edema.mean_dice == doctest::Approx(0.5));
  CHECK(edema.lesions == 2);
  CHECK(edema.detected == 1);
  CHECK(edema.false_positives == 1);  // the mislabelled tumour
  CHECK(edema.patients.size() == 2);
  // Pooled, the mislabelled detection lies on tumour pixels, so image a scores higher than edema's 0.
  const auto pooled = summarize_segmentation(truth, predictions, patients, 0.5, 0.5);
  CHECK(pooled.images[0].overlap.dice == doctest::Approx(18.0 / 22.0));
  CHECK(pooled.lesions == 3);
  CHECK(pooled.detected == 2);
  CHECK(pooled.false_positives == 1);
  // A category with no annotation and no detection anywhere: every image a correct "none".
  truth.categories.push_back({9, "cyst"});
  const auto with_cyst = summarize_by_category(truth, predictions, patients, 0.5, 0.5);
  REQUIRE(with_cyst.size() == 3);
  CHECK(with_cyst[2].summary.mean_dice == 1.0);
  CHECK(with_cyst[2].summary.lesions == 0);
  CHECK(std::isnan(with_cyst[2].summary.sensitivity));
}

namespace {

detection::ImageScore slice_score(const std::string& patient, double dice, double hd95, int64_t lesions, int64_t detected) {
  detection::ImageScore s;
  s.patient = patient;
  s.overlap.dice = dice;
  s.overlap.iou = dice / (2 - dice);
  s.overlap.hd95 = hd95;
  s.lesions = lesions;
  s.detected = detected;
  return s;
}

}  // namespace

TEST_CASE("patient bootstrap: intervals of the validation figures, resampling patients, reproducible") {
  using namespace detection;
  SegmentationSummary s;
  // Two patients, one slice each, Dice 0 and 1: a resample's mean is 0, 0.5 or 1 (1/4, 1/2, 1/4).
  s.images = {slice_score("a", 0.0, std::nan(""), 1, 0), slice_score("b", 1.0, 2.0, 1, 1)};
  const PatientIntervals two = patient_bootstrap(s, 0.95, 4000, 7);
  CHECK(two.patients == 2);
  CHECK(two.resamples == 4000);
  CHECK(two.dice.low == 0.0);
  CHECK(two.dice.high == 1.0);
  CHECK(two.sensitivity.low == 0.0);
  CHECK(two.sensitivity.high == 1.0);
  CHECK(two.hd95.low == 2.0);  // defined only where b was drawn
  CHECK(two.hd95.high == 2.0);
  // A 40% interval of that distribution: its 30th and 70th percentiles are both 0.5.
  const PatientIntervals half = patient_bootstrap(s, 0.4, 4000, 7);
  CHECK(half.dice.low == 0.5);
  CHECK(half.dice.high == 0.5);
  // Identical patients: no spread. Slices of one patient are drawn together (8 slices, 2 patients).
  SegmentationSummary same;
  for (const char* p : {"a", "b"})
    for (int k = 0; k < 4; ++k) same.images.push_back(slice_score(p, 0.25 * k, 1.0 + k, 1, 1));
  const PatientIntervals flat = patient_bootstrap(same);
  CHECK(flat.dice.low == doctest::Approx(0.375));
  CHECK(flat.dice.high == doctest::Approx(0.375));
  CHECK(flat.hd95.low == doctest::Approx(2.5));
  CHECK(flat.sensitivity.low == 1.0);
  // Eight patients of varied Dice: the interval holds the mean, is narrower at 80% than at 95%,
  // and the same seed gives the same bits.
  SegmentationSummary varied;
  for (int p = 0; p < 8; ++p)
    for (int k = 0; k < 3; ++k) varied.images.push_back(slice_score("p" + std::to_string(p), 0.5 + 0.06 * p - 0.01 * k, 3.0 + p, 1, p % 3 ? 1 : 0));
  double mean = 0;
  for (const auto& image : varied.images) mean += image.overlap.dice / 24.0;
  const PatientIntervals wide = patient_bootstrap(varied), narrow = patient_bootstrap(varied, 0.8);
  CHECK(wide.dice.low < mean);
  CHECK(wide.dice.high > mean);
  CHECK(narrow.dice.low > wide.dice.low);
  CHECK(narrow.dice.high < wide.dice.high);
  const PatientIntervals again = patient_bootstrap(varied);
  CHECK(again.dice.low == wide.dice.low);
  CHECK(again.sensitivity.high == wide.sensitivity.high);
  CHECK(patient_bootstrap(varied, 0.95, 2000, 1).dice.low != wide.dice.low);  // another seed, other draws
  // One patient: nothing to resample between.
  SegmentationSummary one;
  one.images = {slice_score("a", 0.7, 1.0, 1, 1), slice_score("a", 0.9, 1.0, 1, 1)};
  CHECK(std::isnan(patient_bootstrap(one).dice.low));
  CHECK_THROWS_WITH(patient_bootstrap(one, 1.0), "patient_bootstrap: level must be in (0, 1), got 1");
}

TEST_CASE("paired patient bootstrap: the difference of two models on the same slices") {
  using namespace detection;
  SegmentationSummary a, b;
  for (int p = 0; p < 6; ++p)
    for (int k = 0; k < 2; ++k) {
      const std::string patient = "p" + std::to_string(p);
      a.images.push_back(slice_score(patient, 0.4 + 0.1 * p, 5.0 + p, 1, p % 2));
      b.images.push_back(slice_score(patient, 0.45 + 0.1 * p, 4.0 + p, 1, 1));
      a.images.back().file_name = b.images.back().file_name = patient + "_" + std::to_string(k);
    }
  // b is a's Dice + 0.05 on every slice: every resample's difference is 0.05, however the patients
  // vary, where an unpaired interval would be as wide as their spread.
  const PatientComparison c = paired_patient_bootstrap(a, b);
  CHECK(c.patients == 6);
  CHECK(c.dice.a == doctest::Approx(0.65));
  CHECK(c.dice.b == doctest::Approx(0.70));
  CHECK(c.dice.difference.low == doctest::Approx(0.05));
  CHECK(c.dice.difference.high == doctest::Approx(0.05));
  CHECK(c.hd95.difference.low == doctest::Approx(-1.0));
  CHECK(c.hd95.difference.high == doctest::Approx(-1.0));
  CHECK(patient_bootstrap(a).dice.high - patient_bootstrap(a).dice.low > 0.1);
  // Sensitivity: a finds the lesions of odd patients only, b all: the difference is 1 - a's share,
  // between 0 and 1, and positive in every resample but those that drew odd patients only.
  CHECK(c.sensitivity.a == doctest::Approx(0.5));
  CHECK(c.sensitivity.difference.low >= 0.0);
  CHECK(c.sensitivity.difference.high <= 1.0);
  CHECK(c.sensitivity.difference.high > c.sensitivity.difference.low);
  // A model against itself: nothing.
  const PatientComparison same = paired_patient_bootstrap(a, a);
  CHECK(same.dice.difference.low == 0.0);
  CHECK(same.dice.difference.high == 0.0);
  // The same images in another order (another COCO file of the split) are matched by name: the
  // patients are then drawn in a's order, so the intervals are those of the ordered pair, bit for bit.
  SegmentationSummary shuffled = b;
  std::reverse(shuffled.images.begin(), shuffled.images.end());
  std::swap(shuffled.images[0], shuffled.images[5]);
  const PatientComparison reordered = paired_patient_bootstrap(a, shuffled);
  CHECK(reordered.patients == 6);
  CHECK(reordered.dice.difference.low == c.dice.difference.low);
  CHECK(reordered.sensitivity.difference.low == c.sensitivity.difference.low);
  CHECK(reordered.sensitivity.difference.high == c.sensitivity.difference.high);
  CHECK(reordered.hd95.b == c.hd95.b);
  // Other images, or one listed twice, are refused.
  SegmentationSummary other = b;
  other.images[3].file_name = "p1_9";
  CHECK_THROWS_WITH(paired_patient_bootstrap(a, other),
                    "compare: p1_1 (patient p1) is in one evaluation only (both must be of the same images)");
  SegmentationSummary twice = b;
  twice.images[3] = twice.images[2];
  CHECK_THROWS_WITH(paired_patient_bootstrap(a, twice), "compare: p1_0 (patient p1) is listed twice in one evaluation");
  shuffled.images.pop_back();
  CHECK_THROWS_WITH(paired_patient_bootstrap(a, shuffled),
                    "compare: 12 images against 11 (both evaluations must be of the same images)");
}

TEST_CASE("operating points: each row is the summary at its threshold, and detections only fall away") {
  using namespace detection;
  constexpr int64_t h = 12, w = 12;
  CocoDataset truth;
  CocoImage a{1, w, h, "p1_a.png", {}}, b{2, w, h, "p2_a.png", {}};
  a.annotations = {lesion(rectangle(h, w, 1, 1, 5, 5), h, w)};
  b.annotations = {lesion(rectangle(h, w, 6, 6, 10, 10), h, w)};
  truth.images = {a, b};
  std::vector<ImagePrediction> predictions(2);
  add_detection(predictions[0], rectangle(h, w, 1, 1, 5, 5), 0.95);   // exact
  add_detection(predictions[0], rectangle(h, w, 2, 2, 6, 6), 0.7);    // a duplicate of the same lesion: a false positive
  add_detection(predictions[0], rectangle(h, w, 9, 0, 12, 2), 0.35);  // nothing there
  add_detection(predictions[1], rectangle(h, w, 6, 6, 10, 9), 0.55);  // 12 of 16 pixels: IoU 0.75
  add_detection(predictions[1], rectangle(h, w, 0, 9, 2, 12), 0.15);  // nothing there
  const std::vector<std::string> patients = {"p1", "p2"};
  const std::vector<double> thresholds = {0.1, 0.3, 0.5, 0.6, 0.9};
  const auto rows = operating_points(truth, predictions, patients, thresholds);
  REQUIRE(rows.size() == thresholds.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    CAPTURE(i);
    const auto s = summarize_segmentation(truth, predictions, patients, thresholds[i]);
    CHECK(rows[i].score_thresh == thresholds[i]);
    CHECK(rows[i].mean_dice == s.mean_dice);
    CHECK(rows[i].mean_iou == s.mean_iou);
    CHECK(rows[i].sensitivity == s.sensitivity);
    CHECK(rows[i].false_positives_per_image == s.false_positives_per_image);
    if (i > 0) {  // a higher threshold keeps a prefix of the same score order: counts never rise
      CHECK(rows[i].detected <= rows[i - 1].detected);
      CHECK(rows[i].false_positives <= rows[i - 1].false_positives);
    }
  }
  // By hand: >= 0.1 keeps all 5 (2 found, 3 false positives); >= 0.6 drops image b's lesion; >= 0.9 keeps one.
  CHECK(rows[0].detected == 2);
  CHECK(rows[0].false_positives == 3);
  CHECK(rows[2].detected == 2);
  CHECK(rows[2].false_positives == 1);
  CHECK(rows[3].sensitivity == 0.5);
  CHECK(rows[4].false_positives == 0);
  CHECK(rows[4].mean_dice == doctest::Approx((1.0 + 0.0) / 2));
  CHECK(test::error_of([&] { operating_points(truth, predictions, patients, {0.5, 0.3}); }) ==
        "operating_points: thresholds must ascend within [0, 1], got 0.3 after 0.5");
  CHECK(test::error_of([&] { operating_points(truth, predictions, patients, {1.5}); }) ==
        "operating_points: thresholds must ascend within [0, 1], got 1.5");
}
