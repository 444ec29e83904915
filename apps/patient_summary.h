// `mrcnn predict`'s view of unlabelled scans per patient: what the written detections cover on each
// slice, summed per patient (--summary: a CSV and a table), and an HTML report with an overlay of
// every slice (--report), for a reader who wants the model's findings, not its metrics.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "apps/commands.h"

namespace mrcnn::apps {

// One image's written detections (those scoring >= --score-thresh).
struct SliceResult {
  std::string file_name, patient;
  int64_t detections = 0, covered = 0;  // covered: pixels under any written detection's mask
  double best_score = 0;                // 0 without detections
  std::string overlay;                  // the report's overlay PNG, relative to the report folder
  std::string cam;                      // --cams: the best detection's activation map there (empty: none)
  int64_t width = 0;
};

// Per patient: how many slices, how many with a detection, the largest covered area (and its
// slice), the areas' sum and, with the slice spacing, a volume by Cavalieri's rule (sum of areas x
// spacing): right only when the patient's slices are all of the scan's, evenly spaced.
struct PatientArea {
  std::string patient, largest_slice;  // largest_slice: empty when no slice has a detection
  int64_t slices = 0, with_detection = 0, largest = 0, total = 0;
};

// In order of the patients' first slices.
std::vector<PatientArea> patient_areas(const std::vector<SliceResult>& slices);

// The rows as CSV at o.summary (for a spreadsheet) and as a table on stdout.
void write_patient_summary(const PredictOptions& o, const std::vector<PatientArea>& rows);

// o.report_dir/index.html: the per-patient table, every slice grouped by patient with its overlay,
// and what each figure means. The overlays are already in place (SliceResult::overlay).
void write_prediction_report(const PredictOptions& o, const std::vector<SliceResult>& slices,
                             const std::vector<PatientArea>& rows, bool flip_test);

}  // namespace mrcnn::apps
