// Percentile bootstrap over patients (see bootstrap.h).
#include "maskrcnn/bootstrap.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

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

// numpy.percentile's default (linear interpolation between the order statistics).
double percentile(std::vector<double>& values, double q) {
  std::sort(values.begin(), values.end());
  const double position = q * static_cast<double>(values.size() - 1);
  const auto below = static_cast<size_t>(std::floor(position));
  const size_t above = std::min(below + 1, values.size() - 1);
  return values[below] + (position - static_cast<double>(below)) * (values[above] - values[below]);
}

Interval interval(std::vector<double>& values, double level) {
  const double nan = std::nan("");
  if (values.empty()) return {nan, nan};
  const double tail = (1 - level) / 2;
  return {percentile(values, tail), percentile(values, 1 - tail)};
}

// One patient's sums: what a resample adds when it draws the patient.
struct PatientSums {
  double dice = 0, iou = 0, hd95 = 0;
  int64_t slices = 0, hd95_slices = 0, lesions = 0, detected = 0;
};

}  // namespace

PatientIntervals patient_bootstrap(const SegmentationSummary& summary, double level, int64_t resamples, uint64_t seed) {
  check(level > 0 && level < 1, "patient_bootstrap: level must be in (0, 1), got ", level);
  check(resamples >= 1, "patient_bootstrap: resamples must be >= 1, got ", resamples);
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
  PatientIntervals result;
  result.level = level;
  result.resamples = resamples;
  result.patients = static_cast<int64_t>(patients.size());
  const double nan = std::nan("");
  result.dice = result.iou = result.hd95 = result.sensitivity = {nan, nan};
  if (patients.size() < 2) return result;  // one patient: nothing to resample between
  std::vector<double> dice, iou, hd95, sensitivity;
  SplitMix64 rng{seed};
  const auto count = static_cast<int64_t>(patients.size());
  for (int64_t r = 0; r < resamples; ++r) {
    PatientSums total;
    for (int64_t k = 0; k < count; ++k) {
      const PatientSums& p = patients[static_cast<size_t>(rng.below(count))];
      total.dice += p.dice, total.iou += p.iou, total.hd95 += p.hd95;
      total.slices += p.slices, total.hd95_slices += p.hd95_slices, total.lesions += p.lesions, total.detected += p.detected;
    }
    dice.push_back(total.dice / static_cast<double>(total.slices));
    iou.push_back(total.iou / static_cast<double>(total.slices));
    if (total.hd95_slices > 0) hd95.push_back(total.hd95 / static_cast<double>(total.hd95_slices));
    if (total.lesions > 0) sensitivity.push_back(static_cast<double>(total.detected) / static_cast<double>(total.lesions));
  }
  result.dice = interval(dice, level);
  result.iou = interval(iou, level);
  result.hd95 = interval(hd95, level);
  result.sensitivity = interval(sensitivity, level);
  return result;
}

}  // namespace mrcnn::detection
