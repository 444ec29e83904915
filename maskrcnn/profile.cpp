// Stage timers; see profile.h.
#include "maskrcnn/profile.h"

#include "tensor/tensor.h"

namespace mrcnn::detection {

namespace {
bool enabled = false;
std::vector<std::pair<std::string, double>> times;

void add(const std::string& name, double ms) {
  for (auto& [stage, total] : times)
    if (stage == name) {
      total += ms;
      return;
    }
  times.emplace_back(name, ms);
}
}  // namespace

void set_profiling(bool on) { enabled = on; }
bool profiling() { return enabled; }
std::vector<std::pair<std::string, double>> stage_times() { return times; }
void reset_stage_times() { times.clear(); }

Stage::Stage(const char* name) : name_(name) {
  if (!enabled) return;
  device_synchronize();  // work queued before the stage is not the stage's
  start_ = std::chrono::steady_clock::now();
}

Stage::~Stage() {
  if (!enabled) return;
  device_synchronize();
  add(name_, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_).count());
}

}  // namespace mrcnn::detection
