// A square-kernel "same"-padded convolution for the conv benchmarks (bench/conv_flat_tiles.cpp,
// bench/conv_weight_grad.cpp): its description and the direct-convolution geometry it runs.
#pragma once
#include <cstdint>

#include "ops/conv_geometry.h"

namespace mrcnn::bench {

struct ConvCase {
  const char* name;
  int64_t batch, channels, height, width, out_channels, kernel, stride = 1;
};

// Padding kernel / 2, dilation 1, one group.
inline cpu::ConvGeometry conv_geometry(const ConvCase& c) {
  cpu::ConvGeometry g;
  g.batch = c.batch, g.in_channels = c.channels, g.in_h = c.height, g.in_w = c.width;
  g.out_channels = c.out_channels, g.kernel_h = g.kernel_w = c.kernel;
  g.stride = ops::Size2(c.stride), g.padding = ops::Size2(c.kernel / 2), g.dilation = ops::Size2(1);
  g.out_h = (c.height + 2 * (c.kernel / 2) - c.kernel) / c.stride + 1;
  g.out_w = (c.width + 2 * (c.kernel / 2) - c.kernel) / c.stride + 1;
  return g;
}

// The convolution's multiply-adds times 2.
inline double conv_gflop(const ConvCase& c) {
  const cpu::ConvGeometry g = conv_geometry(c);
  return 2e-9 * static_cast<double>(g.batch * g.out_channels * g.out_plane() * g.col_rows());
}

}  // namespace mrcnn::bench
