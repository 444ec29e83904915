// `bench_allocator_replay TRACE`: the peaks a traced model run (mrcnn bench --allocation-trace) would
// have under the CUDA allocator's rules, old and new, phase by phase; see allocator_replay.h.
#include "bench/allocator_replay.h"

#include <cstdio>
#include <fstream>

using namespace mrcnn;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s TRACE (from mrcnn bench --allocation-trace TRACE)\n", argv[0]);
    return 2;
  }
  std::ifstream in(argv[1]);
  if (!in) {
    std::fprintf(stderr, "%s: cannot open\n", argv[1]);
    return 1;
  }
  try {
    const double mb = 1 << 20;
    std::printf("%-13s %-31s %10s %10s %10s %8s\n", "phase", "allocator rules", "in use MB", "asked MB", "reserved", "driver");
    std::printf("%-13s %-31s %10s %10s %10s %8s\n", "", "", "(peak)", "(peak)", "MB (peak)", "allocs");
    for (const bench::ReplayedPhase& p : bench::replay_allocation_trace(in, argv[1]))
      for (const auto& [rules, f] : {std::pair{"size classes (2 MiB over 1 MiB)", p.size_classes}, {"best fit, split and merge", p.best_fit}})
        std::printf("%-13s %-31s %10.1f %10.1f %10.1f %8lld\n", p.name.c_str(), rules, f.peak_in_use / mb, f.peak_requested / mb,
                    f.peak_reserved / mb, static_cast<long long>(f.driver_allocs));
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
