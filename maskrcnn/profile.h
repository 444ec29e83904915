// Per-stage wall-clock times of the detector, for `mrcnn bench --profile`: each stage waits for the
// GPU at its end (when one is in use), so a time is the stage's own, not the time to queue it. Off
// by default: then a Stage costs one branch.
#pragma once
#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace mrcnn::detection {

void set_profiling(bool on);
bool profiling();
// Accumulated milliseconds per stage name, in first-seen order; reset_stage_times() clears them.
std::vector<std::pair<std::string, double>> stage_times();
void reset_stage_times();

class Stage {
 public:
  explicit Stage(const char* name);
  ~Stage();
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

 private:
  const char* name_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace mrcnn::detection
