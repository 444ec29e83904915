// Small raster charts for the run folder, drawn without any plotting library: line plots on a
// white canvas with axes, tick labels and a legend in a built-in 3x5 pixel font, saved as PNG.
#pragma once
#include <cmath>
#include <string>
#include <vector>

namespace mrcnn::apps {

struct Series {
  std::string name;
  std::vector<double> x, y;  // NaN y values are gaps
  // Optional: an interval around each y, drawn as a thin vertical bar (NaN: none at that x).
  std::vector<double> low, high;
  bool points_only = false;  // a scatter: each point a dot, no line between them
};

struct Chart {
  std::string title;
  std::vector<Series> series;
  bool log_y = false;
  double y_min = NAN, y_max = NAN;  // fixed y range (e.g. 0..1 for metrics); NaN: from the data
  std::string x_label = "epoch";
  double x_min = NAN, x_max = NAN;  // fixed x range; NaN: from the data
};

// Charts side by side in one PNG (each 480x360 pixels).
void draw_charts(const std::string& path, const std::vector<Chart>& charts);

// RUN/curves.png from RUN/epochs.jsonl (mean loss terms per epoch) and RUN/metrics.jsonl
// (validation AP and Dice per validated epoch, Dice with its patient-bootstrap interval).
void draw_training_curves(const std::string& run_dir);

}  // namespace mrcnn::apps
