// Overlap metrics; surface distances by brute force over surface pixels (a few hundred per slice).
#include "maskrcnn/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "tensor/error.h"

namespace mrcnn::detection {

namespace {

std::vector<std::pair<int64_t, int64_t>> surface(const std::vector<uint8_t>& m, int64_t h, int64_t w) {
  std::vector<std::pair<int64_t, int64_t>> points;
  auto inside = [&](int64_t y, int64_t x) { return y >= 0 && y < h && x >= 0 && x < w && m[y * w + x]; };
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      if (inside(y, x) && (!inside(y - 1, x) || !inside(y + 1, x) || !inside(y, x - 1) || !inside(y, x + 1)))
        points.emplace_back(y, x);
  return points;
}

void directed_distances(const std::vector<std::pair<int64_t, int64_t>>& from,
                        const std::vector<std::pair<int64_t, int64_t>>& to, std::vector<double>& out) {
  for (const auto& [y, x] : from) {
    int64_t best = std::numeric_limits<int64_t>::max();
    for (const auto& [v, u] : to) best = std::min(best, (y - v) * (y - v) + (x - u) * (x - u));
    out.push_back(std::sqrt(static_cast<double>(best)));
  }
}

}  // namespace

OverlapMetrics overlap_metrics(const std::vector<uint8_t>& truth, const std::vector<uint8_t>& predicted, int64_t height,
                               int64_t width) {
  const size_t n = static_cast<size_t>(height * width);
  check(truth.size() == n && predicted.size() == n, "overlap_metrics: masks of ", truth.size(), " and ",
        predicted.size(), " pixels for a ", height, "x", width, " image");
  OverlapMetrics m;
  int64_t both = 0;
  for (size_t i = 0; i < n; ++i) {
    const bool t = truth[i] != 0, p = predicted[i] != 0;
    m.truth_pixels += t, m.predicted_pixels += p, both += t && p;
  }
  if (m.truth_pixels == 0 && m.predicted_pixels == 0) {
    m.dice = m.iou = 1.0;
    m.hd95 = 0.0;
    return m;
  }
  m.dice = 2.0 * static_cast<double>(both) / static_cast<double>(m.truth_pixels + m.predicted_pixels);
  m.iou = static_cast<double>(both) / static_cast<double>(m.truth_pixels + m.predicted_pixels - both);
  if (m.truth_pixels == 0 || m.predicted_pixels == 0) {
    m.hd95 = std::numeric_limits<double>::quiet_NaN();
    return m;
  }
  const auto a = surface(truth, height, width), b = surface(predicted, height, width);
  std::vector<double> distances;
  directed_distances(a, b, distances);
  directed_distances(b, a, distances);
  std::sort(distances.begin(), distances.end());
  m.hd95 = percentile_of_sorted(distances, 0.95);
  return m;
}

double percentile_of_sorted(const std::vector<double>& sorted, double fraction) {
  check(!sorted.empty() && fraction >= 0 && fraction <= 1, "percentile_of_sorted: ", sorted.size(),
        " values, fraction ", fraction, " (needs values and a fraction in [0, 1])");
  const double position = fraction * static_cast<double>(sorted.size() - 1);
  const auto below = static_cast<size_t>(std::floor(position));
  const double weight = position - static_cast<double>(below);
  // At an order statistic the value itself: an infinite neighbour must not turn it into NaN (inf * 0).
  if (weight == 0) return sorted[below];
  return sorted[below] + (sorted[below + 1] - sorted[below]) * weight;
}

}  // namespace mrcnn::detection
