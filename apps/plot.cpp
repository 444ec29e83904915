// Line charts rasterised by hand: enough for training curves, no dependency beyond the PNG writer.
#include "apps/plot.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "maskrcnn/image_io.h"
#include "tensor/error.h"

namespace mrcnn::apps {

namespace {

// 3x5 glyphs, one 15-bit row-major pattern per character (top row in the high bits).
uint16_t glyph(char c) {
  static const char* const rows[][2] = {
      {"0", "111101101101111"}, {"1", "010110010010111"}, {"2", "111001111100111"}, {"3", "111001111001111"},
      {"4", "101101111001001"}, {"5", "111100111001111"}, {"6", "111100111101111"}, {"7", "111001001001001"},
      {"8", "111101111101111"}, {"9", "111101111001111"}, {"A", "010101111101101"}, {"B", "110101110101110"},
      {"C", "011100100100011"}, {"D", "110101101101110"}, {"E", "111100110100111"}, {"F", "111100110100100"},
      {"G", "011100101101011"}, {"H", "101101111101101"}, {"I", "111010010010111"}, {"J", "001001001101010"},
      {"K", "101101110101101"}, {"L", "100100100100111"}, {"M", "101111111101101"}, {"N", "110101101101101"},
      {"O", "010101101101010"}, {"P", "110101110100100"}, {"Q", "010101101110011"}, {"R", "110101110101101"},
      {"S", "011100010001110"}, {"T", "111010010010010"}, {"U", "101101101101111"}, {"V", "101101101101010"},
      {"W", "101101111111101"}, {"X", "101101010101101"}, {"Y", "101101010010010"}, {"Z", "111001010100111"},
      {".", "000000000000010"}, {"-", "000000111000000"}, {":", "000010000010000"}, {"/", "001001010100100"},
      {"(", "010100100100010"}, {")", "010001001001010"}, {"_", "000000000000111"}, {"+", "000010111010000"},
      {"%", "101001010100101"}};
  const char upper = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const auto& r : rows)
    if (r[0][0] == upper) return static_cast<uint16_t>(std::stoi(r[1], nullptr, 2));
  return 0;
}

struct Canvas {
  int64_t w, h;
  std::vector<uint8_t> rgb;
  Canvas(int64_t width, int64_t height) : w(width), h(height), rgb(static_cast<size_t>(width * height * 3), 255) {}
  void dot(int64_t x, int64_t y, const uint8_t* c) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    std::memcpy(&rgb[static_cast<size_t>((y * w + x) * 3)], c, 3);
  }
  void line(double x0, double y0, double x1, double y1, const uint8_t* c, int thick = 1) {
    const int64_t steps = std::max<int64_t>(1, static_cast<int64_t>(std::max(std::abs(x1 - x0), std::abs(y1 - y0))));
    for (int64_t i = 0; i <= steps; ++i) {
      const double t = static_cast<double>(i) / static_cast<double>(steps);
      const int64_t x = std::lround(x0 + t * (x1 - x0)), y = std::lround(y0 + t * (y1 - y0));
      for (int dy = 0; dy < thick; ++dy)
        for (int dx = 0; dx < thick; ++dx) dot(x + dx, y + dy, c);
    }
  }
  // Text at 2x scale: each glyph 6x10 pixels plus 2 pixels of spacing.
  void text(int64_t x, int64_t y, const std::string& s, const uint8_t* c) {
    for (char ch : s) {
      const uint16_t g = glyph(ch);
      for (int r = 0; r < 5; ++r)
        for (int k = 0; k < 3; ++k)
          if (g >> (14 - (r * 3 + k)) & 1)
            for (int dy = 0; dy < 2; ++dy)
              for (int dx = 0; dx < 2; ++dx) dot(x + k * 2 + dx, y + r * 2 + dy, c);
      x += 8;
    }
  }
};

std::string tick_label(double v) {
  char text[32];
  if (v != 0 && (std::abs(v) < 0.01 || std::abs(v) >= 1e6)) {
    std::snprintf(text, sizeof text, "%.0e", v);
  } else if (std::abs(v) >= 100) {  // areas in pixels: 3366, not 3.37e+03
    std::snprintf(text, sizeof text, "%.0f", v);
  } else {
    std::snprintf(text, sizeof text, "%.3g", v);
  }
  return text;
}

const uint8_t kBlack[3] = {0, 0, 0}, kGrey[3] = {220, 220, 220};
const uint8_t kColours[][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189}, {140, 86, 75}};

void draw_chart(Canvas& canvas, int64_t left, const Chart& chart) {
  constexpr int64_t kW = 480, kH = 360, kMarginL = 56, kMarginR = 16, kTop = 56, kBottom = 40;
  double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
  const auto ty = [&](double v) { return chart.log_y ? std::log10(v) : v; };
  for (const auto& s : chart.series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i]) || (chart.log_y && s.y[i] <= 0)) continue;
      x_lo = std::min(x_lo, s.x[i]), x_hi = std::max(x_hi, s.x[i]);
      y_lo = std::min(y_lo, ty(s.y[i])), y_hi = std::max(y_hi, ty(s.y[i]));
    }
  if (std::isfinite(chart.y_min)) y_lo = ty(chart.y_min);
  if (std::isfinite(chart.y_max)) y_hi = ty(chart.y_max);
  if (std::isfinite(chart.x_min)) x_lo = chart.x_min;
  if (std::isfinite(chart.x_max)) x_hi = chart.x_max;
  canvas.text(left + kMarginL, 6, chart.title, kBlack);
  if (!std::isfinite(x_lo)) return;  // nothing to draw yet
  if (x_hi == x_lo) x_hi = x_lo + 1;
  if (y_hi == y_lo) y_hi = y_lo + 1;
  const double px0 = static_cast<double>(left + kMarginL), px1 = static_cast<double>(left + kW - kMarginR);
  const double py0 = static_cast<double>(kH - kBottom), py1 = static_cast<double>(kTop);
  const auto X = [&](double v) { return px0 + (v - x_lo) / (x_hi - x_lo) * (px1 - px0); };
  const auto Y = [&](double v) { return py0 + (ty(v) - y_lo) / (y_hi - y_lo) * (py1 - py0); };
  for (int t = 0; t <= 4; ++t) {  // horizontal grid and y labels
    const double f = t / 4.0, v = y_lo + f * (y_hi - y_lo);
    const double y = py0 + f * (py1 - py0);
    canvas.line(px0, y, px1, y, kGrey);
    canvas.text(left + 4, static_cast<int64_t>(y) - 5, tick_label(chart.log_y ? std::pow(10.0, v) : v), kBlack);
  }
  for (int t = 0; t <= 4; ++t) {
    const double v = x_lo + t / 4.0 * (x_hi - x_lo);
    // Centred under its tick, but never past the chart's right edge.
    const std::string label = tick_label(std::round(v));
    const auto width = 8 * static_cast<int64_t>(label.size());
    canvas.text(std::min(static_cast<int64_t>(X(v)) - width / 2, left + kW - width), static_cast<int64_t>(py0) + 6, label, kBlack);
  }
  canvas.text(static_cast<int64_t>((px0 + px1) / 2) - 4 * static_cast<int64_t>(chart.x_label.size()), kH - 14, chart.x_label,
              kBlack);
  canvas.line(px0, py0, px1, py0, kBlack);
  canvas.line(px0, py0, px0, py1, kBlack);
  for (size_t k = 0; k < chart.series.size(); ++k) {
    const Series& s = chart.series[k];
    const uint8_t* c = kColours[k % 6];
    bool have_previous = false;
    double prev_x = 0, prev_y = 0;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (i < s.low.size() && i < s.high.size() && std::isfinite(s.low[i]) && std::isfinite(s.high[i]) &&
          (!chart.log_y || s.low[i] > 0)) {
        const double x = X(s.x[i]), lo = Y(s.low[i]), hi = Y(s.high[i]);
        canvas.line(x, lo, x, hi, c);
        canvas.line(x - 3, lo, x + 3, lo, c), canvas.line(x - 3, hi, x + 3, hi, c);
      }
      if (!std::isfinite(s.y[i]) || (chart.log_y && s.y[i] <= 0)) {
        have_previous = false;
        continue;
      }
      const double x = X(s.x[i]), y = Y(s.y[i]);
      if (have_previous && !s.points_only) canvas.line(prev_x, prev_y, x, y, c, 2);
      if (s.points_only) {
        for (int dy = -2; dy <= 2; ++dy)
          for (int dx = -2; dx <= 2; ++dx) canvas.dot(std::lround(x) + dx, std::lround(y) + dy, c);
      } else {
        canvas.line(x - 1, y - 1, x + 1, y + 1, c, 2);
      }
      prev_x = x, prev_y = y, have_previous = true;
    }
  }
  // Legend in the top margin, flowing left to right (never over the data).
  int64_t lx = left + kMarginL, ly = 22;
  for (size_t k = 0; k < chart.series.size(); ++k) {
    const int64_t width = 24 + 8 * static_cast<int64_t>(chart.series[k].name.size()) + 12;
    if (lx + width > left + kW - kMarginR) lx = left + kMarginL, ly += 14;
    canvas.line(static_cast<double>(lx), static_cast<double>(ly + 4), static_cast<double>(lx + 16),
                static_cast<double>(ly + 4), kColours[k % 6], 2);
    canvas.text(lx + 22, ly, chart.series[k].name, kBlack);
    lx += width;
  }
}

// One JSON value per line; a missing file is an error only where the run must have written it
// (metrics.jsonl appears with the first validation).
std::vector<nlohmann::json> read_lines(const std::filesystem::path& path, bool required) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  check(in || !required, path.string(), ": cannot open (not a run folder of mrcnn train?)");
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number)
    if (!line.empty()) {
      try {
        lines.push_back(nlohmann::json::parse(line));
      } catch (const nlohmann::json::exception&) {
        throw Error(str_cat(path.string(), ": line ", number, " is not JSON"));
      }
    }
  return lines;
}

double number_at(const nlohmann::json& j, const std::vector<const char*>& keys) {
  const nlohmann::json* v = &j;
  for (const char* k : keys) {
    if (!v->is_object() || !v->contains(k)) return NAN;
    v = &(*v)[k];
  }
  return v->is_number() ? v->get<double>() : NAN;
}

}  // namespace

void draw_charts(const std::string& path, const std::vector<Chart>& charts) {
  Canvas canvas(480 * static_cast<int64_t>(charts.size()), 360);
  for (size_t i = 0; i < charts.size(); ++i) draw_chart(canvas, 480 * static_cast<int64_t>(i), charts[i]);
  detection::write_png(path, canvas.rgb, canvas.h, canvas.w);
}

void draw_training_curves(const std::string& run_dir) {
  const std::filesystem::path run(run_dir);
  Chart losses{"training loss (epoch mean)", {}, true};
  const auto epochs = read_lines(run / "epochs.jsonl", true);
  const std::pair<const char*, const char*> terms[] = {{"mean_loss", "total"}, {"mean_loss_classifier", "classifier"},
                                                       {"mean_loss_box_reg", "box reg"}, {"mean_loss_mask", "mask"},
                                                       {"mean_loss_objectness", "objectness"}, {"mean_loss_rpn_box_reg", "rpn box"}};
  for (const auto& [key, name] : terms) {
    Series s{name, {}, {}, {}, {}, false};
    for (const auto& e : epochs) s.x.push_back(number_at(e, {"epoch"})), s.y.push_back(number_at(e, {key}));
    losses.series.push_back(s);
  }
  Chart metrics{"validation", {}, false, 0.0, 1.0};
  const auto val = read_lines(run / "metrics.jsonl", false);
  const std::pair<std::vector<const char*>, const char*> keys[] = {
      {{"segm", "AP"}, "segm AP"}, {{"segm", "AP50"}, "segm AP50"}, {{"bbox", "AP"}, "bbox AP"}, {{"dice"}, "Dice"}};
  for (const auto& [path, name] : keys) {
    Series s{name, {}, {}, {}, {}, false};
    for (const auto& m : val) s.x.push_back(number_at(m, {"epoch"})), s.y.push_back(number_at(m, path));
    metrics.series.push_back(s);
  }
  // Dice's interval: bars as wide as the patients make it (metrics lines before it have none).
  Series& dice = metrics.series.back();
  for (const auto& m : val) {
    const nlohmann::json* interval = nullptr;
    if (m.contains("intervals") && m["intervals"].is_object() && m["intervals"].contains("dice")) interval = &m["intervals"]["dice"];
    const bool known = interval != nullptr && interval->is_array() && interval->size() == 2 && (*interval)[0].is_number() &&
                       (*interval)[1].is_number();
    dice.low.push_back(known ? (*interval)[0].get<double>() : NAN);
    dice.high.push_back(known ? (*interval)[1].get<double>() : NAN);
  }
  dice.name = "Dice (bars: 95% interval)";
  draw_charts((run / "curves.png").string(), {losses, metrics});
}

}  // namespace mrcnn::apps
