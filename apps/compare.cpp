// `mrcnn compare A.json B.json`: two `mrcnn eval --json` files of the same images (two models, two
// recipes, two seeds) side by side, with a paired bootstrap over patients of each difference: is
// B's Dice of 0.812 against A's 0.801 something these patients show, or chance?
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "maskrcnn/bootstrap.h"
#include "maskrcnn/json_fields.h"

namespace mrcnn::apps {

using namespace detection;
using nlohmann::json;

namespace {

struct Evaluation {
  SegmentationSummary summary;
  double score_thresh = 0, lesion_iou = 0;
};

// The per-image figures of an eval JSON; errors name the file and the entry.
Evaluation read_evaluation(const std::string& path) {
  const json j = read_json_file(path, "evaluation");
  Evaluation e;
  try {
    e.score_thresh = j.at("score_thresh").get<double>();
    e.lesion_iou = j.at("lesion_iou").get<double>();
    const json& images = j.at("images");
    check(images.is_array() && !images.empty(), path, ": \"images\" is empty or not a list");
    for (const json& image : images) {
      const std::string where = str_cat(path, ": images[", e.summary.images.size(), "]");
      ImageScore s;
      s.file_name = image.at("file_name").get<std::string>();
      s.patient = image.at("patient").get<std::string>();
      s.overlap.dice = image.at("dice").get<double>();
      s.overlap.iou = image.at("iou").get<double>();
      s.overlap.hd95 = image.at("hd95").is_null() ? std::nan("") : image.at("hd95").get<double>();
      s.lesions = image.at("lesions").get<int64_t>();
      s.detected = image.at("detected").get<int64_t>();
      check(s.overlap.dice >= 0 && s.overlap.dice <= 1 && s.overlap.iou >= 0 && s.overlap.iou <= 1, where,
            ": dice and iou must be in [0, 1]");
      check(std::isnan(s.overlap.hd95) || s.overlap.hd95 >= 0, where, ": hd95 must be >= 0 or null");
      check(s.lesions >= 0 && s.detected >= 0 && s.detected <= s.lesions, where, ": needs 0 <= detected <= lesions");
      e.summary.images.push_back(s);
    }
  } catch (const json::exception& error) {
    throw Error(str_cat(path, ": not an evaluation written by mrcnn eval --json (", error.what(), ")"));
  }
  return e;
}

// What the interval of b - a says, in words.
std::string verdict(const Interval& i) {
  if (std::isnan(i.low)) return "n/a";
  if (i.low > 0) return "b higher";
  if (i.high < 0) return "b lower";
  return "no difference shown";
}

json difference_json(const PairedDifference& d) {
  const auto value = [](double v) { return std::isnan(v) ? json(nullptr) : json(v); };
  return {{"a", value(d.a)},
          {"b", value(d.b)},
          {"difference", value(d.b - d.a)},
          {"interval", std::isnan(d.difference.low) ? json(nullptr) : json({d.difference.low, d.difference.high})}};
}

}  // namespace

int compare(const CompareOptions& o) {
  if (!o.json_out.empty()) check_output_file(o.json_out);
  const Evaluation a = read_evaluation(o.a), b = read_evaluation(o.b);
  // Matching images and patients are checked by the bootstrap; differing rules are allowed but said.
  if (a.score_thresh != b.score_thresh || a.lesion_iou != b.lesion_iou)
    std::fprintf(stderr, "warning: the two evaluations used different rules (score >= %g / %g, lesion IoU >= %g / %g): "
                 "the difference mixes the models with the rules\n", a.score_thresh, b.score_thresh, a.lesion_iou, b.lesion_iou);
  const PatientComparison c = paired_patient_bootstrap(a.summary, b.summary, o.level, o.resamples, o.seed);
  std::printf("a: %s\nb: %s\n%zu images, %lld patients; %g%% intervals of b - a, paired bootstrap over patients "
              "(%lld resamples; each draws the same patients for a and b)\n",
              o.a.c_str(), o.b.c_str(), a.summary.images.size(), static_cast<long long>(c.patients), c.level * 100,
              static_cast<long long>(c.resamples));
  if (c.patients < 2) std::printf("(no intervals: the bootstrap resamples patients, and there is one)\n");
  std::printf("  %-12s %8s %8s %8s %18s  %s\n", "figure", "a", "b", "b - a", "interval", "");
  const std::pair<const char*, const PairedDifference*> rows[] = {
      {"Dice", &c.dice}, {"IoU", &c.iou}, {"HD95 px", &c.hd95}, {"sensitivity", &c.sensitivity}};
  for (const auto& [name, d] : rows) {
    const bool pixels = d == &c.hd95;
    const char *plain = pixels ? "%.2f" : "%.3f", *signed_ = pixels ? "%+.2f" : "%+.3f";
    const std::string range =
        std::isnan(d->difference.low) ? "n/a" : fmt(d->difference.low, signed_) + ".." + fmt(d->difference.high, signed_);
    std::printf("  %-12s %8s %8s %8s %18s  %s\n", name, fmt(d->a, plain).c_str(), fmt(d->b, plain).c_str(),
                fmt(d->b - d->a, signed_).c_str(), range.c_str(), verdict(d->difference).c_str());
  }
  if (!o.json_out.empty()) {
    const json out = {{"a", o.a},
                      {"b", o.b},
                      {"level", c.level},
                      {"resamples", c.resamples},
                      {"patients", c.patients},
                      {"images", a.summary.images.size()},
                      {"dice", difference_json(c.dice)},
                      {"iou", difference_json(c.iou)},
                      {"hd95", difference_json(c.hd95)},
                      {"sensitivity", difference_json(c.sensitivity)}};
    write_file_atomically(o.json_out, out.dump(1) + "\n");
  }
  return 0;
}

}  // namespace mrcnn::apps
