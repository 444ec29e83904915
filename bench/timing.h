// The timer the benchmarks share: median wall time of repeated runs after one warm-up.
#pragma once
#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace mrcnn::bench {

struct Repeats {
  int min_runs = 5;            // at least this many timed runs,
  double min_seconds = 0.0;    // and more until their total reaches this,
  int max_runs = 30;           // but never more than this
};

// Median seconds of the timed runs of `run`; `prepare` runs untimed before each (and the warm-up).
inline double median_seconds(const std::function<void()>& run, const Repeats& repeats = {},
                             const std::function<void()>& prepare = [] {}) {
  std::vector<double> times;
  double total = 0;
  prepare(), run();
  while (static_cast<int>(times.size()) < repeats.min_runs ||
         (total < repeats.min_seconds && static_cast<int>(times.size()) < repeats.max_runs)) {
    prepare();
    const auto start = std::chrono::steady_clock::now();
    run();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    times.push_back(s), total += s;
  }
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return times[times.size() / 2];
}

}  // namespace mrcnn::bench
