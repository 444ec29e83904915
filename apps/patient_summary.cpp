// The per-patient summary and the prediction report of `mrcnn predict` (patient_summary.h).
#include "apps/patient_summary.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

#include "apps/activation_maps.h"
#include "tensor/error.h"

namespace mrcnn::apps {

namespace {

// A CSV field as RFC 4180 writes it: quoted, quotes doubled, when it holds a comma, quote or line break.
std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

// "p1_9.jpg" before "p1_10.jpg": runs of digits compare as numbers (leading zeros aside), so a
// patient's slices read in order whatever order they were given in.
bool natural_less(const std::string& a, const std::string& b) {
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (!digit(a[i]) || !digit(b[j])) {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i, ++j;
      continue;
    }
    size_t end_a = i, end_b = j;
    while (end_a < a.size() && digit(a[end_a])) ++end_a;
    while (end_b < b.size() && digit(b[end_b])) ++end_b;
    while (i + 1 < end_a && a[i] == '0') ++i;
    while (j + 1 < end_b && b[j] == '0') ++j;
    if (end_a - i != end_b - j) return end_a - i < end_b - j;
    const int order = a.compare(i, end_a - i, b, j, end_b - j);
    if (order != 0) return order < 0;
    i = end_a, j = end_b;
  }
  return a.size() - i < b.size() - j;
}

// An area as the table and report show it: mm^2 to 0.1 with the pixel spacing, else whole pixels.
std::string area_text(int64_t pixels, const PredictOptions& o) {
  return o.pixel_mm > 0 ? fmt(mm2(pixels, o.pixel_mm), "%.1f") : std::to_string(pixels);
}

double volume_ml(const PatientArea& r, const PredictOptions& o) { return mm2(r.total, o.pixel_mm) * o.slice_mm / 1000.0; }

}  // namespace

std::vector<PatientArea> patient_areas(const std::vector<SliceResult>& slices) {
  std::vector<PatientArea> rows;
  std::map<std::string, size_t> row_of;
  for (size_t i = 0; i < slices.size(); ++i) {
    const auto [it, fresh] = row_of.emplace(slices[i].patient, rows.size());
    if (fresh) rows.push_back({slices[i].patient, ""});
    PatientArea& row = rows[it->second];
    ++row.slices;
    row.with_detection += slices[i].covered > 0;
    row.total += slices[i].covered;
    if (slices[i].covered > row.largest) row.largest = slices[i].covered, row.largest_slice = slices[i].file_name;
  }
  return rows;
}

// The rows as CSV (for a spreadsheet) and as a table on stdout.
void write_patient_summary(const PredictOptions& o, const std::vector<PatientArea>& rows) {
  const bool mm = o.pixel_mm > 0, volume = o.slice_mm > 0;
  std::string csv = "patient,slices,slices_with_detection,largest_px,largest_slice,total_px";
  if (mm) csv += ",largest_mm2,total_mm2";
  if (volume) csv += ",volume_ml";
  csv += "\n";
  for (const PatientArea& r : rows) {
    csv += str_cat(csv_field(r.patient), ",", r.slices, ",", r.with_detection, ",", r.largest, ",",
                   csv_field(r.largest_slice), ",", r.total);
    if (mm) csv += str_cat(",", fmt(mm2(r.largest, o.pixel_mm), "%.2f"), ",", fmt(mm2(r.total, o.pixel_mm), "%.2f"));
    if (volume) csv += str_cat(",", fmt(volume_ml(r, o), "%.3f"));
    csv += "\n";
  }
  write_file_atomically(o.summary, csv);
  const char* unit = mm ? "mm^2" : "px";
  std::printf("Per patient (%s), detections scoring >= %.2f:\n", o.group_regex.c_str(), o.score_thresh);
  std::printf("%-12s %6s %15s %14s  %-24s %14s%s\n", "patient", "slices", "with detection", str_cat("largest ", unit).c_str(),
              "on slice", str_cat("total ", unit).c_str(), volume ? "  volume (ml)" : "");
  for (const PatientArea& r : rows) {
    std::printf("%-12s %6lld %15lld %14s  %-24s %14s", r.patient.c_str(), static_cast<long long>(r.slices),
                static_cast<long long>(r.with_detection), area_text(r.largest, o).c_str(),
                r.largest > 0 ? r.largest_slice.c_str() : "-", area_text(r.total, o).c_str());
    if (volume) std::printf("  %11.2f", volume_ml(r, o));
    std::printf("\n");
  }
  std::fprintf(stderr, "wrote the per-patient summary of %s to %s\n", counted(static_cast<int64_t>(rows.size()), "patient").c_str(),
               o.summary.c_str());
}

void write_prediction_report(const PredictOptions& o, const std::vector<SliceResult>& slices,
                             const std::vector<PatientArea>& rows, bool flip_test) {
  const bool mm = o.pixel_mm > 0, volume = o.slice_mm > 0;
  const std::string unit = mm ? "mm&sup2;" : "px", threshold = fmt(o.score_thresh, "%.2f");
  std::string html = report_head("mrcnn prediction report");
  html += "<h1>Prediction report</h1>\n<p>Model <code>" + html_escape(o.weights) + "</code>, " + counted(static_cast<int64_t>(slices.size()), "image") +
          " of " + counted(static_cast<int64_t>(rows.size()), "patient") + ". Shown and counted: detections scoring &ge; " + threshold +
          ", each tinted in its own colour with its box outlined" +
          (flip_test ? "; each image also run mirrored left-right and the two views averaged (flip test)" : "") + ".</p>\n";
  html += "<h2>Per patient</h2><table><tr><th class=l>patient</th><th>slices</th><th>with a detection</th><th>largest area (" +
          unit + ")</th><th class=l>on slice</th><th>total area (" + unit + ")</th>" + (volume ? "<th>volume (ml)</th>" : "") +
          "</tr>";
  for (const PatientArea& r : rows)
    html += "<tr><td class=l>" + html_escape(r.patient) + "</td><td>" + std::to_string(r.slices) + "</td><td>" +
            std::to_string(r.with_detection) + "</td><td>" + area_text(r.largest, o) + "</td><td class=l>" +
            (r.largest > 0 ? html_escape(r.largest_slice) : "-") + "</td><td>" + area_text(r.total, o) + "</td>" +
            (volume ? "<td>" + fmt(volume_ml(r, o), "%.2f") + "</td>" : "") + "</tr>";
  html += "</table>\n<h2>Slices, by patient (file names in numeric order)</h2><table><tr><th class=l>patient</th><th class=l>slice</th><th>detections</th>"
          "<th>best score</th><th>covered area (" + unit + ")</th><th class=l>overlay</th>" +
          (o.cams ? str_cat("<th class=l>", kCamColumn, "</th>") : std::string()) + "</tr>\n";
  for (const PatientArea& r : rows) {
    std::vector<const SliceResult*> mine;
    for (const SliceResult& slice : slices)
      if (slice.patient == r.patient) mine.push_back(&slice);
    std::stable_sort(mine.begin(), mine.end(),
                     [](const SliceResult* x, const SliceResult* y) { return natural_less(x->file_name, y->file_name); });
    for (const SliceResult* at : mine) {
      const SliceResult& slice = *at;
      html += "<tr><td class=l>" + html_escape(slice.patient) + "</td><td class=l>" + html_escape(slice.file_name) + "</td><td>" +
              std::to_string(slice.detections) + "</td><td>" + (slice.detections ? fmt(slice.best_score, "%.2f") : "-") +
              "</td><td>" + area_text(slice.covered, o) + "</td><td class=l><img src=\"" + html_escape(slice.overlay) + "\" width=" +
              std::to_string(slice.width) + "></td>" +
              (o.cams ? "<td class=l>" + (slice.cam.empty() ? std::string("-") : "<img src=\"" + html_escape(slice.cam) + "\" width=" +
                                                                                     std::to_string(slice.width) + ">") + "</td>"
                      : std::string()) +
              "</tr>\n";
    }
  }
  html += "</table>\n<h2>How to read this report</h2><dl>"
          "<dt>Detection</dt><dd>A region the model marks as tumour, with a score from 0 to 1: how sure the model is, "
          "not a probability of disease. Only detections scoring &ge; " + threshold + " are shown and counted.</dd>"
          "<dt>Covered area</dt><dd>The " + std::string(mm ? "area, in mm&sup2; (pixels &times; " + fmt(o.pixel_mm, "%g") +
          " mm, squared)," : "pixels (give <code>--pixel-mm</code> for mm&sup2;)") + " inside any shown detection on the "
          "slice; per patient, the largest slice and the sum over the slices given.</dd>" +
          (o.cams ? std::string(kCamGlossary) : std::string()) +
          (volume ? "<dt>Volume</dt><dd>The total area &times; the distance between slices (" + fmt(o.slice_mm, "%g") +
                        " mm), by Cavalieri's rule: right only when the images are all of a scan's slices, evenly spaced; "
                        "slices left out make it too small.</dd>"
                  : std::string()) +
          "</dl><p>This is a model's output on images without labels. It is not a diagnosis and has not been validated "
          "for clinical use: how far this model agrees with expert outlines is what <code>mrcnn eval</code> measures on "
          "labelled slices.</p>\n</body></html>\n";
  write_file_atomically((std::filesystem::path(o.report_dir) / "index.html").string(), html);
  std::fprintf(stderr, "report: %s\n", (std::filesystem::path(o.report_dir) / "index.html").string().c_str());
}

}  // namespace mrcnn::apps
