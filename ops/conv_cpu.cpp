// The CPU convolution kernels behind conv2d and conv_transpose2d (ops/conv.cpp): forward,
// input gradient and weight gradient of the direct convolution, each choosing among Winograd
// (ops/conv_winograd.cpp), the direct kernel (ops/conv_direct.cpp), framed weight gradients
// (ops/conv_framed.cpp), the packed GEMM with implicit im2col (here) and, for float64 or CPUs
// without AVX2/FMA, explicit im2col + GEMM (here). Each names its choice to the conv profile.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <immintrin.h>
#include <type_traits>
#include <vector>

#include "ops/conv_geometry.h"
#include "ops/conv_profile.h"
#include "ops/gemm.h"
#include "tensor/parallel.h"

namespace mrcnn::cpu {

// Bytes of the cols scratch per chunk of images in conv_backward_input_disjoint: the whole batch at
// once held 4x the input (160 MB for the mask predictor's 200 RoIs at inference), which set the
// detector's peak memory. 32 MB runs that deconv as fast as one pass (16 MB: 4% slower, 2 threads).
// ops::set_tiled_transpose_chunk_bytes changes it.
std::atomic<int64_t> tiled_transpose_chunk_bytes{int64_t(32) << 20};

using ops::Size2;
using ops::valid_range;

namespace {

// The calling thread's scratch buffer (one per scalar type), kept between calls (a fresh one cost
// 7% of a strided conv's backward in page faults). Each caller uses one at a time.
template <typename T>
T* scratch(int64_t n) {
  thread_local std::vector<T> buffer;
  return grown(buffer, n);
}

// col[(c * kH + ki) * kW + kj][oy * out_w + ox] = x[c][oy * sh - ph + ki * dh][ox * sw - pw + kj * dw], 0 outside.
template <typename T>
void im2col(const ConvGeometry& g, const T* x, T* col) {
  const int64_t rows = g.col_rows(), plane = g.out_plane(), taps = g.kernel_h * g.kernel_w;
  parallel_for(0, rows, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(plane, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t c = row / taps, ki = row % taps / g.kernel_w, kj = row % g.kernel_w;
      const T* src = x + c * g.in_plane();
      T* dst = col + row * plane;
      const int64_t y_start = ki * g.dilation.h - g.padding.h, x_start = kj * g.dilation.w - g.padding.w;
      int64_t y_lo, y_hi, x_lo, x_hi;
      valid_range(g.in_h, g.out_h, g.stride.h, y_start, y_lo, y_hi);
      valid_range(g.in_w, g.out_w, g.stride.w, x_start, x_lo, x_hi);
      std::fill(dst, dst + y_lo * g.out_w, T(0));
      std::fill(dst + y_hi * g.out_w, dst + plane, T(0));
      for (int64_t oy = y_lo; oy < y_hi; ++oy) {
        T* d = dst + oy * g.out_w;
        const T* s = src + (oy * g.stride.h + y_start) * g.in_w + x_start;
        std::fill(d, d + x_lo, T(0));
        std::fill(d + x_hi, d + g.out_w, T(0));
        if (g.stride.w == 1) std::memcpy(d + x_lo, s + x_lo, sizeof(T) * (x_hi - x_lo));
        else
          for (int64_t ox = x_lo; ox < x_hi; ++ox) d[ox] = s[ox * g.stride.w];
      }
    }
  });
}

// The adjoint of im2col: x[c] = sum over the taps of channel c of their col rows, scattered back.
// Parallel over channels: each channel's taps write only that channel's plane, so no races. Rows
// of col are ld apart (out_plane unless several images share col).
template <typename T>
void col2im(const ConvGeometry& g, const T* col, T* x, int64_t ld) {
  const int64_t plane = g.out_plane(), taps = g.kernel_h * g.kernel_w;
  const int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(taps * plane, 1));
  parallel_for(0, g.in_per_group(), grain, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      T* dst = x + c * g.in_plane();
      std::fill(dst, dst + g.in_plane(), T(0));
      for (int64_t ki = 0; ki < g.kernel_h; ++ki)
        for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
          const T* src = col + ((c * g.kernel_h + ki) * g.kernel_w + kj) * ld;
          const int64_t y_start = ki * g.dilation.h - g.padding.h, x_start = kj * g.dilation.w - g.padding.w;
          int64_t y_lo, y_hi, x_lo, x_hi;
          valid_range(g.in_h, g.out_h, g.stride.h, y_start, y_lo, y_hi);
          valid_range(g.in_w, g.out_w, g.stride.w, x_start, x_lo, x_hi);
          for (int64_t oy = y_lo; oy < y_hi; ++oy) {
            T* d = dst + (oy * g.stride.h + y_start) * g.in_w + x_start;
            const T* s = src + oy * g.out_w;
            for (int64_t ox = x_lo; ox < x_hi; ++ox) d[ox * g.stride.w] += s[ox];
          }
        }
    }
  });
}

// Implicit im2col for the packed float GEMM: the im2col matrix (rows = taps (c, ki, kj), columns =
// output pixels) is gathered straight into the GEMM's packed B slivers, so it is never materialised
// and read back. Columns may span several images: column j is pixel j % out_plane of image
// j / out_plane, which lets small feature maps share one wider GEMM. The gather reads a copy of
// the input with its zero border written out (or x itself when there is no padding).
struct PaddedInput {
  const float* data;  // x's group channels with their borders, or x itself
  int64_t row_stride, plane, image_stride;  // in_w + 2 pw, (in_h + 2 ph) * row_stride, channels * plane
};

// Room for pad_input's copy of `images` images; none without padding.
Tensor padding_buffer(const ConvGeometry& g, int64_t images) {
  if (g.padding == Size2(0)) return Tensor();
  return empty({images * g.in_per_group() * (g.in_h + 2 * g.padding.h) * (g.in_w + 2 * g.padding.w)}, DTypeOf<float>::value);
}

// The group's channels of `images` images of x (image_stride apart) copied into `buffer` with their
// borders, so that every tap of every output pixel reads inside the copy; x itself without padding.
PaddedInput pad_input(const ConvGeometry& g, const float* x, int64_t image_stride, int64_t images, const Tensor& buffer) {
  if (!buffer.defined()) return PaddedInput{x, g.in_w, g.in_plane(), image_stride};
  float* dst = buffer.data<float>();
  const int64_t pad_h = g.padding.h, pad_w = g.padding.w, channels = g.in_per_group();
  PaddedInput p{dst, g.in_w + 2 * pad_w, 0, 0};
  p.plane = (g.in_h + 2 * pad_h) * p.row_stride, p.image_stride = channels * p.plane;
  parallel_for(0, images * channels, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(p.plane, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t ic = begin; ic < end; ++ic) {
                   const float* src = x + ic / channels * image_stride + ic % channels * g.in_plane();
                   float* plane = dst + ic * p.plane;
                   std::fill(plane, plane + pad_h * p.row_stride, 0.0f);
                   for (int64_t y = 0; y < g.in_h; ++y) {
                     float* row = plane + (pad_h + y) * p.row_stride;
                     std::fill(row, row + pad_w, 0.0f);
                     std::copy(src + y * g.in_w, src + (y + 1) * g.in_w, row + pad_w);
                     std::fill(row + pad_w + g.in_w, row + p.row_stride, 0.0f);
                   }
                   std::fill(plane + (pad_h + g.in_h) * p.row_stride, plane + p.plane, 0.0f);
                 }
               });
  return p;
}

// Offsets into a PaddedInput of the implicit im2col's two indices, stepped one at a time so that
// the packs divide only where they start (divisions per column cost more than the copy where few
// output channels share each packed element, as in a 1x1 head).
// An im2col row: channel c, tap (ki, kj), at its offset from an output pixel's top-left tap.
struct TapCursor {
  const ConvGeometry& g;
  const PaddedInput& p;
  int64_t c, ki, kj;
  TapCursor(const ConvGeometry& g_, const PaddedInput& p_, int64_t row)
      : g(g_), p(p_), c(row / (g_.kernel_h * g_.kernel_w)), ki(row / g_.kernel_w % g_.kernel_h), kj(row % g_.kernel_w) {}
  int64_t offset() const { return c * p.plane + ki * g.dilation.h * p.row_stride + kj * g.dilation.w; }
  void next() {
    if (++kj == g.kernel_w) {
      kj = 0;
      if (++ki == g.kernel_h) ki = 0, ++c;
    }
  }
};

// An im2col column: output pixel (oy, ox) of image `image`, at the offset of its top-left tap.
struct PixelCursor {
  const ConvGeometry& g;
  const PaddedInput& p;
  int64_t image, oy, ox;
  PixelCursor(const ConvGeometry& g_, const PaddedInput& p_, int64_t column)
      : g(g_), p(p_), image(column / g_.out_plane()), oy(column % g_.out_plane() / g_.out_w), ox(column % g_.out_w) {}
  int64_t offset() const { return image * p.image_stride + oy * g.stride.h * p.row_stride + ox * g.stride.w; }
  void next() {
    if (++ox == g.out_w) {
      ox = 0;
      if (++oy == g.out_h) oy = 0, ++image;
    }
  }
  void advance(int64_t n) {
    ox += n;
    if (ox >= g.out_w) oy += ox / g.out_w, ox %= g.out_w;
    if (oy >= g.out_h) image += oy / g.out_h, oy %= g.out_h;
  }
};

// One offset per row of a pack's depth block: on the stack for the packed GEMM's blocks (at most
// 256 deep), on the heap beyond.
class RowOffsets {
 public:
  explicit RowOffsets(int64_t n) : on_heap_(n > kOnStack ? n : 0), data_(n > kOnStack ? on_heap_.data() : on_stack_) {}
  int64_t& operator[](int64_t i) { return data_[i]; }

 private:
  static constexpr int64_t kOnStack = 256;
  int64_t on_stack_[kOnStack];
  std::vector<int64_t> on_heap_;
  int64_t* data_;
};

// A sliver's columns that the copy does not hold in one run (at stride 1: the sliver crosses from
// one output row, or image, into the next), as up to kMaxRuns runs of consecutive offsets. Each row
// of the sliver is then one masked load per run and half-sliver, ORed together: the per-element
// copy with a bound check it replaces took ~4% of the recipe's train step (the 24- and 12-pixel
// rows of its 256 x 192 batches cross a row in most slivers). Masked-off lanes are neither read nor
// faulted on, so a run's shifted base may point outside the copy. More runs, or none (strided
// columns, passed as 0 columns): count 0, and the caller copies element by element.
struct ColumnRuns {
  static constexpr int kMaxRuns = 4;
  int count = 0;
  int64_t shift[kMaxRuns];                // lane t of run r reads at[t + shift[r]]
  __m256i low[kMaxRuns], high[kMaxRuns];  // the run's lanes among 0-7 and 8-15

  ColumnRuns(const int64_t* column, int64_t cols) {
    int64_t start = 0;
    for (int64_t t = 1; t <= cols; ++t) {
      if (t < cols && column[t] == column[t - 1] + 1) continue;
      if (count == kMaxRuns) {
        count = 0;
        return;
      }
      alignas(32) int32_t lanes[kPackedNR];
      for (int64_t lane = 0; lane < kPackedNR; ++lane) lanes[lane] = lane >= start && lane < t ? -1 : 0;
      shift[count] = column[start] - start;
      low[count] = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes));
      high[count] = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes + 8));
      ++count, start = t;
    }
  }

  void pack(const float* data, RowOffsets& row, int64_t kc, float* dst) const {
    for (int64_t kk = 0; kk < kc; ++kk) {
      const float* at = data + row[kk];
      _mm_prefetch(reinterpret_cast<const char*>(at + shift[0] + 2 * kPackedNR), _MM_HINT_T0);
      __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
      for (int r = 0; r < count; ++r) {
        lo = _mm256_or_ps(lo, _mm256_maskload_ps(at + shift[r], low[r]));
        hi = _mm256_or_ps(hi, _mm256_maskload_ps(at + shift[r] + 8, high[r]));
      }
      _mm256_storeu_ps(dst + kk * kPackedNR, lo);
      _mm256_storeu_ps(dst + kk * kPackedNR + 8, hi);
    }
  }
};

// B[k0 : k0 + kc, j0 : j0 + nc] of the implicit im2col, from the padded copy: column j of a sliver
// reads the copy at one offset (its image and output pixel) plus one per row (the channel and tap),
// with no border to check. Gathering runs of one output row from x, with each run's bounds found
// per row of the sliver, cost more than the arithmetic it fed where rows are narrower than a
// sliver (bench_conv_implicit_gemm against the run gatherer, medians of 4 alternated runs, batch 4:
// layer4's 8 x 6 maps 0.72x the time, its strided first conv 0.71x, 15 x 11 maps 0.93x). The 1x1
// convs read x itself; they and FPN's 128-channel 8 x 6 maps moved within the machine's noise
// (bench/results/conv_implicit_gemm_cpu-2026-11-29.txt).
void pack_im2col(const ConvGeometry& g, const PaddedInput& p, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                 float* dst) {
  RowOffsets row(kc);  // the same for every sliver
  TapCursor tap(g, p, k0);
  for (int64_t kk = 0; kk < kc; ++kk, tap.next()) row[kk] = tap.offset();
  // A sliver's columns are contiguous in the copy when they lie in one output row at stride 1, or
  // (1x1 stride 1: rows back to back) in one image plane: then each row of the sliver is one copy.
  const bool rows_back_to_back = g.stride == Size2(1) && p.row_stride == g.out_w;
  PixelCursor pixel(g, p, j0);
  for (int64_t s = 0; s < nc; s += kPackedNR, dst += kPackedNR * kc) {
    const int64_t cols = std::min(kPackedNR, nc - s);
    const bool contiguous =
        cols == kPackedNR && g.stride.w == 1 &&
        (pixel.ox + kPackedNR <= g.out_w || (rows_back_to_back && pixel.oy * g.out_w + pixel.ox + kPackedNR <= g.out_plane()));
    if (contiguous) {
      // Each row of the sliver walks its own stream through the copy, kc of them, more than the
      // hardware prefetchers follow: fetch the line two slivers ahead. With the runs below, this
      // packer's share of the recipe's train-step samples (perf, 256 x 192 and 256 x 224, batch 4,
      // AVX2 on a Zen 3) went 6.0% -> 3.5%.
      const float* first = p.data + pixel.offset();
      for (int64_t kk = 0; kk < kc; ++kk) {
        _mm_prefetch(reinterpret_cast<const char*>(first + row[kk] + 2 * kPackedNR), _MM_HINT_T0);
        std::memcpy(dst + kk * kPackedNR, first + row[kk], sizeof(float) * kPackedNR);
      }
      pixel.advance(kPackedNR);
    } else {
      int64_t column[kPackedNR];
      for (int64_t cc = 0; cc < cols; ++cc, pixel.next()) column[cc] = pixel.offset();
      const ColumnRuns runs(column, g.stride.w == 1 ? cols : 0);
      if (runs.count > 0) {
        runs.pack(p.data, row, kc, dst);
      } else {
        for (int64_t kk = 0; kk < kc; ++kk) {
          const float* at = p.data + row[kk];
          for (int64_t t = 0; t < kPackedNR; ++t) dst[kk * kPackedNR + t] = t < cols ? at[column[t]] : 0.0f;
        }
      }
    }
  }
}

// im2col(x)^T[k0 : k0 + kc, j0 : j0 + nc], for dweight: rows are output pixels (of possibly several
// images, as in pack_im2col), columns are taps. From the padded copy, row kk reads it at one
// offset and column j (a channel and tap) adds one, so each sliver row is 16 loads and one
// contiguous store with no border to check. Finding each output row's valid run per column and
// storing down the column took longer (same runs: layer4's weight gradient 0.91x the time with
// this and whole-tile panels, its strided first conv 0.87x, the 1x1 heads' 0.51-0.75x), except
// on FPN's 4 x 3 maps (1.14-1.46x, +0.04 ms a call).
void pack_im2col_transposed(const ConvGeometry& g, const PaddedInput& p, int64_t k0, int64_t kc, int64_t j0,
                            int64_t nc, float* dst) {
  RowOffsets row(kc);  // the same for every sliver
  PixelCursor pixel(g, p, k0);
  for (int64_t kk = 0; kk < kc; ++kk, pixel.next()) row[kk] = pixel.offset();
  TapCursor tap(g, p, j0);
  for (int64_t s = 0; s < nc; s += kPackedNR, dst += kPackedNR * kc) {
    const int64_t cols = std::min(kPackedNR, nc - s);
    int64_t column[kPackedNR];
    for (int64_t cc = 0; cc < cols; ++cc, tap.next()) column[cc] = tap.offset();
    for (int64_t kk = 0; kk < kc; ++kk) {
      const float* at = p.data + row[kk];
      float* d = dst + kk * kPackedNR;
      if (cols == kPackedNR)
        for (int64_t t = 0; t < kPackedNR; ++t) d[t] = at[column[t]];
      else
        for (int64_t t = 0; t < kPackedNR; ++t) d[t] = t < cols ? at[column[t]] : 0.0f;
    }
  }
}

// Images share one GEMM when their output planes are at most this many pixels: below it a
// per-image GEMM is too narrow to amortise packing the weights.
constexpr int64_t kMergePlane = 2048;

// Images per GEMM: the whole batch for small maps, else one.
int64_t images_per_gemm(const ConvGeometry& g) {
  return g.out_plane() <= kMergePlane ? std::max<int64_t>(g.batch, 1) : 1;
}

// copy(batch_offset, staging_offset) for each (image i < images, channel o < channels): the plane
// of [first + i, channel0 + o] in a [batch, out_channels, plane] tensor and its run in staging
// [o, i * plane], channel-major rows of images * plane columns, so one GEMM spans several images.
// Parallel over channels only when the copy is big enough to pay for the threads; the copy out of
// staging ran serially once and was, with the bias fill before its GEMM, 1.2% of the recipe's
// train-step samples on the main thread alone (perf), the other core waiting.
template <typename Copy>
void for_each_channel_run(const ConvGeometry& g, int64_t first, int64_t images, int64_t channel0, int64_t channels,
                          const Copy& copy) {
  const int64_t plane = g.out_plane(), columns = images * plane;
  parallel_for(0, channels, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(columns, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o)
      for (int64_t i = 0; i < images; ++i) copy(((first + i) * g.out_channels + channel0 + o) * plane, o * columns + i * plane);
  });
}

// dout's planes -> staging (dout[first + i, channel0 + o] -> staging[o, i * plane]).
template <typename T>
void gather_channel_major(const ConvGeometry& g, const T* dout, int64_t first, int64_t images, int64_t channel0,
                          int64_t channels, T* staging) {
  for_each_channel_run(g, first, images, channel0, channels,
                       [&](int64_t b, int64_t s) { std::copy_n(dout + b, g.out_plane(), staging + s); });
}

// The inverse: staging -> out's planes.
void scatter_channel_major(const ConvGeometry& g, const float* staging, int64_t first, int64_t images, int64_t channel0,
                           int64_t channels, float* out) {
  for_each_channel_run(g, first, images, channel0, channels,
                       [&](int64_t b, int64_t s) { std::copy_n(staging + s, g.out_plane(), out + b); });
}

// The GEMMs of an implicit-im2col convolution: images_per_gemm(g) images at a time, one per group.
// Calls gemm(n0, grp, xg, staging) with xg the group's first input channel in image n0 and staging
// room for og channel-major rows of the images' pixels (null when each GEMM has one image).
template <typename Gemm>
void for_each_implicit_gemm(const ConvGeometry& g, const float* x, const Gemm& gemm) {
  const int64_t merged = images_per_gemm(g);
  float* staging = merged > 1 ? scratch<float>(g.out_per_group() * merged * g.out_plane()) : nullptr;
  for (int64_t n0 = 0; n0 < g.batch; n0 += merged)
    for (int64_t grp = 0; grp < g.groups; ++grp)
      gemm(n0, grp, x + (n0 * g.in_channels + grp * g.in_per_group()) * g.in_plane(), staging);
}

// Forward of a non-pointwise float convolution through the packed kernel and implicit im2col.
void conv_forward_implicit(const ConvGeometry& g, const float* x, const float* weight, const float* bias, float* out) {
  const int64_t og = g.out_per_group(), rows = g.col_rows(), plane = g.out_plane();
  const int64_t merged = images_per_gemm(g), ldy = merged * plane, image_stride = g.in_channels * g.in_plane();
  const Tensor padding = padding_buffer(g, merged);
  for_each_implicit_gemm(g, x, [&](int64_t n0, int64_t grp, const float* xg, float* staging) {
    float* y = staging ? staging : out + (n0 * g.out_channels + grp * og) * plane;
    if (bias)
      parallel_for(0, og, std::max<int64_t>(1, kParallelGrain / ldy), [&](int64_t begin, int64_t end) {
        for (int64_t o = begin; o < end; ++o) std::fill(y + o * ldy, y + (o + 1) * ldy, bias[grp * og + o]);
      });
    const PaddedInput padded = pad_input(g, xg, image_stride, merged, padding);
    sgemm_packed_b(false, og, ldy, rows, weight + grp * og * rows, rows,
                   [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
                     pack_im2col(g, padded, k0, kc, j0, nc, dst);
                   },
                   y, ldy, bias != nullptr);
    if (staging) scatter_channel_major(g, staging, n0, merged, grp * og, og, out);
  });
}

// dweight = dout @ im2col(x)^T summed over images, through the packed kernel (non-pointwise, float).
void conv_backward_weight_implicit(const ConvGeometry& g, const float* dout, const float* x, float* dweight) {
  const int64_t og = g.out_per_group(), rows = g.col_rows(), plane = g.out_plane();
  if (g.batch == 0) std::fill(dweight, dweight + g.out_channels * rows, 0.0f);
  const int64_t merged = images_per_gemm(g), image_stride = g.in_channels * g.in_plane();
  const Tensor padding = padding_buffer(g, merged);
  for_each_implicit_gemm(g, x, [&](int64_t n0, int64_t grp, const float* xg, float* staging) {
    const float* dg = dout + (n0 * g.out_channels + grp * og) * plane;
    if (staging) {
      gather_channel_major(g, dout, n0, merged, grp * og, og, staging);
      dg = staging;
    }
    const PaddedInput padded = pad_input(g, xg, image_stride, merged, padding);
    sgemm_packed_b(false, og, rows, merged * plane, dg, merged * plane,
                   [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
                     pack_im2col_transposed(g, padded, k0, kc, j0, nc, dst);
                   },
                   dweight + grp * og * rows, rows, n0 > 0);
  });
}

// The kernel of the convolution a stride-1 input gradient of g computes: spatially flipped, in and
// out channels swapped within each group ([in_channels][out_per_group][kh][kw]).
Tensor flipped_kernel(const ConvGeometry& g, const float* weight) {
  const int64_t og = g.out_per_group(), ig = g.in_per_group(), taps = g.kernel_h * g.kernel_w;
  Tensor flipped = empty({g.in_channels * og * taps}, kFloat32);
  float* dst = flipped.data<float>();
  for (int64_t grp = 0; grp < g.groups; ++grp)
    for (int64_t o = 0; o < og; ++o)
      for (int64_t c = 0; c < ig; ++c) {
        const float* src = weight + ((grp * og + o) * ig + c) * taps;
        float* d = dst + ((grp * ig + c) * og + o) * taps;
        for (int64_t k = 0; k < taps; ++k) d[taps - 1 - k] = src[k];
      }
  return flipped;
}

// Whether the packed kernel with implicit im2col handles this float convolution: always on AVX2/FMA
// CPUs, except a 1x1 stride-1 conv over large maps, which is already a plain GEMM per image.
bool use_implicit_gemm(const ConvGeometry& g) {
  return gemm_kernel() == GemmKernel::Packed && (!g.pointwise() || (g.out_plane() <= kMergePlane && g.batch > 1));
}

}  // namespace

// out[n, o] = bias[o] + sum over (c, ki, kj) of weight[o, c, ki, kj] * x[n, c, ...]; one image at a
// time so the im2col scratch is bounded by one image's [C/groups * kH * kW, H' * W'].
template <typename T>
void conv_forward(const ConvGeometry& g, const T* x, const T* weight, const T* bias, T* out) {
  const int64_t og = g.out_per_group(), rows = g.col_rows(), plane = g.out_plane();
  if constexpr (std::is_same_v<T, float>) {
    if (use_implicit_gemm(g) && winograd_applies(g)) {
      note_conv_route("winograd F(2x2, 3x3)");
      return conv_forward_winograd(g, x, weight, bias, out);
    }
    if (direct_conv_forward(g)) {
      if (conv_route_wanted()) note_conv_route(("direct " + direct_conv_tile(g)).c_str());
      return conv_forward_direct(g, x, weight, bias, out);
    }
    if (use_implicit_gemm(g)) {
      note_conv_route("gemm, implicit im2col");
      return conv_forward_implicit(g, x, weight, bias, out);
    }
  }
  note_conv_route(g.pointwise() ? "gemm" : "im2col + gemm");
  T* col = g.pointwise() ? nullptr : scratch<T>(rows * plane);
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      const T* xg = x + (n * g.in_channels + grp * g.in_per_group()) * g.in_plane();
      T* yg = out + (n * g.out_channels + grp * og) * plane;
      if (bias)
        for (int64_t o = 0; o < og; ++o) std::fill(yg + o * plane, yg + (o + 1) * plane, bias[grp * og + o]);
      const T* b = xg;
      if (!g.pointwise()) {
        im2col(g, xg, col);
        b = col;
      }
      gemm<T>(false, false, og, plane, rows, weight + grp * og * rows, rows, b, plane, yg, plane, bias != nullptr);
    }
}

namespace {

// dx[n] = col2im(weight^T @ dout[n]) per group.
// Windows that tile the input exactly (kernel == stride, no padding, dilation 1, one group), as in
// the mask head's 2x2 stride-2 transposed conv: col2im is then a pure permutation, so the whole
// batch runs as one GEMM over channel-major dout instead of one small GEMM + scatter per image
// (200 RoIs of 14x14: 1.7x faster).
bool non_overlapping_windows(const ConvGeometry& g) {
  return g.kernel_h == g.stride.h && g.kernel_w == g.stride.w && g.padding == Size2(0) && g.dilation == Size2(1) &&
         g.groups == 1 && g.in_h == g.out_h * g.stride.h && g.in_w == g.out_w * g.stride.w && g.kernel_h * g.kernel_w > 1;
}

template <typename T>
void conv_backward_input_disjoint(const ConvGeometry& g, const T* dout, const T* weight, T* dx) {
  const int64_t plane = g.out_plane(), rows = g.col_rows();
  const int64_t kh = g.kernel_h, kw = g.kernel_w;
  // At least 256 columns per chunk, so the GEMM splits them into panels as it would the whole batch
  // (never along its depth): each column's sum keeps its order, chunked or not.
  const int64_t by_bytes = tiled_transpose_chunk_bytes.load() / static_cast<int64_t>(sizeof(T)) / std::max<int64_t>(rows * plane, 1);
  const int64_t chunk = std::clamp<int64_t>(std::max(by_bytes, (256 + plane - 1) / plane), 1, g.batch);
  // Tensors, not vectors: no zero fill, and the host cache recycles the blocks.
  const Tensor channel_major_buffer = empty({g.out_channels * chunk * plane}, DTypeOf<T>::value);
  const Tensor cols_buffer = empty({rows * chunk * plane}, DTypeOf<T>::value);
  T* channel_major = channel_major_buffer.data<T>();
  T* cols = cols_buffer.data<T>();
  for (int64_t first = 0; first < g.batch; first += chunk) {
    const int64_t images = std::min(chunk, g.batch - first), columns = images * plane;
    gather_channel_major(g, dout, first, images, 0, g.out_channels, channel_major);
    // cols [(c, i, j), (n, y, x)] = weight^T [(c, i, j), o] * dout [o, (n, y, x)]
    gemm<T>(true, false, rows, columns, g.out_channels, weight, rows, channel_major, columns, cols, columns);
    parallel_for(0, images * g.in_channels, std::max<int64_t>(1, kParallelGrain / g.in_plane()), [&](int64_t begin, int64_t end) {
      for (int64_t nc = begin; nc < end; ++nc) {
        const int64_t n = nc / g.in_channels, c = nc % g.in_channels;
        T* dst = dx + (first * g.in_channels + nc) * g.in_plane();
        const T* src = cols + c * kh * kw * columns + n * plane;  // rows (c, i, j) of the (n, y, x) columns
        for (int64_t y = 0; y < g.out_h; ++y)
          for (int64_t i = 0; i < kh; ++i) {
            T* row = dst + (y * kh + i) * g.in_w;
            for (int64_t x = 0; x < g.out_w; ++x)
              for (int64_t j = 0; j < kw; ++j) row[x * kw + j] = src[(i * kw + j) * columns + y * g.out_w + x];
          }
      }
    });
  }
}

// Images per GEMM in conv_backward_input_merged: as images_per_gemm, but with at most 8M floats
// (32 MB) of cols at once: every batch of the recipe fits, while R50's layer3.0 at 512 x 512,
// batch 8, would hold 75 MB (per image it held 9 MB) and takes three passes instead.
int64_t input_grad_images_per_gemm(const ConvGeometry& g) {
  constexpr int64_t kMaxColFloats = int64_t(8) << 20;
  return std::clamp<int64_t>(kMaxColFloats / std::max<int64_t>(g.col_rows() * g.out_plane(), 1), 1, images_per_gemm(g));
}

// dx of a float convolution over small maps that conv_backward_input does not give to the direct
// kernel: the batch's images share one GEMM per group, cols = weight^T @ dout over [og, images * plane], then col2im
// per image. One GEMM per image packed the weights once per image and ran on 48-768 columns
// (layer4.0's input gradient: 4 products of 2304 x 48 x 512).
void conv_backward_input_merged(const ConvGeometry& g, const float* dout, const float* weight, float* dx) {
  const int64_t og = g.out_per_group(), rows = g.col_rows(), plane = g.out_plane();
  const int64_t merged = input_grad_images_per_gemm(g), ld = merged * plane;
  float* staging = scratch<float>((og + rows) * ld);
  float* col = staging + og * ld;
  for (int64_t n0 = 0; n0 < g.batch; n0 += merged) {
    const int64_t images = std::min(merged, g.batch - n0), width = images * plane;
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      gather_channel_major(g, dout, n0, images, grp * og, og, staging);
      gemm<float>(true, false, rows, width, og, weight + grp * og * rows, rows, staging, width, col, width);
      for (int64_t i = 0; i < images; ++i)
        col2im(g, col + i * plane, dx + ((n0 + i) * g.in_channels + grp * g.in_per_group()) * g.in_plane(), width);
    }
  }
}

}  // namespace

template <typename T>
void conv_backward_input(const ConvGeometry& g, const T* dout, const T* weight, T* dx) {
  if constexpr (std::is_same_v<T, float>) {
    const int64_t reach_h = g.dilation.h * (g.kernel_h - 1), reach_w = g.dilation.w * (g.kernel_w - 1);
    if (use_implicit_gemm(g) && g.stride == Size2(1) && g.padding.h <= reach_h && g.padding.w <= reach_w) {
      // The adjoint of a stride-1 convolution is a convolution of dout with the spatially flipped,
      // in/out-swapped kernel and padding dilation * (k - 1) - padding, which the direct kernel
      // runs reading the weights flipped in place: no col2im scatter. Where the direct kernel does
      // not apply, weight^T @ dout + col2im (below) beats that convolution through the GEMM, whose
      // flipped copy of the kernel and implicit im2col over narrow rows cost more than the scatter
      // (input gradient, batch 4: layer4's 512 channels at 8 x 6 6.4 -> 5.0 ms, 256 channels at
      // 4 x 3 0.57 -> 0.48 ms, 64 channels at 400 x 3 5.5 -> 2.6 ms; 64 channels at 64 x 20 with
      // AVX2 tiles only 3.1 -> 2.4 ms). So does it where the direct kernel would run flat tiles
      // over maps of at most 192 pixels and dout has >= 128 channels per group (weight^T @ dout
      // over direct, medians of 9 alternated rounds, batch 4: 8 x 7 maps 0.78 at 128 channels,
      // 0.76 at 256, 0.85 at 512; 16 x 12 maps 1.02, 0.89-0.95, 0.80). The direct kernel stays
      // ahead with 64 channels (8 x 7: 1.24, 16 x 12: 1.05), over wider maps (16 x 16: 1.25,
      // 32 x 24: 1.34) and with row-pair tiles over 8 x 8 maps (128 channels 1.27, 512 0.99).
      ConvGeometry t = g;
      t.in_channels = g.out_channels, t.in_h = g.out_h, t.in_w = g.out_w;
      t.out_channels = g.in_channels, t.out_h = g.in_h, t.out_w = g.in_w;
      t.padding = Size2(reach_h - g.padding.h, reach_w - g.padding.w);
      const bool scatter_wins = g.out_per_group() >= 128 && g.out_plane() <= 192 && direct_conv_flat_tile(t);
      if (!scatter_wins && direct_conv_applies(t)) {
        note_conv_route("conv of dout with the flipped kernel");
        if (!direct_input_grad(t)) {  // AVX2 tiles only, > 64 channels: the GEMM is faster (see there)
          note_conv_route("gemm, implicit im2col");
          const Tensor flipped = flipped_kernel(g, weight);
          return conv_forward_implicit(t, dout, flipped.data<float>(), nullptr, dx);
        }
        if (conv_route_wanted()) note_conv_route(("direct " + direct_conv_tile(t)).c_str());
        return conv_forward_direct(t, dout, weight, nullptr, dx, /*flipped_weight=*/true);
      }
    }
  }
  if (non_overlapping_windows(g)) {
    note_conv_route("gemm, windows tile the input");
    return conv_backward_input_disjoint(g, dout, weight, dx);
  }
  if constexpr (std::is_same_v<T, float>) {
    if (!g.pointwise() && use_implicit_gemm(g) && input_grad_images_per_gemm(g) > 1) {
      note_conv_route("gemm over the batch + col2im");
      return conv_backward_input_merged(g, dout, weight, dx);
    }
  }
  note_conv_route(g.pointwise() ? "gemm" : "gemm + col2im");
  const int64_t og = g.out_per_group(), rows = g.col_rows(), plane = g.out_plane();
  T* col = g.pointwise() ? nullptr : scratch<T>(rows * plane);
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      const T* dg = dout + (n * g.out_channels + grp * og) * plane;
      const T* wg = weight + grp * og * rows;
      T* dxg = dx + (n * g.in_channels + grp * g.in_per_group()) * g.in_plane();
      if (g.pointwise()) {
        gemm<T>(true, false, rows, plane, og, wg, rows, dg, plane, dxg, plane);
      } else {
        gemm<T>(true, false, rows, plane, og, wg, rows, dg, plane, col, plane);
        col2im(g, col, dxg, plane);
      }
    }
}

// dweight = sum over images of dout[n] @ im2col(x[n])^T, accumulated in image order (deterministic).
template <typename T>
void conv_backward_weight(const ConvGeometry& g, const T* dout, const T* x, T* dweight) {
  const int64_t og = g.out_per_group(), rows = g.col_rows(), plane = g.out_plane();
  if constexpr (std::is_same_v<T, float>) {
    if (direct_weight_grad_applies(g)) {
      note_conv_route("direct dot products");
      return conv_backward_weight_direct(g, dout, x, dweight);
    }
    if (framed_weight_grad_applies(g)) {
      note_conv_route("framed tap rows");
      return conv_backward_weight_framed(g, dout, x, dweight);
    }
    if (use_implicit_gemm(g)) {
      note_conv_route("gemm, implicit im2col");
      return conv_backward_weight_implicit(g, dout, x, dweight);
    }
  }
  note_conv_route(g.pointwise() ? "gemm" : "im2col + gemm");
  if (g.batch == 0) std::fill(dweight, dweight + g.out_channels * rows, T(0));
  T* col = g.pointwise() ? nullptr : scratch<T>(rows * plane);
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      const T* dg = dout + (n * g.out_channels + grp * og) * plane;
      const T* xg = x + (n * g.in_channels + grp * g.in_per_group()) * g.in_plane();
      const T* b = xg;
      if (!g.pointwise()) {
        im2col(g, xg, col);
        b = col;
      }
      gemm<T>(false, true, og, rows, plane, dg, plane, b, plane, dweight + grp * og * rows, rows, n > 0);
    }
}

// y[n, c, :] += bias[c]
template <typename T>
void add_channel_bias(T* y, int64_t batch, int64_t channels, int64_t plane, const T* bias) {
  parallel_for(0, batch * channels, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(plane, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t i = begin; i < end; ++i)
                   for (T *p = y + i * plane, *e = p + plane; p < e; ++p) *p += bias[i % channels];
               });
}

template void conv_forward<float>(const ConvGeometry&, const float*, const float*, const float*, float*);
template void conv_forward<double>(const ConvGeometry&, const double*, const double*, const double*, double*);
template void conv_backward_input<float>(const ConvGeometry&, const float*, const float*, float*);
template void conv_backward_input<double>(const ConvGeometry&, const double*, const double*, double*);
template void conv_backward_weight<float>(const ConvGeometry&, const float*, const float*, float*);
template void conv_backward_weight<double>(const ConvGeometry&, const double*, const double*, double*);
template void add_channel_bias<float>(float*, int64_t, int64_t, int64_t, const float*);
template void add_channel_bias<double>(double*, int64_t, int64_t, int64_t, const double*);

int64_t exchange_tiled_transpose_chunk_bytes(int64_t bytes) { return tiled_transpose_chunk_bytes.exchange(bytes); }

}  // namespace mrcnn::cpu
