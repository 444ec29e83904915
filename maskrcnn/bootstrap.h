// How far a validation figure could move with other patients: a percentile bootstrap over patients.
// With a handful of validation patients (8 in the brain-tumour split) a mean Dice of 0.80 may as
// well be 0.75 or 0.85; the interval says so next to the number. Patients, not slices, are drawn,
// because a patient's slices are alike (drawing slices would pretend there were 47 independent
// cases). Each resample draws as many patients as there are, with replacement, and recomputes the
// figure the way the headline does: Dice, IoU and HD95 as means over the drawn patients' slices
// (HD95 over those where it is defined), sensitivity as lesions found / lesions. The generator is
// a fixed-seed SplitMix64, so the interval is the same on every machine and run.
#pragma once
#include <cstdint>

#include "maskrcnn/evaluate.h"

namespace mrcnn::detection {

struct Interval {
  double low, high;  // NaN when undefined (fewer than two patients, or no resample defines it)
};

struct PatientIntervals {
  double level = 0.95;
  int64_t resamples = 0, patients = 0;
  Interval dice, iou, hd95, sensitivity;
};

// level in (0, 1); resamples >= 1. Patients are SegmentationSummary::images[i].patient.
PatientIntervals patient_bootstrap(const SegmentationSummary& summary, double level = 0.95, int64_t resamples = 2000,
                                   uint64_t seed = 0);

// Two models on the same images: each resample draws the same patients for both, so what the
// patients share (hard slices, small lesions) cancels, and the interval is of b's figure minus
// a's. One that excludes 0 is a difference these patients show; one that holds 0 is not.
struct PairedDifference {
  double a = 0, b = 0;  // the two headline figures (NaN where undefined)
  Interval difference;  // of b - a
};
struct PatientComparison {
  double level = 0.95;
  int64_t resamples = 0, patients = 0;
  PairedDifference dice, iou, hd95, sensitivity;
};
// a and b must score the same images (matched by file name and patient, in any order).
PatientComparison paired_patient_bootstrap(const SegmentationSummary& a, const SegmentationSummary& b, double level = 0.95,
                                           int64_t resamples = 2000, uint64_t seed = 0);

}  // namespace mrcnn::detection
