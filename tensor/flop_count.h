// A running count of the nominal floating-point operations of the products the model's time goes
// to: convolutions (forward, input gradient, weight gradient) and matrix products, 2 per
// multiply-add by the op's shape, whichever algorithm ran (Winograd's saved multiplies still count,
// as in the usual "model FLOPs"). `mrcnn bench` divides it by the step's time and the CPU's
// measured FMA peak. Elementwise ops, norms and RoIAlign are not counted: their cost is memory.
#pragma once
#include <atomic>
#include <cstdint>

namespace mrcnn {

namespace detail {
inline std::atomic<int64_t> flops_counted{0};
}

// One relaxed add per op call: free next to the product it counts.
inline void count_flops(int64_t flops) { detail::flops_counted.fetch_add(flops, std::memory_order_relaxed); }
// Since the process started; callers take differences.
inline int64_t flops_counted() { return detail::flops_counted.load(std::memory_order_relaxed); }

}  // namespace mrcnn
