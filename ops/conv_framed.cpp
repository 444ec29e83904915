// Weight gradient of a stride-1 convolution as one GEMM whose B columns are contiguous runs.
//
// dweight[o, (c, ki, kj)] = sum over images and output pixels p of dout[o, p] * x[c, p shifted by
// tap (ki, kj)]. Laid out in a "frame" (every image's rows widened by the padding, images stacked
// with the padding rows between them), a tap's shift is one constant offset, the same for every
// pixel of every image: the GEMM's depth runs over all pixels of all images, and column (c, tap) of
// its B operand is the frame of channel c read from that offset on. The implicit im2col gathered
// each of these elements one at a time, checking the borders; here a B sliver is 16 contiguous runs
// transposed with vector shuffles (ops/gemm.h's pack_column_runs).
//
// The frame: row stride in_w + pad_w, pad_w zeros then the image row; pad_h zero rows before each
// image. A tap that reads past an image row's right edge lands in the next row's leading zeros, one
// past the bottom in the next image's (or the tail's) zero rows, so no read needs a border check.
// dout is laid out on the same grid (zeros where the grid has no output pixel), so the products of
// grid positions without an output pixel vanish. The grid costs (in_h + pad_h)(in_w + pad_w) /
// (out_h * out_w) times the arithmetic of the convolution: 1.13x at 16x16, 1.27x at 8x8. On
// AVX-512 CPUs the same frame feeds a transposed product that reads it without packing
// (tap_rows_weight_grad).
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "ops/conv_geometry.h"
#include "ops/gemm.h"
#include "tensor/parallel.h"

namespace mrcnn::cpu {

namespace {

// Where the frame pays, measured against the implicit im2col (bench_conv_weight_grad, batch-4
// recipe shapes, 2 threads, best of rounds): 0.79-0.95x the time for 3x3 convs on 14-32 px maps
// (the mask head 0.87-0.89x in four runs), while rows running one kernel on both sides varied by
// 0.89-1.08x on this shared machine. At 8x8 the grid's 1.27x arithmetic undoes the gain, hence the
// overhead bound. At 64x64 it gained nothing, hence the plane bound (the same as where the implicit
// GEMM merges images). The AVX-512 tap-row kernel (below) does gain there: 128 channels at 64x56
// 0.87x the implicit im2col's time, 64 channels 0.73x the direct dot products' (ResNet's first
// stage); larger maps are unmeasured, hence its own bound. Since the implicit im2col reads a padded
// copy (2026-11-29) it has caught up on 16 px maps: 128 channels even (framed 0.89-1.06x over six
// runs), 256 channels at 16 x 12 framed 1.03-1.12x. The frame keeps its lead at 32 px (0.79-0.92x)
// and on the mask head's 14 px RoIs (0.89-0.91x). The route stays: a step would gain ~1 ms.
constexpr double kMaxFrameOverhead = 1.2;
constexpr int64_t kMaxFramedPlane = 2048, kMaxTapRowsPlane = 4096;
// The copies (input frame and dout grid) of one chunk of images; the buffers are kept per thread
// from call to call, so this bounds what they hold. A chunk's GEMM still runs thousands deep.
constexpr int64_t kMaxFrameBytes = int64_t(16) << 20;

std::atomic<bool> g_allow_framed{true};

struct Frame {
  int64_t row_stride = 0;    // in_w + pad_w
  int64_t image_stride = 0;  // (in_h + pad_h) * row_stride
  int64_t depth = 0;         // GEMM K: batch * image_stride grid positions
  int64_t channel_stride = 0;  // depth plus the zero tail the last image's taps read
  std::vector<int64_t> tap_offsets;

  // Grid positions of one image: its rows widened by the padding, plus the padding rows before it.
  static int64_t image_positions(const ConvGeometry& g) { return (g.in_h + g.padding.h) * (g.in_w + g.padding.w); }

  explicit Frame(const ConvGeometry& g) {
    row_stride = g.in_w + g.padding.w;
    image_stride = image_positions(g);
    depth = g.batch * image_stride;
    for (int64_t ki = 0; ki < g.kernel_h; ++ki)
      for (int64_t kj = 0; kj < g.kernel_w; ++kj)
        tap_offsets.push_back(ki * g.dilation.h * row_stride + kj * g.dilation.w);
    channel_stride = depth + tap_offsets.back() + row_stride;
  }
  // Frame row j = (c, tap) of one group: channel c's frame from the tap's offset on, at depth k0.
  const float* row(const float* group_frame, int64_t j, int64_t k0) const {
    const int64_t taps = static_cast<int64_t>(tap_offsets.size());
    return group_frame + j / taps * channel_stride + tap_offsets[j % taps] + k0;
  }
  // Grid positions per output pixel: the arithmetic the frame adds.
  static double overhead(const ConvGeometry& g) {
    return static_cast<double>(image_positions(g)) / static_cast<double>(std::max<int64_t>(g.out_plane(), 1));
  }
};

// frame[c][image, padded grid] from x[image][c][h][w]; every position outside the images is zero.
void frame_input(const ConvGeometry& g, const Frame& f, const float* x, float* frame) {
  const int64_t pad_h = g.padding.h, pad_w = g.padding.w;
  parallel_for(0, g.in_channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      float* channel = frame + c * f.channel_stride;
      for (int64_t n = 0; n < g.batch; ++n) {
        float* image = channel + n * f.image_stride;
        std::fill(image, image + pad_h * f.row_stride, 0.0f);
        const float* src = x + (n * g.in_channels + c) * g.in_plane();
        for (int64_t y = 0; y < g.in_h; ++y) {
          float* row = image + (pad_h + y) * f.row_stride;
          std::fill(row, row + pad_w, 0.0f);
          std::copy(src + y * g.in_w, src + (y + 1) * g.in_w, row + pad_w);
        }
      }
      std::fill(channel + f.depth, channel + f.channel_stride, 0.0f);
    }
  });
}

// grid[o][image, grid position] from dout[image][o][out_h][out_w]; zero where no output pixel is.
void frame_output_gradient(const ConvGeometry& g, const Frame& f, const float* dout, float* grid) {
  const int64_t grid_rows = f.image_stride / f.row_stride;
  parallel_for(0, g.out_channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o)
      for (int64_t n = 0; n < g.batch; ++n) {
        float* image = grid + o * f.depth + n * f.image_stride;
        const float* src = dout + (n * g.out_channels + o) * g.out_plane();
        for (int64_t y = 0; y < g.out_h; ++y) {
          float* row = image + y * f.row_stride;
          std::copy(src + y * g.out_w, src + (y + 1) * g.out_w, row);
          std::fill(row + g.out_w, row + f.row_stride, 0.0f);
        }
        std::fill(image + g.out_h * f.row_stride, image + grid_rows * f.row_stride, 0.0f);
      }
  });
}

// On AVX-512 CPUs the frame is read without packing it: the product runs transposed,
// dweight^T[(c, tap), o] = sum over grid positions k of frame[c][k + offset(tap)] * grid[o][k].
// A micro-tile of kTapRows (c, tap) rows x kTapCols output channels broadcasts each row's value
// straight from the frame (kTapRows contiguous streams, overlapping within a channel) and multiplies
// it by 16-channel vectors of dout, which are the packed operand: packed once per depth chunk per
// thread and read by every row tile. The GEMM above packs the frame side instead, and each packed
// element then feeds only the og output channels (64-128 here), so packing cost ~15% of it.
constexpr int kTapRows = 6, kTapVectors = 4;  // 6 x 64 accumulators: 24 of the 32 vector registers
constexpr int64_t kTapCols = 16 * kTapVectors;
constexpr int64_t kTapDepth = 512;  // grid positions per chunk: a chunk's packed dout (og x 512) stays in L2

// tile[r][16v + j] (+)= sum over k < kc of rows[r][k] * b[v * sliver + 16k + j], summed in k order.
__attribute__((target("avx512f"))) void tap_rows_kernel(int64_t kc, const float* const* rows, const float* b,
                                                        int64_t sliver, float* tile, bool first) {
  __m512 acc[kTapRows][kTapVectors];
#pragma GCC unroll 6
  for (int r = 0; r < kTapRows; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kTapVectors; ++v)
      acc[r][v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(tile + (r * kTapVectors + v) * 16);
  const float* row[kTapRows];
#pragma GCC unroll 6
  for (int r = 0; r < kTapRows; ++r) row[r] = rows[r];
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[kTapVectors];
#pragma GCC unroll 4
    for (int v = 0; v < kTapVectors; ++v) bv[v] = _mm512_loadu_ps(b + v * sliver + 16 * k);
#pragma GCC unroll 6
    for (int r = 0; r < kTapRows; ++r) {
      const __m512 w = _mm512_set1_ps(row[r][k]);
#pragma GCC unroll 4
      for (int v = 0; v < kTapVectors; ++v) acc[r][v] = _mm512_fmadd_ps(w, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < kTapRows; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kTapVectors; ++v) _mm512_storeu_ps(tile + (r * kTapVectors + v) * 16, acc[r][v]);
}

// dweight (one group, rows = cg * taps columns per output channel; added to when accumulate) from
// the frame and the gradient grid, by tap-row tiles. Threads take contiguous ranges of row tiles
// and pack their own copy of each depth chunk of dout; every sum runs over k in one fixed order,
// so the bits do not depend on the thread count.
void tap_rows_weight_grad(const ConvGeometry& g, const Frame& f, const float* group_frame, const float* group_grid,
                          float* dweight, bool accumulate) {
  const int64_t og = g.out_per_group(), rows = g.col_rows();
  const int64_t row_tiles = (rows + kTapRows - 1) / kTapRows, col_tiles = (og + kTapCols - 1) / kTapCols;
  constexpr int64_t kTileFloats = kTapRows * kTapCols;
  const int64_t per_thread = (row_tiles + num_threads() - 1) / num_threads();
  parallel_for(0, row_tiles, per_thread, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> packed_buffer, tile_buffer;
    float* packed = grown(packed_buffer, col_tiles * kTapCols * kTapDepth);
    float* tiles = grown(tile_buffer, (end - begin) * col_tiles * kTileFloats);
    for (int64_t k0 = 0; k0 < f.depth; k0 += kTapDepth) {
      const int64_t kc = std::min(kTapDepth, f.depth - k0);
      // dout's chunk as 16-channel slivers, each kc x 16 (channels past og read as zeros).
      for (int64_t s = 0; s < col_tiles * kTapVectors; ++s) {
        const float* runs[kPackedNR];
        for (int64_t i = 0; i < kPackedNR; ++i) {
          const int64_t o = s * kPackedNR + i;
          runs[i] = o < og ? group_grid + o * f.depth + k0 : nullptr;
        }
        pack_column_runs(runs, kc, packed + s * kc * kPackedNR);
      }
      // Column tiles outer: one tile's packed dout (kc x 64) stays in L1/L2 while every row tile reads it.
      for (int64_t ct = 0; ct < col_tiles; ++ct)
        for (int64_t t = begin; t < end; ++t) {
          // Rows past the last (c, tap) repeat it; their sums are dropped.
          const float* frame_rows[kTapRows];
          for (int r = 0; r < kTapRows; ++r) {
            const int64_t j = std::min(t * kTapRows + r, rows - 1);
            frame_rows[r] = f.row(group_frame, j, k0);
          }
          tap_rows_kernel(kc, frame_rows, packed + ct * kTapVectors * kc * kPackedNR, kc * kPackedNR,
                          tiles + ((t - begin) * col_tiles + ct) * kTileFloats, k0 == 0);
        }
    }
    for (int64_t t = begin; t < end; ++t)
      for (int64_t ct = 0; ct < col_tiles; ++ct) {
        const float* tile = tiles + ((t - begin) * col_tiles + ct) * kTileFloats;
        for (int r = 0; r < kTapRows && t * kTapRows + r < rows; ++r)
          for (int64_t j = 0; j < kTapCols && ct * kTapCols + j < og; ++j) {
            float& w = dweight[(ct * kTapCols + j) * rows + t * kTapRows + r];
            w = accumulate ? w + tile[r * kTapCols + j] : tile[r * kTapCols + j];
          }
      }
  });
}

}  // namespace

bool framed_weight_grad_applies(const ConvGeometry& g) {
  // A tap may read at most pad zeros past a row's end (they are the next row's leading zeros): the
  // frame holds "same" and "valid" padding, not wider. Stride 1: a strided tap's pixels are not
  // one constant offset apart.
  if (!g_allow_framed.load(std::memory_order_relaxed) || gemm_kernel() != GemmKernel::Packed) return false;
  const int64_t max_plane = use_avx512() ? kMaxTapRowsPlane : kMaxFramedPlane;
  if (!(g.stride == ops::Size2(1)) || g.batch == 0 || g.out_plane() == 0 || g.out_plane() > max_plane) return false;
  // 1x1 convs: no taps to shift, and no gain that stood out of the noise (0.85-1.10x over runs).
  if (g.kernel_h * g.kernel_w == 1) return false;
  if (g.padding.h > (g.kernel_h - 1) * g.dilation.h || g.padding.w > (g.kernel_w - 1) * g.dilation.w) return false;
  return Frame::overhead(g) <= kMaxFrameOverhead;
}

void allow_framed_weight_grad(bool allowed) { g_allow_framed.store(allowed, std::memory_order_relaxed); }

void conv_backward_weight_framed(const ConvGeometry& g, const float* dout, const float* x, float* dweight) {
  // Images in chunks of at most kMaxFrameBytes of copies, summed into dweight in chunk order (fixed by
  // the shape): the mask head's RoIs are a batch of hundreds.
  const int64_t bytes_per_image =
      static_cast<int64_t>(sizeof(float)) * (g.in_channels + g.out_channels) * Frame::image_positions(g);
  const int64_t chunks = std::max<int64_t>(1, (g.batch * bytes_per_image + kMaxFrameBytes - 1) / kMaxFrameBytes);
  const int64_t per_chunk = (g.batch + chunks - 1) / chunks;
  const int64_t og = g.out_per_group(), cg = g.in_per_group(), rows = g.col_rows();
  thread_local std::vector<float> input_frame, gradient_grid;
  for (int64_t n0 = 0; n0 < g.batch; n0 += per_chunk) {
    ConvGeometry part = g;
    part.batch = std::min(per_chunk, g.batch - n0);
    const Frame f(part);
    float* frame = grown(input_frame, part.in_channels * f.channel_stride);
    float* grid = grown(gradient_grid, part.out_channels * f.depth);
    frame_input(part, f, x + n0 * g.in_channels * g.in_plane(), frame);
    frame_output_gradient(part, f, dout + n0 * g.out_channels * g.out_plane(), grid);
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      const float* group_frame = frame + grp * cg * f.channel_stride;
      if (use_avx512()) {
        tap_rows_weight_grad(part, f, group_frame, grid + grp * og * f.depth, dweight + grp * og * rows, n0 > 0);
        continue;
      }
      sgemm_packed_b(false, og, rows, f.depth, grid + grp * og * f.depth, f.depth,
                     [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
                       const float* runs[kPackedNR];
                       for (int64_t s = 0; s < nc; s += kPackedNR, dst += kPackedNR * kc) {
                         for (int64_t i = 0; i < kPackedNR; ++i)
                           runs[i] = s + i < nc ? f.row(group_frame, j0 + s + i, k0) : nullptr;
                         pack_column_runs(runs, kc, dst);
                       }
                     },
                     dweight + grp * og * rows, rows, n0 > 0);
    }
  }
}

}  // namespace mrcnn::cpu
