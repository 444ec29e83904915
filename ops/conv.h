// 2-D convolution and transposed convolution (NCHW), with PyTorch's semantics and argument names.
// CPU: im2col + GEMM one image at a time (bounded scratch), a plain GEMM for 1x1 stride-1 kernels.
#pragma once
#include "ops/spatial.h"
#include "tensor/tensor.h"

namespace mrcnn::ops {

struct Conv2dOptions {
  Size2 stride = 1, padding = 0, dilation = 1;
  int64_t groups = 1;
};

struct ConvTranspose2dOptions {
  Size2 stride = 1, padding = 0, output_padding = 0, dilation = 1;
  int64_t groups = 1;
};

// x [N, C, H, W], weight [O, C/groups, kH, kW], bias [O] or undefined -> [N, O, H', W'].
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), const Conv2dOptions& options = {});
// x [N, C, H, W], weight [C, O/groups, kH, kW], bias [O] or undefined -> [N, O, H', W'] with
// H' = (H - 1) * stride - 2 * padding + dilation * (kH - 1) + output_padding + 1: the gradient of conv2d.
Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                        const ConvTranspose2dOptions& options = {});

// CPU: the scratch bound, in bytes, of the transposed conv over windows that tile the output (the
// mask predictor's 2x2 stride 2), which runs a chunk of images at a time; 32 MB by default. float32
// results do not depend on it (tests set it small to cross chunk boundaries). Returns the previous.
int64_t set_tiled_transpose_chunk_bytes(int64_t bytes);

}  // namespace mrcnn::ops
