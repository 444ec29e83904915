// `mrcnn eval`: a checkpoint and a labelled COCO set in; COCO AP (bbox, segm), per-image and
// per-patient Dice/IoU/HD95, lesion sensitivity and false positives out, with the same image-level
// figures at score thresholds 0.1 .. 0.9 (operating points), as a table on stdout,
// optionally JSON (--json), the detections in COCO results format (--detections) and an HTML
// report with one overlay per image, worst Dice first (--report).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <functional>
#include <nlohmann/json.hpp>

#include "apps/activation_maps.h"
#include "apps/commands.h"
#include "apps/intervals.h"
#include "apps/plot.h"
#include "apps/progress.h"
#include "maskrcnn/bootstrap.h"
#include "maskrcnn/evaluate.h"
#include "maskrcnn/image_io.h"
#include "maskrcnn/model_io.h"

namespace mrcnn::apps {

using namespace detection;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

json finite(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json stats_json(const CocoEvalResult& r) {
  static const char* names[] = {"AP", "AP50", "AP75", "APs", "APm", "APl"};
  json j;
  for (int i = 0; i < 6; ++i) j[names[i]] = r.stats[i];
  return j;
}

// How HD95 and areas are shown: in millimetres when the pixel spacing was given, else in pixels.
struct DistanceUnit {
  double per_pixel = 1;
  std::string name = "px", area_name = "px";
  explicit DistanceUnit(double pixel_mm) {
    if (pixel_mm > 0) per_pixel = pixel_mm, name = "mm", area_name = "mm^2";
  }
  std::string operator()(double pixels) const { return fmt(pixels * per_pixel, "%.2f"); }
  std::string area(int64_t pixels) const {
    return fmt(static_cast<double>(pixels) * per_pixel * per_pixel, name == "mm" ? "%.1f" : "%.0f");
  }
};

// A relative difference as a signed percentage; "-" when undefined (nothing labelled).
std::string percent(double fraction) { return std::isnan(fraction) ? "-" : fmt(fraction * 100, "%+.1f%%"); }

// The median size of the patients' area differences, as a percentage; "-" when no patient has a label.
std::string median_area_difference(const SegmentationSummary& s) {
  return std::isnan(s.median_area_difference) ? "-" : fmt(s.median_area_difference * 100, "%.1f%%");
}

// Adds "hd95_mm" beside "hd95" (always pixels, so a reader of the JSON never guesses the unit).
void add_hd95_mm(json& j, double pixel_mm) {
  if (pixel_mm > 0) j["hd95_mm"] = j["hd95"].is_null() ? json(nullptr) : json(j["hd95"].get<double>() * pixel_mm);
}

// Score thresholds of the operating-point table: 0.1, 0.2, ..., 0.9.
std::vector<double> table_thresholds() {
  std::vector<double> t;
  for (int k = 1; k <= 9; ++k) t.push_back(k / 10.0);
  return t;
}

const char* kOperatingPointsCaveat =
    "the figures above at other score thresholds; a threshold chosen here is tuned to this data, so choose it on data you do not report on";

void print_operating_points(const std::vector<OperatingPoint>& rows, const DistanceUnit& unit) {
  std::printf("Operating points (%s)\n", kOperatingPointsCaveat);
  std::printf("  %8s %6s %6s %8s %12s %9s\n", "score >=", "Dice", "IoU", ("HD95 " + unit.name).c_str(), "sensitivity", "FP/image");
  for (const auto& r : rows)
    std::printf("  %8.2f %6s %6s %8s %12s %9s\n", r.score_thresh, fmt(r.mean_dice).c_str(), fmt(r.mean_iou).c_str(),
                unit(r.mean_hd95).c_str(), fmt(r.sensitivity).c_str(), fmt(r.false_positives_per_image, "%.2f").c_str());
}

json operating_points_json(const std::vector<OperatingPoint>& rows, double pixel_mm) {
  json list = json::array();
  for (const auto& r : rows)
    list.push_back({{"score_thresh", r.score_thresh}, {"dice", r.mean_dice}, {"iou", r.mean_iou}, {"hd95", finite(r.mean_hd95)},
                    {"sensitivity", finite(r.sensitivity)}, {"detected", r.detected}, {"false_positives", r.false_positives},
                    {"false_positives_per_image", r.false_positives_per_image}});
  for (json& row : list) add_hd95_mm(row, pixel_mm);
  return list;
}

// The figures beyond DatasetEvaluation's: the operating points, and each category on its own when
// the data has several.
struct Tables {
  std::vector<OperatingPoint> operating;
  std::vector<CategorySummary> categories;  // empty for one category (its figures are the pooled ones)
  PatientIntervals intervals;               // of the headline figures
  std::vector<PatientIntervals> category_intervals;  // of each category's figures, in `categories` order
};

const char* kPerCategoryNote = "each structure against its own annotations and detections; the figures above pool them";

json categories_json(const Tables& tables, double pixel_mm) {
  json list = json::array();
  for (size_t k = 0; k < tables.categories.size(); ++k) {
    const auto& [category, s] = tables.categories[k];
    json entry = {{"category_id", category.id}, {"name", category.name}, {"dice", s.mean_dice}, {"iou", s.mean_iou},
                  {"hd95", finite(s.mean_hd95)}, {"hd95_undefined", s.hd95_undefined}, {"lesions", s.lesions},
                  {"detected", s.detected}, {"sensitivity", finite(s.sensitivity)}, {"false_positives", s.false_positives},
                  {"false_positives_per_image", s.false_positives_per_image}};
    add_hd95_mm(entry, pixel_mm);
    entry["intervals"] = intervals_json(tables.category_intervals[k], pixel_mm);
    list.push_back(entry);
  }
  return list;
}

void print_table(const DatasetEvaluation& e, const EvalOptions& o, size_t images, const Tables& tables) {
  static const char* rows[] = {"AP @[.50:.95]", "AP50", "AP75", "AP small", "AP medium", "AP large"};
  std::printf("COCO metrics (pycocotools' algorithm, maxDets 100)   bbox    segm\n");
  for (int i = 0; i < 6; ++i)
    std::printf("  %-50s %6s  %6s\n", rows[i], e.bbox.stats[i] < 0 ? "-" : fmt(e.bbox.stats[i]).c_str(),
                e.segm.stats[i] < 0 ? "-" : fmt(e.segm.stats[i]).c_str());
  const auto& s = e.segmentation;
  std::printf("Segmentation: union of masks scoring >= %.2f vs union of truth, %zu images%s\n", o.score_thresh, images,
              o.flip_test.value() ? " (flip test: each image also run mirrored, the two views averaged)" : "");
  const DistanceUnit unit(o.pixel_mm);
  std::printf("  Dice %s   IoU %s   HD95 %s %s (over %lld images; undefined on %lld with one mask empty)\n",
              fmt(s.mean_dice).c_str(), fmt(s.mean_iou).c_str(), unit(s.mean_hd95).c_str(), unit.name.c_str(),
              static_cast<long long>(static_cast<int64_t>(images) - s.hd95_undefined),
              static_cast<long long>(s.hd95_undefined));
  std::printf("Lesions (mask IoU >= %.2f): %lld of %lld found (sensitivity %s), %lld false positives (%s per image)\n",
              o.lesion_iou, static_cast<long long>(s.detected), static_cast<long long>(s.lesions),
              fmt(s.sensitivity).c_str(), static_cast<long long>(s.false_positives),
              fmt(s.false_positives_per_image, "%.2f").c_str());
  const PatientIntervals& ci = tables.intervals;
  const auto three = [](double v) { return fmt(v); };
  if (ci.patients < 2) {
    std::printf("  (no intervals: the bootstrap resamples patients, and there is %lld)\n", static_cast<long long>(ci.patients));
  } else {
    std::printf("  %s:\n    Dice %s   IoU %s   HD95 %s %s   sensitivity %s\n", intervals_caption(ci).c_str(),
                range(ci.dice, three).c_str(), range(ci.iou, three).c_str(), range(ci.hd95, unit).c_str(), unit.name.c_str(),
                range(ci.sensitivity, three).c_str());
  }
  print_operating_points(tables.operating, unit);
  if (!tables.categories.empty()) {
    std::printf("Per category (%s)\n", kPerCategoryNote);
    const std::string dice_interval = str_cat("Dice ", std::lround(ci.level * 100), "%");
    std::printf("  %-16s %7s %6s %12s %6s %8s %12s %9s\n", "category", "lesions", "Dice", dice_interval.c_str(), "IoU",
                ("HD95 " + unit.name).c_str(), "sensitivity", "FP/image");
    for (size_t k = 0; k < tables.categories.size(); ++k) {
      const auto& [category, c] = tables.categories[k];
      std::printf("  %-16s %7lld %6s %12s %6s %8s %12s %9s\n", category.name.c_str(), static_cast<long long>(c.lesions),
                  fmt(c.mean_dice).c_str(), range(tables.category_intervals[k].dice, three).c_str(), fmt(c.mean_iou).c_str(),
                  unit(c.mean_hd95).c_str(), fmt(c.sensitivity).c_str(), fmt(c.false_positives_per_image, "%.2f").c_str());
    }
  }
  std::printf("Per patient (Dice and IoU pooled over the patient's slices; HD95: mean over slices; areas: summed "
              "over slices, difference = (predicted - labelled) / labelled)\n");
  std::printf("  %-16s %6s %6s %6s %8s %14s %15s %10s\n", "patient", "slices", "Dice", "IoU", ("HD95 " + unit.name).c_str(),
              ("labelled " + unit.area_name).c_str(), ("predicted " + unit.area_name).c_str(), "difference");
  for (const auto& p : s.patients)
    std::printf("  %-16s %6lld %6s %6s %8s %14s %15s %10s\n", p.patient.c_str(), static_cast<long long>(p.images),
                fmt(p.dice).c_str(), fmt(p.iou).c_str(), unit(p.hd95).c_str(), unit.area(p.truth_pixels).c_str(),
                unit.area(p.predicted_pixels).c_str(), percent(p.area_difference()).c_str());
  std::printf("  median |area difference| over the patients with a labelled area: %s\n",
              median_area_difference(s).c_str());
}

json results_json(const DatasetEvaluation& e, const EvalOptions& o, const Tables& tables) {
  const auto& s = e.segmentation;
  json images = json::array(), patients = json::array();
  for (const auto& i : s.images)
    images.push_back({{"file_name", i.file_name}, {"image_id", i.image_id}, {"patient", i.patient},
                      {"dice", i.overlap.dice}, {"iou", i.overlap.iou}, {"hd95", finite(i.overlap.hd95)},
                      {"truth_pixels", i.overlap.truth_pixels}, {"predicted_pixels", i.overlap.predicted_pixels},
                      {"lesions", i.lesions}, {"detected", i.detected}, {"false_positives", i.false_positives}});
  for (const auto& p : s.patients) {
    patients.push_back({{"patient", p.patient}, {"images", p.images}, {"dice", p.dice}, {"iou", p.iou}, {"hd95", finite(p.hd95)},
                        {"truth_pixels", p.truth_pixels}, {"predicted_pixels", p.predicted_pixels},
                        {"area_difference", finite(p.area_difference())}});
    if (o.pixel_mm > 0)
      patients.back()["truth_mm2"] = mm2(p.truth_pixels, o.pixel_mm),
      patients.back()["predicted_mm2"] = mm2(p.predicted_pixels, o.pixel_mm);
  }
  for (json* list : {&images, &patients})
    for (json& entry : *list) add_hd95_mm(entry, o.pixel_mm);
  json results = {{o.results.empty() ? "weights" : "results", o.results.empty() ? o.weights : o.results},
          {"data", o.data},
          {"score_thresh", o.score_thresh},
          {"lesion_iou", o.lesion_iou},
          {"flip_test", o.flip_test.value()},
          {"bbox", stats_json(e.bbox)},
          {"segm", stats_json(e.segm)},
          {"dice", s.mean_dice},
          {"iou", s.mean_iou},
          {"hd95", finite(s.mean_hd95)},
          {"hd95_undefined", s.hd95_undefined},
          {"median_area_difference", finite(s.median_area_difference)},
          {"lesions", {{"total", s.lesions}, {"detected", s.detected}, {"sensitivity", finite(s.sensitivity)},
                       {"false_positives", s.false_positives}, {"false_positives_per_image", s.false_positives_per_image}}},
          {"operating_points", operating_points_json(tables.operating, o.pixel_mm)},
          {"patients", patients},
          {"images", images}};
  add_hd95_mm(results, o.pixel_mm);
  if (o.pixel_mm > 0) results["pixel_mm"] = o.pixel_mm;
  if (!tables.categories.empty()) results["categories"] = categories_json(tables, o.pixel_mm);
  results["intervals"] = intervals_json(tables.intervals, o.pixel_mm);
  return results;
}

json detections_json(const DatasetEvaluation& e, const CocoDataset& truth) {
  json list = json::array();
  for (size_t i = 0; i < e.predictions.size(); ++i)
    for (const auto& d : e.predictions[i].detections)
      list.push_back({{"file_name", truth.images[i].file_name},
                      {"image_id", d.image_id},
                      {"category_id", d.category_id},
                      {"bbox", {d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3]}},
                      {"score", d.score},
                      {"segmentation", {{"size", {d.segmentation.height, d.segmentation.width}},
                                        {"counts", rle_to_string(d.segmentation)}}}});
  return list;
}

// Overlay for the report: the slice in gray, the prediction filled in red, the truth outlined in green.
std::vector<uint8_t> report_overlay(const Sample& sample, const std::vector<uint8_t>& predicted) {
  const Tensor& image = sample.image;
  const int64_t c = image.size(0), h = image.size(1), w = image.size(2);
  const float* px = image.data<float>();
  const auto truth = truth_union(sample.info);
  std::vector<uint8_t> rgb(static_cast<size_t>(h * w * 3));
  for (int64_t i = 0; i < h * w; ++i) {
    float gray = 0;
    for (int64_t k = 0; k < c; ++k) gray += px[k * h * w + i] / static_cast<float>(c);
    const auto g = static_cast<uint8_t>(std::clamp(gray, 0.0f, 1.0f) * 255.0f + 0.5f);
    rgb[i * 3] = predicted[i] ? static_cast<uint8_t>((g + 255) / 2) : g;
    rgb[i * 3 + 1] = predicted[i] ? static_cast<uint8_t>(g / 2) : g;
    rgb[i * 3 + 2] = predicted[i] ? static_cast<uint8_t>(g / 2) : g;
  }
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      if (!truth[y * w + x]) continue;
      const bool edge = x == 0 || y == 0 || x == w - 1 || y == h - 1 || !truth[y * w + x - 1] || !truth[y * w + x + 1] ||
                        !truth[(y - 1) * w + x] || !truth[(y + 1) * w + x];
      if (edge) rgb[(y * w + x) * 3] = 0, rgb[(y * w + x) * 3 + 1] = 255, rgb[(y * w + x) * 3 + 2] = 0;
    }
  return rgb;
}

// What each figure means, for a reader who does not work with these metrics every day.
std::string glossary_html(const EvalOptions& o, const DistanceUnit& unit, bool cams) {
  const std::string threshold = fmt(o.score_thresh, "%.2f");
  return "<h2>How to read this report</h2><dl>"
         "<dt>Dice</dt><dd>How well the predicted tumour area (masks scoring &ge; " + threshold + ") covers the labelled one "
         "on a slice: twice the shared area over the sum of the two areas. 1 is a perfect match, 0 no overlap. A slice with "
         "no tumour and no prediction counts as 1; a slice where only one of the two is empty counts as 0.</dd>"
         "<dt>IoU</dt><dd>The shared area over the area either covers (Jaccard index): the same agreement on a stricter "
         "scale (Dice 0.80 is IoU 0.67).</dd>"
         "<dt>HD95</dt><dd>How far the predicted outline strays from the labelled one: the 95th percentile of the distances "
         "from each outline to the other, in " + std::string(unit.name == "mm" ? "millimetres (pixels &times; " + fmt(o.pixel_mm, "%g") + " mm)" :
         "pixels (give <code>--pixel-mm</code> for millimetres)") + ". 0 is a perfect match, lower is better. It is not "
         "defined on a slice where only one of the two is empty; such slices are left out of its mean.</dd>"
         "<dt>Lesion sensitivity</dt><dd>The share of labelled lesions found: a lesion is found when a predicted mask "
         "scoring &ge; " + threshold + " overlaps it with IoU &ge; " + fmt(o.lesion_iou, "%.2f") + " (each prediction "
         "finds at most one lesion).</dd>"
         "<dt>False positives</dt><dd>Predicted masks scoring &ge; " + threshold + " that found no lesion.</dd>"
         "<dt>Operating points</dt><dd>The same figures if only predictions scoring at least another threshold were "
         "kept: higher thresholds give fewer false positives and may miss more lesions.</dd>"
         "<dt>AP, AP50, AP75 (segm: masks, bbox: boxes)</dt><dd>COCO average precision: how well the model's confidence "
         "ranks real lesions above false alarms, over every prediction whatever its score; AP averages the match "
         "requirement from IoU 0.50 to 0.95, AP50 and AP75 use 0.50 and 0.75 only. 1 is perfect.</dd>"
         "<dt>Per patient</dt><dd>Dice and IoU over all of a patient's slices together, as one volume; HD95 is the mean "
         "over the slices.</dd>"
         "<dt>Labelled and predicted area</dt><dd>The tumour's area summed over a patient's slices, as labelled and as "
         "predicted (times the slice spacing, a volume). The difference, (predicted &minus; labelled) / labelled, is how "
         "far a tumour size read from the model would be off for that patient; the summary gives its median size "
         "over the patients.</dd>"
         "<dt>Interval (summary)</dt><dd>The range the figure would likely take on other patients like these: patients "
         "are drawn again at random, with repeats, many times, and the figure recomputed each time; the interval holds "
         "the middle 95% of those values. With few patients it is wide, and a difference between two models that lies "
         "within it may be chance.</dd>" + (cams ? std::string(kCamGlossary) : std::string()) + "</dl>"
         "<p>These figures measure agreement with the labels of this data set. They are not a clinical validation: how "
         "the model does on other scanners, protocols or patients is not shown here.</p>\n";
}

// Predicted against labelled area, one dot per slice, with the line where they agree; both axes
// from 0 to the largest area, in the report's unit.
Chart area_agreement_chart(const SegmentationSummary& s, const DistanceUnit& unit) {
  const double scale = unit.per_pixel * unit.per_pixel;
  Series slices{"slices", {}, {}, {}, {}, true}, same{"same area", {}, {}, {}, {}, false};
  double largest = 0;
  for (const ImageScore& image : s.images) {
    slices.x.push_back(static_cast<double>(image.overlap.truth_pixels) * scale);
    slices.y.push_back(static_cast<double>(image.overlap.predicted_pixels) * scale);
    largest = std::max({largest, slices.x.back(), slices.y.back()});
  }
  if (largest == 0) largest = 1;
  same.x = {0, largest}, same.y = {0, largest};
  const std::string name = unit.name == "mm" ? "mm2" : "px";  // the chart font has no superscript
  Chart chart{"predicted vs labelled area per slice (" + name + ")", {same, slices}};  // dots over the line
  chart.x_label = "labelled (" + name + ")";
  chart.x_min = chart.y_min = 0, chart.x_max = chart.y_max = largest;
  return chart;
}

// What --cams needs: the model and its labels' COCO ids.
struct CamSource {
  MaskRCNN* model = nullptr;  // null: no maps
  std::vector<int64_t> category_ids;
};

void write_report(const std::string& dir, const DatasetEvaluation& e, const std::vector<Sample>& samples,
                  const EvalOptions& o, const Tables& tables, const CamSource& cams) {
  const fs::path root(dir);
  fs::create_directories(root / "images");
  const auto& s = e.segmentation;
  std::vector<size_t> order(s.images.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return s.images[a].overlap.dice < s.images[b].overlap.dice; });
  std::string html = report_head("mrcnn eval report");
  html += "<h1>Segmentation report</h1>\n<p>" + std::string(o.results.empty() ? "Model" : "Detections") + " <code>" +
          html_escape(o.results.empty() ? o.weights : o.results) + "</code> on <code>" +
          html_escape(o.data) + "</code>, " + std::to_string(samples.size()) + " images. Prediction: union of masks scoring &ge; " +
          fmt(o.score_thresh, "%.2f") + " (red fill)" +
          (o.flip_test.value() ? ", each image also run mirrored left-right and the two views averaged (flip test)" : "") +
          ". Truth: green outline.</p>\n";
  const DistanceUnit unit(o.pixel_mm);
  const std::string hd95_header = "HD95 (" + unit.name + ")";
  const PatientIntervals& ci = tables.intervals;
  const auto three = [](double v) { return fmt(v); };
  html += "<h2>Summary</h2><table><tr><th class=l>metric</th><th>value</th><th>" +
          std::to_string(std::lround(ci.level * 100)) + "% interval</th></tr>";
  const std::string rows[][3] = {
      {"mean Dice", fmt(s.mean_dice), range(ci.dice, three)},
      {"mean IoU", fmt(s.mean_iou), range(ci.iou, three)},
      {"mean " + hd95_header, unit(s.mean_hd95), range(ci.hd95, unit)},
      {"lesion sensitivity", fmt(s.sensitivity) + " (" + std::to_string(s.detected) + "/" + std::to_string(s.lesions) + ")",
       range(ci.sensitivity, three)},
      {"false positives per image", fmt(s.false_positives_per_image, "%.2f"), ""},
      {"median |area difference| per patient",
       median_area_difference(s), ""},
      {"segm AP / AP50 / AP75", fmt(e.segm.stats[0]) + " / " + fmt(e.segm.stats[1]) + " / " + fmt(e.segm.stats[2]), ""},
      {"bbox AP / AP50 / AP75", fmt(e.bbox.stats[0]) + " / " + fmt(e.bbox.stats[1]) + " / " + fmt(e.bbox.stats[2]), ""}};
  for (const auto& row : rows) html += "<tr><td class=l>" + row[0] + "</td><td>" + row[1] + "</td><td>" + row[2] + "</td></tr>";
  html += "</table><p>Intervals: " + (ci.patients < 2 ? std::string("none, since they resample patients and there is one")
                                                      : intervals_caption(ci)) + ".</p>\n<h2>Operating points</h2><p>" + std::string(kOperatingPointsCaveat) +
          ".</p><table><tr><th>score &ge;</th><th>Dice</th><th>IoU</th><th>" + hd95_header + "</th><th>sensitivity</th>"
          "<th>false pos. per image</th></tr>";
  for (const auto& r : tables.operating)
    html += "<tr><td>" + fmt(r.score_thresh, "%.2f") + "</td><td>" + fmt(r.mean_dice) + "</td><td>" + fmt(r.mean_iou) + "</td><td>" +
            unit(r.mean_hd95) + "</td><td>" + fmt(r.sensitivity) + "</td><td>" + fmt(r.false_positives_per_image, "%.2f") +
            "</td></tr>";
  if (!tables.categories.empty()) {
    html += "</table>\n<h2>Per category</h2><p>" + std::string(kPerCategoryNote) +
            ".</p><table><tr><th class=l>category</th><th>lesions</th><th>Dice</th><th>Dice " +
            std::to_string(std::lround(ci.level * 100)) + "% interval</th><th>IoU</th><th>" + hd95_header +
            "</th><th>sensitivity</th><th>false pos. per image</th></tr>";
    for (size_t k = 0; k < tables.categories.size(); ++k) {
      const auto& [category, c] = tables.categories[k];
      html += "<tr><td class=l>" + html_escape(category.name) + "</td><td>" + std::to_string(c.lesions) + "</td><td>" +
              fmt(c.mean_dice) + "</td><td>" + range(tables.category_intervals[k].dice, three) + "</td><td>" +
              fmt(c.mean_iou) + "</td><td>" + unit(c.mean_hd95) + "</td><td>" + fmt(c.sensitivity) + "</td><td>" +
              fmt(c.false_positives_per_image, "%.2f") + "</td></tr>";
    }
  }
  const std::string area_unit = unit.name == "mm" ? "mm&sup2;" : "px";
  html += "</table>\n<h2>Per patient</h2><table><tr><th class=l>patient</th><th>slices</th><th>Dice</th><th>IoU</th><th>" +
          hd95_header + "</th><th>labelled area (" + area_unit + ")</th><th>predicted area (" + area_unit +
          ")</th><th>difference</th></tr>";
  for (const auto& p : s.patients)
    html += "<tr><td class=l>" + html_escape(p.patient) + "</td><td>" + std::to_string(p.images) + "</td><td>" + fmt(p.dice) +
            "</td><td>" + fmt(p.iou) + "</td><td>" + unit(p.hd95) + "</td><td>" + unit.area(p.truth_pixels) + "</td><td>" +
            unit.area(p.predicted_pixels) + "</td><td>" + percent(p.area_difference()) + "</td></tr>";
  draw_charts((root / "area_agreement.png").string(), {area_agreement_chart(s, unit)});
  html += "</table>\n<p><img src=\"area_agreement.png\" width=480><br>Each dot is a slice: its labelled area across, "
          "the predicted one up. On the line the two agree; above it the model marks more than the label, below it less.</p>\n"
          "<h2>Images, worst Dice first</h2><table><tr><th class=l>image</th><th>Dice</th><th>IoU</th><th>" +
          hd95_header + "</th>"
          "<th>lesions found</th><th>false pos.</th><th class=l>overlay</th>" +
          (cams.model ? str_cat("<th class=l>", kCamColumn, "</th>") : std::string()) + "</tr>\n";
  for (size_t i : order) {
    const ImageScore& score = s.images[i];
    const Sample& sample = samples[i];
    const int64_t h = sample.info.height, w = sample.info.width;
    std::vector<uint8_t> predicted(static_cast<size_t>(h * w), 0);
    const ImagePrediction& p = e.predictions[i];
    for (size_t k = 0; k < p.detections.size(); ++k)
      if (p.detections[k].score >= o.score_thresh)
        for (size_t j = 0; j < predicted.size(); ++j) predicted[j] |= p.masks[k][j];
    // The image id keeps two slices named alike (p1/slice.jpg, p2/slice.jpg) from sharing an overlay.
    const std::string stem = "images/" + std::to_string(sample.info.id) + "_" + fs::path(sample.info.file_name).stem().string();
    const std::string png = stem + ".png";
    write_png((root / png).string(), report_overlay(sample, predicted), h, w);
    html += "<tr><td class=l>" + html_escape(score.file_name) + "</td><td" + (score.overlap.dice < 0.5 ? " class=bad" : "") + ">" +
            fmt(score.overlap.dice) + "</td><td>" + fmt(score.overlap.iou) + "</td><td>" + unit(score.overlap.hd95) +
            "</td><td>" + std::to_string(score.detected) + "/" + std::to_string(score.lesions) + "</td><td>" +
            std::to_string(score.false_positives) + "</td><td class=l><img src=\"" + html_escape(png) + "\" width=" +
            std::to_string(w) + "></td>";
    if (cams.model) {
      const auto heat = best_detection_cam(*cams.model, sample.image, p.detections, o.score_thresh, cams.category_ids);
      const std::string cam_png = stem + "_cam.png";
      if (heat) write_png((root / cam_png).string(), *heat, h, w);
      html += "<td class=l>" + (heat ? "<img src=\"" + html_escape(cam_png) + "\" width=" + std::to_string(w) + ">" : std::string("-")) + "</td>";
    }
    html += "</tr>\n";
  }
  html += "</table>\n" + glossary_html(o, unit, cams.model != nullptr) + "</body></html>\n";
  write_file_atomically((root / "index.html").string(), html);
}

// The model's labels must be the data's categories (a differing id is only warned about).
void check_categories(const EvalOptions& o, const CocoDataset& truth, const MaskRCNN& model, const nn::Checkpoint& checkpoint) {
  const auto categories = checkpoint_categories(checkpoint, model.config().num_classes);
  check(categories.size() == truth.categories.size(), o.data, ": ", truth.categories.size(), " categories but the model has ",
        categories.size());
  for (size_t k = 0; k < categories.size(); ++k)
    if (categories[k].first != truth.categories[k].id)
      std::fprintf(stderr, "warning: label %zu is category %lld in the checkpoint but %lld in %s\n", k + 1,
                   static_cast<long long>(categories[k].first), static_cast<long long>(truth.categories[k].id), o.data.c_str());
}

// The model's detections on the labelled images.
DatasetEvaluation run_model(const EvalOptions& o, const CocoDataset& truth, const std::vector<Sample>& samples,
                            const std::vector<std::string>& patients, MaskRCNN& model) {
  Progress progress("eval", static_cast<int64_t>(samples.size()), 10);
  auto e = evaluate_dataset(model, truth, samples, patients, o.score_thresh, o.lesion_iou,
                            [&](size_t done, size_t) { progress.update(static_cast<int64_t>(done)); });
  progress.finish();
  return e;
}

// Detections another tool (or `mrcnn predict`) wrote, scored by the same rules.
DatasetEvaluation read_detections(const EvalOptions& o, const CocoDataset& truth, const std::vector<std::string>& patients) {
  std::ifstream in(o.results);
  check(static_cast<bool>(in), o.results, ": cannot open");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto detections = parse_results(text, o.results, truth);
  for (size_t k = 0; k < detections.size(); ++k)
    check(detections[k].segmentation.height > 0, o.results, ": [", k, "]: no segmentation: Dice, IoU and HD95 need each ",
          "detection's mask");
  std::fprintf(stderr, "%s: %zu detections\n", o.results.c_str(), detections.size());
  return evaluate_detections(truth, detections, patients, o.score_thresh, o.lesion_iou);
}

}  // namespace

int eval(const EvalOptions& options) {
  EvalOptions o = options;  // flip_test resolved below, for the table, JSON and report
  const bool from_model = o.results.empty();
  check(from_model != o.weights.empty(), from_model ? "eval: give --weights (a model to run) or --results (detections to score)"
                                                    : "eval: --weights and --results exclude each other");
  check(from_model || (o.config.empty() && !o.flip_test && o.device == "cpu"),
        "eval: --config, --device and --flip-test/--no-flip-test run a model; --results scores detections already made");
  const Device device = model_device(o.device);
  check(o.lesion_iou > 0 && o.lesion_iou <= 1, "eval: --lesion-iou must be in (0, 1]");
  check(!o.cams || (from_model && !o.report_dir.empty()), "eval: --cams draws maps in the report of a model's run: give --report and --weights");
  if (!o.json_out.empty()) check_output_file(o.json_out);
  if (!o.detections_out.empty()) check_output_file(o.detections_out);
  if (!o.report_dir.empty()) check_output_folder(o.report_dir);
  nn::Checkpoint checkpoint;
  std::unique_ptr<MaskRCNN> model;
  if (from_model) {
    checkpoint = nn::load_checkpoint(o.weights, nn::CheckpointParts::ModelOnly);
    model = load_model(checkpoint, o.weights, o.config);
    model->to(device);
    if (o.flip_test) model->set_flip_test(*o.flip_test);
  }
  o.flip_test = from_model && model->flip_test();
  const CocoDataset truth = load_coco(o.data);
  for (const auto& w : truth.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  if (from_model) check_categories(o, truth, *model, checkpoint);
  std::vector<std::string> names;
  for (const auto& image : truth.images) names.push_back(image.file_name);
  const auto patients = file_groups(names, o.group_regex, o.data);
  // Without a model the images serve the report's overlays (and are checked against the data's sizes).
  const auto samples = load_samples(truth, o.images, from_model ? model->config().in_channels : 3);
  const auto e = from_model ? run_model(o, truth, samples, patients, *model) : read_detections(o, truth, patients);
  Tables tables;
  tables.operating = operating_points(truth, e.predictions, patients, table_thresholds(), o.lesion_iou);
  if (truth.categories.size() > 1)
    tables.categories = summarize_by_category(truth, e.predictions, patients, o.score_thresh, o.lesion_iou);
  tables.intervals = patient_bootstrap(e.segmentation);
  for (const CategorySummary& c : tables.categories) tables.category_intervals.push_back(patient_bootstrap(c.summary));
  print_table(e, o, samples.size(), tables);
  if (!o.json_out.empty()) write_file_atomically(o.json_out, results_json(e, o, tables).dump(1) + "\n");
  if (!o.detections_out.empty()) write_file_atomically(o.detections_out, detections_json(e, truth).dump() + "\n");
  if (!o.report_dir.empty()) {
    CamSource cams;
    if (o.cams) {
      cams.model = model.get();
      for (const auto& [id, name] : checkpoint_categories(checkpoint, model->config().num_classes)) cams.category_ids.push_back(id);
    }
    write_report(o.report_dir, e, samples, o, tables, cams);
    std::fprintf(stderr, "report: %s\n", (fs::path(o.report_dir) / "index.html").string().c_str());
  }
  return 0;
}

std::string range(const Interval& i, const std::function<std::string(double)>& format) {
  return std::isnan(i.low) ? "n/a" : format(i.low) + "-" + format(i.high);
}

std::string intervals_caption(const PatientIntervals& i) {
  return str_cat(static_cast<int>(std::lround(i.level * 100)), "% intervals, bootstrap over the ", i.patients, " patients (",
                 i.resamples, " resamples): how far the figure could move with other patients like these");
}

json interval_json(const Interval& i, double scale) {
  return std::isnan(i.low) ? json(nullptr) : json({i.low * scale, i.high * scale});
}

json intervals_json(const PatientIntervals& i, double pixel_mm) {
  json j = {{"level", i.level},          {"resamples", i.resamples}, {"patients", i.patients},
            {"dice", interval_json(i.dice)}, {"iou", interval_json(i.iou)}, {"hd95", interval_json(i.hd95)},
            {"sensitivity", interval_json(i.sensitivity)}};
  if (pixel_mm > 0) j["hd95_mm"] = interval_json(i.hd95, pixel_mm);
  return j;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '<') out += "&lt;";
    else if (ch == '>') out += "&gt;";
    else if (ch == '&') out += "&amp;";
    else if (ch == '"') out += "&quot;";
    else out += ch;
  }
  return out;
}

std::string report_head(const std::string& title) {
  return "<!doctype html><html><head><meta charset=\"utf-8\"><title>" + html_escape(title) + "</title><style>"
         "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:4px 10px;"
         "border-bottom:1px solid #ddd;text-align:right}td.l,th.l{text-align:left}img{image-rendering:pixelated}"
         ".bad{color:#b00}</style></head><body>\n";
}

}  // namespace mrcnn::apps
