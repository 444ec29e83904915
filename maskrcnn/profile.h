// Per-stage wall-clock times and tensor memory of the detector, for `mrcnn bench --profile`: each
// stage waits for the GPU at its end (when one is in use), so a time is the stage's own, not the
// time to queue it. Off by default: then a Stage costs one branch.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace mrcnn::detection {

// While on, stages also record the bytes held by tensors on `device` (the CPU's live tensors, or
// the CUDA allocator's blocks): where a peak happens and what each stage leaves behind.
void set_profiling(bool on, Device device = kCPU);
bool profiling();

struct StageRecord {
  std::string name;
  int calls = 0;
  double ms = 0;              // summed over calls
  int64_t flops = 0;          // convolutions' and matrix products' (tensor/flop_count.h), summed over calls
  double peak_mb = 0;         // most held at any moment inside the stage, over all calls
  double held_change_mb = 0;  // held at the end minus at the start, summed over calls
};
// Per stage name, in first-seen order; reset_stage_records() clears them.
std::vector<StageRecord> stage_records();
void reset_stage_records();

class Stage {
 public:
  explicit Stage(const char* name);
  ~Stage();
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

 private:
  const char* name_;
  std::chrono::steady_clock::time_point start_;
  size_t held_at_start_ = 0;
  int64_t flops_at_start_ = 0;
  int64_t session_ = -1;  // set_profiling's count when the stage began, if it was on
};

}  // namespace mrcnn::detection
