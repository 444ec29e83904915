// Replays a tensor allocation trace (`mrcnn bench --allocation-trace`, recorded on the CPU) through
// the CUDA caching allocator's rules, to see what a model's step would hold and reserve on a GPU
// without one: cuda::CachingAllocator itself (best fit, split and merge; its "driver" here hands out
// addresses only), beside the rules it replaced (512 B classes below 1 MiB, 2 MiB classes above, a
// freed block reused only for its own class). An estimate: the CPU and CUDA ops allocate mostly the
// same tensors, but not all (cuDNN workspaces, CPU-only scratch, host-side RPN work).
#pragma once
#include <algorithm>
#include <cstdint>
#include <istream>
#include <map>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda/allocator.h"
#include "tensor/error.h"

namespace mrcnn::bench {

struct AllocatorFigures {
  size_t peak_in_use = 0, peak_requested = 0, peak_reserved = 0;
  int64_t driver_allocs = 0;  // since the trace began
};

// One phase of the trace ("construction", "train", "inference"), peaks since its start.
struct ReplayedPhase {
  std::string name;
  AllocatorFigures size_classes, best_fit;
};

// The allocator before best fit: exact size classes, counted only (no memory behind them).
class SizeClassRules {
 public:
  void make(uintptr_t id, size_t bytes) {
    const size_t size = bytes < (size_t(1) << 20) ? round_up(bytes, 512) : round_up(bytes, size_t(2) << 20);
    if (free_[size] > 0) {
      --free_[size];
    } else {
      reserved_ += size;
      ++figures_.driver_allocs;
    }
    live_[id] = {size, bytes};
    in_use_ += size;
    requested_ += bytes;
    figures_.peak_in_use = std::max(figures_.peak_in_use, in_use_);
    figures_.peak_requested = std::max(figures_.peak_requested, requested_);
    figures_.peak_reserved = std::max(figures_.peak_reserved, reserved_);
  }
  void release(uintptr_t id) {
    const auto [size, bytes] = live_.at(id);
    live_.erase(id);
    ++free_[size];
    in_use_ -= size;
    requested_ -= bytes;
  }
  AllocatorFigures figures() const { return figures_; }
  void reset_peak() { figures_ = {in_use_, requested_, reserved_, figures_.driver_allocs}; }

 private:
  static size_t round_up(size_t n, size_t q) { return (std::max<size_t>(n, 1) + q - 1) / q * q; }
  std::map<size_t, int64_t> free_;
  std::unordered_map<uintptr_t, std::pair<size_t, size_t>> live_;
  size_t in_use_ = 0, requested_ = 0, reserved_ = 0;
  AllocatorFigures figures_;
};

// Lines: "+ id bytes" (made), "- id bytes" (freed), "phase NAME", "# comment". Releases of ids the
// trace never made (tensors older than it) are skipped. `source` names the trace in errors.
inline std::vector<ReplayedPhase> replay_allocation_trace(std::istream& in, const std::string& source) {
  uintptr_t next_address = uintptr_t(1) << 40;  // addresses only: the allocator never touches its memory
  cuda::CachingAllocator best_fit(
      [&](size_t n) {
        void* p = reinterpret_cast<void*>(next_address);
        next_address += n;
        return p;
      },
      [](void*) {});
  SizeClassRules size_classes;
  std::unordered_map<uintptr_t, void*> placed;
  std::vector<ReplayedPhase> phases;
  const auto end_phase = [&] {
    if (phases.empty()) return;
    phases.back().size_classes = size_classes.figures();
    const cuda::MemoryStats s = best_fit.stats();
    phases.back().best_fit = {s.peak_in_use, s.peak_requested, s.peak_reserved, s.driver_allocs};
  };
  std::string line;
  int64_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string kind, name;
    uintptr_t id = 0;
    size_t bytes = 0;
    fields >> kind;
    if (kind == "phase" && (fields >> name)) {
      end_phase();
      phases.push_back({name, {}, {}});
      size_classes.reset_peak();
      best_fit.reset_peak();
    } else if ((kind == "+" || kind == "-") && (fields >> id >> bytes)) {
      if (bytes == 0) continue;  // empty tensors hold no memory
      if (kind == "+") {
        check(!placed.count(id), source, ":", line_number, ": id ", id, " made twice without a release");
        size_classes.make(id, bytes);
        placed[id] = best_fit.allocate(bytes);
      } else if (placed.count(id)) {
        size_classes.release(id);
        best_fit.release(placed.at(id));
        placed.erase(id);
      }
    } else {
      throw Error(str_cat(source, ":", line_number, ": expected '+ id bytes', '- id bytes' or 'phase NAME', got '", line, "'"));
    }
  }
  end_phase();
  return phases;
}

}  // namespace mrcnn::bench
