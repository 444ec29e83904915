// The sizes of one direct 2-D convolution, shared by the CPU convolution kernels (ops/conv.cpp and
// ops/conv_winograd.cpp). Internal to ops/: the public API is ops/conv.h.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ops/spatial.h"

namespace mrcnn::cpu {

// `buffer` grown (never shrunk) to at least n elements; the caller writes before it reads. The
// convolution kernels keep such buffers thread_local: a fresh multi-MB allocation per call would
// page-fault every 4 KB.
template <typename T>
T* grown(std::vector<T>& buffer, int64_t n) {
  if (buffer.size() < static_cast<size_t>(n)) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

// Input [batch, in_channels, in_h, in_w] -> output [batch, out_channels, out_h, out_w],
// weight [out_channels, in_channels/groups, kernel_h, kernel_w].
struct ConvGeometry {
  int64_t batch = 0, in_channels = 0, in_h = 0, in_w = 0;
  int64_t out_channels = 0, out_h = 0, out_w = 0;
  int64_t kernel_h = 0, kernel_w = 0;
  ops::Size2 stride, padding, dilation;
  int64_t groups = 1;

  int64_t in_per_group() const { return in_channels / groups; }
  int64_t out_per_group() const { return out_channels / groups; }
  int64_t col_rows() const { return in_per_group() * kernel_h * kernel_w; }  // GEMM K
  int64_t in_plane() const { return in_h * in_w; }
  int64_t out_plane() const { return out_h * out_w; }
  // 1x1, stride 1, no padding: the input plane already is the im2col matrix.
  bool pointwise() const {
    return kernel_h == 1 && kernel_w == 1 && stride == ops::Size2(1) && padding == ops::Size2(0);
  }
};

// Winograd F(2x2, 3x3) (ops/conv_winograd.cpp): 3x3, stride 1, dilation 1, one group, padding <= 2,
// and enough channels and output tiles for the transforms to pay off.
bool winograd_applies(const ConvGeometry& g);
// out = conv(x, weight) + bias (bias may be null), float32, via the packed GEMM.
void conv_forward_winograd(const ConvGeometry& g, const float* x, const float* weight, const float* bias, float* out);

// Direct convolution through a padded, stride-phase-split input copy (ops/conv_direct.cpp): any
// non-pointwise float32 conv on AVX2/FMA CPUs whose output rows fill most of a 16-pixel tile.
bool direct_conv_applies(const ConvGeometry& g);
// Whether a forward convolution runs it: where it applies, except on CPUs without AVX-512 for more
// than 64 output channels per group or maps under 9 pixels wide (row-pair tiles), where the
// implicit-im2col GEMM is faster.
bool direct_conv_forward(const ConvGeometry& g);
// Whether t, the flipped-kernel convolution a stride-1 input gradient computes, runs the direct
// kernel: where it applies, except on CPUs without AVX-512 with more than 64 output channels per
// group over rows of single-row tiles, where the implicit-im2col GEMM runs it faster.
bool direct_input_grad(const ConvGeometry& t);
// dweight of a float32 non-pointwise convolution as dot products along rows of output pixels
// (AVX-512 CPUs; few input channels, output rows that fill most of a 16-lane vector).
bool direct_weight_grad_applies(const ConvGeometry& g);
void conv_backward_weight_direct(const ConvGeometry& g, const float* dout, const float* x, float* dweight);
// dweight of a float32 stride-1 convolution (padding at most the kernel's reach) as one GEMM over a
// zero-framed copy of the input, whose B slivers are packed from contiguous runs (ops/conv_framed.cpp).
// Where it applies: stride 1, more than one tap, output maps of at most 2048 pixels (4096 on AVX-512
// CPUs, whose tap-row kernel reads the frame unpacked), grid overhead <= 1.2x (see there).
bool framed_weight_grad_applies(const ConvGeometry& g);
// Switches the framed route off (the implicit im2col then runs): for tests and benchmarks.
void allow_framed_weight_grad(bool allowed);
void conv_backward_weight_framed(const ConvGeometry& g, const float* dout, const float* x, float* dweight);
// The micro-tile the direct convolution would use for g ("avx512 8x32", ...; "" when it does not
// apply; ops/gemm.h's allow_avx512 switches the AVX-512 tiles off): for tests and benchmarks.
std::string direct_conv_tile(const ConvGeometry& g);
// Whether that tile is a flat one (lanes spanning output rows, stored as runs).
bool direct_conv_flat_tile(const ConvGeometry& g);
// Switches the flat tiles off (row tiles or the implicit GEMM then run): for tests and benchmarks.
void allow_flat_conv_tiles(bool allowed);
// Switches the direct kernels off (forward, flipped-kernel input gradient, weight-gradient dot
// products; the GEMM routes then run): for tests and benchmarks.
void allow_direct_conv(bool allowed);
// Makes the direct kernel run wherever it applies, forward and input gradient, setting aside the
// measured rules (direct_conv_forward, direct_input_grad) that give some of those convolutions to
// the implicit GEMM on CPUs without AVX-512: for tests and benchmarks.
void prefer_direct_conv(bool preferred);
// With flipped_weight, `weight` is the kernel of the stride-1 convolution whose input gradient g
// computes ([g.in_channels][g.out_per_group][kh][kw]), used spatially flipped and in/out-swapped.
void conv_forward_direct(const ConvGeometry& g, const float* x, const float* weight, const float* bias, float* out,
                         bool flipped_weight = false);

// The three products of the direct convolution g on contiguous buffers, float or double
// (ops/conv_cpu.cpp), each routed to the fastest kernel that applies:
// out[n, o] = bias[o] + sum over (c, ki, kj) of weight[o, c, ki, kj] * x[n, c, ...] (bias may be null);
template <typename T>
void conv_forward(const ConvGeometry& g, const T* x, const T* weight, const T* bias, T* out);
// dx from dout (its adjoint: also conv_transpose2d's forward);
template <typename T>
void conv_backward_input(const ConvGeometry& g, const T* dout, const T* weight, T* dx);
// dweight = sum over images of dout[n] @ im2col(x[n])^T, in image order.
template <typename T>
void conv_backward_weight(const ConvGeometry& g, const T* dout, const T* x, T* dweight);
// y[n, c, :] += bias[c]
template <typename T>
void add_channel_bias(T* y, int64_t batch, int64_t channels, int64_t plane, const T* bias);
// Sets the bytes of the cols scratch per chunk of images in a kernel == stride transposed conv's
// input gradient; returns the previous value (ops::set_tiled_transpose_chunk_bytes).
int64_t exchange_tiled_transpose_chunk_bytes(int64_t bytes);

}  // namespace mrcnn::cpu
