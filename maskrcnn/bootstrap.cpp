// Percentile bootstrap over patients (see bootstrap.h).
#include "maskrcnn/bootstrap.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "maskrcnn/metrics.h"
#include "tensor/error.h"

namespace mrcnn::detection {

namespace {

// SplitMix64: tiny, and specified bit for bit (std::uniform_int_distribution is not).
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) up to a bias of n / 2^64 (nothing, for a count of patients).
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
};

Interval interval(std::vector<double>& values, double level) {
  const double nan = std::nan("");
  if (values.empty()) return {nan, nan};
  const double tail = (1 - level) / 2;
  std::sort(values.begin(), values.end());
  return {percentile_of_sorted(values, tail), percentile_of_sorted(values, 1 - tail)};
}

// One patient's sums: what a resample adds when it draws the patient.
struct PatientSums {
  double dice = 0, iou = 0, hd95 = 0;
  int64_t slices = 0, hd95_slices = 0, lesions = 0, detected = 0;

  void add(const PatientSums& p) {
    dice += p.dice, iou += p.iou, hd95 += p.hd95;
    slices += p.slices, hd95_slices += p.hd95_slices, lesions += p.lesions, detected += p.detected;
  }
  // The headline figures of these slices: Dice, IoU, HD95 and sensitivity (NaN where undefined).
  std::array<double, 4> figures() const {
    const double nan = std::nan("");
    return {dice / static_cast<double>(slices), iou / static_cast<double>(slices),
            hd95_slices > 0 ? hd95 / static_cast<double>(hd95_slices) : nan,
            lesions > 0 ? static_cast<double>(detected) / static_cast<double>(lesions) : nan};
  }
};

// Each patient's sums, in order of first appearance.
std::vector<PatientSums> patient_sums(const SegmentationSummary& summary) {
  std::map<std::string, size_t> index;
  std::vector<PatientSums> patients;
  for (const ImageScore& image : summary.images) {
    const auto [it, fresh] = index.emplace(image.patient, patients.size());
    if (fresh) patients.emplace_back();
    PatientSums& p = patients[it->second];
    p.dice += image.overlap.dice;
    p.iou += image.overlap.iou;
    ++p.slices;
    if (!std::isnan(image.overlap.hd95)) p.hd95 += image.overlap.hd95, ++p.hd95_slices;
    p.lesions += image.lesions;
    p.detected += image.detected;
  }
  return patients;
}

// Resamples patients (the same draws for both when `b` is given) and collects, per figure, its
// value (or b's minus a's) wherever defined; returns the four intervals.
std::array<Interval, 4> resample(const std::vector<PatientSums>& a, const std::vector<PatientSums>* b, double level,
                                 int64_t resamples, uint64_t seed) {
  check(level > 0 && level < 1, "patient_bootstrap: level must be in (0, 1), got ", level);
  check(resamples >= 1, "patient_bootstrap: resamples must be >= 1, got ", resamples);
  const double nan = std::nan("");
  std::array<Interval, 4> result;
  result.fill({nan, nan});
  if (a.size() < 2) return result;  // one patient: nothing to resample between
  std::array<std::vector<double>, 4> values;
  SplitMix64 rng{seed};
  const auto count = static_cast<int64_t>(a.size());
  for (int64_t r = 0; r < resamples; ++r) {
    PatientSums total_a, total_b;
    for (int64_t k = 0; k < count; ++k) {
      const auto drawn = static_cast<size_t>(rng.below(count));
      total_a.add(a[drawn]);
      if (b) total_b.add((*b)[drawn]);
    }
    const auto fa = total_a.figures(), fb = total_b.figures();
    for (size_t f = 0; f < 4; ++f) {
      const double v = b ? fb[f] - fa[f] : fa[f];
      if (!std::isnan(v)) values[f].push_back(v);
    }
  }
  for (size_t f = 0; f < 4; ++f) result[f] = interval(values[f], level);
  return result;
}

}  // namespace

PatientIntervals patient_bootstrap(const SegmentationSummary& summary, double level, int64_t resamples, uint64_t seed) {
  const std::vector<PatientSums> patients = patient_sums(summary);
  PatientIntervals result;
  result.level = level;
  result.resamples = resamples;
  result.patients = static_cast<int64_t>(patients.size());
  const auto intervals = resample(patients, nullptr, level, resamples, seed);
  result.dice = intervals[0], result.iou = intervals[1], result.hd95 = intervals[2], result.sensitivity = intervals[3];
  return result;
}

PatientComparison paired_patient_bootstrap(const SegmentationSummary& a, const SegmentationSummary& b, double level,
                                           int64_t resamples, uint64_t seed) {
  check(a.images.size() == b.images.size(), "compare: ", a.images.size(), " images against ", b.images.size(),
        " (both evaluations must be of the same images)");
  // b's images in a's order, matched by file name and patient: two evaluations of one split agree
  // on the images, not necessarily on their order (two COCO files listing them differently).
  using Key = std::pair<std::string, std::string>;
  const auto index = [](const SegmentationSummary& summary) {
    std::map<Key, size_t> positions;
    for (size_t i = 0; i < summary.images.size(); ++i) {
      const ImageScore& s = summary.images[i];
      check(positions.emplace(Key(s.file_name, s.patient), i).second, "compare: ", s.file_name, " (patient ", s.patient,
            ") is listed twice in one evaluation");
    }
    return positions;
  };
  index(a);  // refuses an image listed twice in a, as in b
  const std::map<Key, size_t> in_b = index(b);
  SegmentationSummary b_in_order;
  for (const ImageScore& s : a.images) {
    const auto found = in_b.find(Key(s.file_name, s.patient));
    check(found != in_b.end(), "compare: ", s.file_name, " (patient ", s.patient,
          ") is in one evaluation only (both must be of the same images)");
    b_in_order.images.push_back(b.images[found->second]);
  }
  const std::vector<PatientSums> pa = patient_sums(a), pb = patient_sums(b_in_order);
  PatientSums all_a, all_b;
  for (const auto& p : pa) all_a.add(p);
  for (const auto& p : pb) all_b.add(p);
  const auto fa = all_a.figures(), fb = all_b.figures();
  PatientComparison result;
  result.level = level;
  result.resamples = resamples;
  result.patients = static_cast<int64_t>(pa.size());
  const auto intervals = resample(pa, &pb, level, resamples, seed);
  PairedDifference* rows[] = {&result.dice, &result.iou, &result.hd95, &result.sensitivity};
  for (size_t f = 0; f < 4; ++f) *rows[f] = {fa[f], fb[f], intervals[f]};
  return result;
}

}  // namespace mrcnn::detection
