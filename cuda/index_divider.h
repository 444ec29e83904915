// Division of element indices by a divisor fixed for a whole kernel: a multiply-high, an add and a
// shift (Granlund and Montgomery's method, as PyTorch's IntDivider) instead of a 64-bit division,
// which a GPU runs as a long emulated sequence per element. Valid for indices below 2^31; kernels
// over more elements keep plain division. Header-only, so CPU tests check it on every build.
#pragma once
#include <cstdint>

#include "cuda/host_device.h"

namespace mrcnn::cuda {

constexpr int64_t kMaxDividedIndex = (int64_t{1} << 31) - 1;

struct IndexDivider {
  uint32_t divisor = 1, multiplier = 0, shift = 0;

  IndexDivider() = default;
  // 1 <= d <= kMaxDividedIndex. shift = ceil(log2 d); multiplier = floor(2^32 (2^shift - d) / d) + 1.
  explicit IndexDivider(int64_t d) : divisor(static_cast<uint32_t>(d)) {
    while ((uint64_t{1} << shift) < static_cast<uint64_t>(d)) ++shift;
    multiplier = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << shift) - static_cast<uint64_t>(d))) /
                                           static_cast<uint64_t>(d) +
                                       1);
  }

  // n / divisor for n <= kMaxDividedIndex (t <= n, so t + n does not overflow).
  MRCNN_HD uint32_t quotient(uint32_t n) const {
#ifdef __CUDA_ARCH__
    const uint32_t t = __umulhi(n, multiplier);
#else
    const uint32_t t = static_cast<uint32_t>((static_cast<uint64_t>(n) * multiplier) >> 32);
#endif
    return (t + n) >> shift;
  }
  MRCNN_HD uint32_t remainder(uint32_t n) const { return n - quotient(n) * divisor; }
};

}  // namespace mrcnn::cuda
