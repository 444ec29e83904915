// Stage timers and memory; see profile.h.
#include "maskrcnn/profile.h"

#include <algorithm>

#include "cuda/allocator.h"
#include "tensor/flop_count.h"
#include "tensor/storage.h"
#include "tensor/tensor.h"

namespace mrcnn::detection {

namespace {
bool enabled = false;
int64_t session = 0;  // counts set_profiling calls: a stage records only into the session it began in
Device memory_device = kCPU;
std::vector<StageRecord> records;
// The allocators keep one high-water mark; nested stages share it. Each open stage keeps the most
// it has seen, and the mark restarts at every stage boundary after being folded into all of them.
std::vector<size_t> open_peaks;

// Bytes held by tensors on the profiled device, now and at the high-water mark.
HostMemoryStats tensor_memory() {
  if (!memory_device.is_cuda()) return host_memory_stats();
  const cuda::MemoryStats s = cuda::memory_stats();
  return {s.in_use, s.peak_in_use};
}

size_t held_now() { return tensor_memory().in_use; }

void fold_peak_into_open_stages() {
  const size_t peak = tensor_memory().peak_in_use;
  for (size_t& open : open_peaks) open = std::max(open, peak);
  memory_device.is_cuda() ? cuda::reset_peak_memory() : reset_host_peak_memory();
}

constexpr double kMB = 1 << 20;
}  // namespace

void set_profiling(bool on, Device device) {
  enabled = on;
  memory_device = device;
  open_peaks.clear();
  ++session;
}
bool profiling() { return enabled; }
std::vector<StageRecord> stage_records() { return records; }
void reset_stage_records() { records.clear(); }

Stage::Stage(const char* name) : name_(name) {
  if (!enabled) return;
  device_synchronize();  // work queued before the stage is not the stage's
  fold_peak_into_open_stages();
  held_at_start_ = held_now();
  open_peaks.push_back(held_at_start_);
  session_ = session;
  flops_at_start_ = flops_counted();
  start_ = std::chrono::steady_clock::now();
}

Stage::~Stage() {
  // A stage that began before profiling was switched (on or off) records nothing.
  if (!enabled || session_ != session || open_peaks.empty()) return;
  device_synchronize();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_).count();
  fold_peak_into_open_stages();
  const size_t peak = open_peaks.back();
  open_peaks.pop_back();
  auto it = std::find_if(records.begin(), records.end(), [&](const StageRecord& r) { return r.name == name_; });
  if (it == records.end()) it = records.insert(records.end(), StageRecord{name_});
  ++it->calls;
  it->ms += ms;
  it->flops += flops_counted() - flops_at_start_;
  it->peak_mb = std::max(it->peak_mb, static_cast<double>(peak) / kMB);
  it->held_change_mb += (static_cast<double>(held_now()) - static_cast<double>(held_at_start_)) / kMB;
}

}  // namespace mrcnn::detection
