// The CPU's float32 multiply-add throughput, measured rather than derived from a clock and an
// assumed count of FMA units: `mrcnn bench` states a step's speed as a fraction of it.
#pragma once

namespace mrcnn::cpu {

struct FmaPeak {
  double gflops = 0;      // all threads together, 2 flops per FMA lane; 0 without AVX2/FMA
  int threads = 0;        // the threads that ran: as asked, unless OpenMP gave fewer
  int vector_floats = 0;  // 16 where AVX-512 measured clearly faster than AVX2's 8
};

// `threads` threads each run independent chains of vector FMAs held in registers (more chains than
// the FMA units' latency times their count, so the units never wait), for about `seconds` per
// vector width, best of three runs; AVX-512 is tried where use_avx512() allows it. On a shared
// machine other work lowers the figure: the best of three is the least disturbed.
FmaPeak measure_fma_peak(int threads, double seconds = 0.05);

}  // namespace mrcnn::cpu
