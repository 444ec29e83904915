// channel_affine's per-element body, y = x * scale[c] + shift[c] over a contiguous [batch, channels,
// inner] tensor: the CUDA kernel (cuda/norm.cu) runs it per element, and a CPU test checks its
// channel indexing against the CPU loop (which hoists scale and shift per row).
#pragma once
#include <cstdint>

#include "cuda/host_device.h"

namespace mrcnn {

// Element i lies in channel (i / inner) % channels. shift may be null (zero).
template <typename T>
MRCNN_HD inline T channel_affine_element(const T* x, const T* scale, const T* shift, int64_t i, int64_t channels,
                                         int64_t inner) {
  const int64_t c = i / inner % channels;
  return x[i] * scale[c] + (shift ? shift[c] : T(0));
}

}  // namespace mrcnn
