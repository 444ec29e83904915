// Per-channel CPU kernels over a contiguous [batch, channels, inner] tensor, shared by the norm
// layers (ops/norm.cpp) and the convolutions' bias gradient (ops/conv.cpp). Internal to ops/.
#pragma once
#include <algorithm>
#include <cstdint>

#include "tensor/lane_sums.h"
#include "tensor/parallel.h"

namespace mrcnn::cpu {

struct ChannelLayout {
  int64_t batch = 0, channels = 0, inner = 0;
  int64_t count() const { return batch * inner; }  // elements per channel
};

// One task per channel block, sized so a block holds about kParallelGrain elements.
inline int64_t channel_grain(const ChannelLayout& l) {
  return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(l.count(), 1));
}

// Per channel: dot[c] = sum dy * x (x null: skipped), total[c] = sum dy; either output may be null.
// Double accumulation in a fixed order per channel: the same bits for any thread count.
template <typename T>
void channel_sums(const ChannelLayout& l, const T* dy, const T* x, T* dot, T* total) {
  parallel_for(0, l.channels, channel_grain(l), [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      double dy_and_dot[2] = {0, 0}, dy_only[1] = {0};  // with x: sum of dy, of dy * x; without: sum of dy
      for (int64_t n = 0; n < l.batch; ++n) {
        const T* dyn = dy + (n * l.channels + c) * l.inner;
        const T* xn = x ? x + (n * l.channels + c) * l.inner : nullptr;
        if (xn)
          add_lane_sums(l.inner, [&](int64_t i, double (&t)[2]) { t[0] = dyn[i], t[1] = static_cast<double>(dyn[i]) * xn[i]; }, dy_and_dot);
        else
          add_lane_sums(l.inner, [&](int64_t i, double (&t)[1]) { t[0] = dyn[i]; }, dy_only);
      }
      if (dot) dot[c] = static_cast<T>(dy_and_dot[1]);
      if (total) total[c] = static_cast<T>(x ? dy_and_dot[0] : dy_only[0]);
    }
  });
}

}  // namespace mrcnn::cpu
