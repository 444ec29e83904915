// Direct float32 convolution without an im2col matrix ("indirect GEMM"). It is a GEMM micro-tile
// (output channels x output pixels of one row, accumulators in registers) whose B operand is read
// straight from a zero-padded copy of the input through a table of tap offsets: tap k = (c, ki, kj)
// of the pixels starting at p lies at base(p) + offset[k]. The implicit-im2col GEMM spends a fifth
// of its time gathering B slivers; here nothing is gathered. A stride s is handled by splitting the
// padded input into s x s phases (padded pixel (y, x) goes to phase (y % s, x % s) at
// (y / s, x / s)), so consecutive output pixels read consecutive floats at every tap, and the padding
// means no tap needs a bounds check. The same padded copy serves the weight gradient (bottom of the
// file), computed as dot products along output rows.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "ops/conv_geometry.h"
#include "ops/gemm.h"
#include "tensor/parallel.h"

namespace mrcnn::cpu {

namespace {

constexpr int64_t kMaxDepth = 384;   // taps per pass: one tile's input rows (~12 KB) stay in L1
constexpr int64_t kMaxBlockRows = 96;  // output channels per block: their packed weights stay in L2

// Where the padded, phase-split input keeps its pixels.
struct PaddedLayout {
  int64_t rows = 0, cols = 0;       // of one phase
  int64_t phase_plane = 0;          // floats per phase
  int64_t channel_stride = 0;       // floats per channel (all phases)

  explicit PaddedLayout(const ConvGeometry& g) {
    rows = (g.in_h + 2 * g.padding.h + g.stride.h - 1) / g.stride.h;
    cols = (g.in_w + 2 * g.padding.w + g.stride.w - 1) / g.stride.w;
    // Channel planes a multiple of 4 KB apart would all map to the same cache sets, and a tile reads
    // the same rows of many channels: keep the stride off such multiples.
    phase_plane = (rows * cols + 15) / 16 * 16;
    if (phase_plane % 1024 == 0) phase_plane += 16;
    channel_stride = g.stride.h * g.stride.w * phase_plane;
  }
  // Floats read past the last channel by the last tile of a row (its lanes beyond out_w; tiles are
  // at most 32 wide).
  int64_t slack() const { return cols + 32; }
};

// Whether some tap k of a kernel of `size` (dilation d, stride s) lies in phase p: (k * d) % s == p.
bool phase_used(int64_t size, int64_t dilation, int64_t stride, int64_t phase) {
  for (int64_t k = 0; k < size; ++k)
    if (k * dilation % stride == phase) return true;
  return false;
}

// padded[n][c] <- x[n][c] with zero padding, split into stride phases (those that taps read).
void pad_input(const ConvGeometry& g, const PaddedLayout& layout, const float* x, float* padded) {
  const int64_t sh = g.stride.h, sw = g.stride.w, planes = g.batch * g.in_channels;
  parallel_for(0, planes, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(layout.channel_stride, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t plane = begin; plane < end; ++plane) {
                   const float* src = x + plane * g.in_plane();
                   float* dst = padded + plane * layout.channel_stride;
                   for (int64_t py = 0; py < sh; ++py)
                     for (int64_t px = 0; px < sw; ++px) {
                       if (!phase_used(g.kernel_h, g.dilation.h, sh, py) || !phase_used(g.kernel_w, g.dilation.w, sw, px))
                         continue;  // no tap reads it: a 1x1 stride-2 conv needs 1 phase of 4
                       float* phase = dst + (py * sw + px) * layout.phase_plane;
                       // Phase column q holds input column q * sw + px - padding: in [0, in_w) for q in [lo, hi).
                       const int64_t first = px - g.padding.w;
                       const int64_t lo = std::min(layout.cols, first >= 0 ? 0 : (-first + sw - 1) / sw);
                       const int64_t hi = std::max(lo, std::min(layout.cols, (g.in_w - first + sw - 1) / sw));
                       for (int64_t r = 0; r < layout.rows; ++r) {
                         const int64_t y = r * sh + py - g.padding.h;
                         float* row = phase + r * layout.cols;
                         if (y < 0 || y >= g.in_h) {
                           std::fill(row, row + layout.cols, 0.0f);
                           continue;
                         }
                         const float* in = src + y * g.in_w + first;
                         std::fill(row, row + lo, 0.0f);
                         if (sw == 1) std::copy(in + lo, in + hi, row + lo);
                         else
                           for (int64_t q = lo; q < hi; ++q) row[q] = in[q * sw];
                         std::fill(row + hi, row + layout.cols, 0.0f);
                       }
                     }
                 }
               });
}

// x padded and phase-split into the calling thread's buffer, kept between calls (no fresh pages).
const float* padded_copy(const ConvGeometry& g, const PaddedLayout& layout, const float* x) {
  thread_local std::vector<float> padded;
  float* data = grown(padded, g.batch * g.in_channels * layout.channel_stride + layout.slack());
  pad_input(g, layout, x, data);
  return data;
}

// offsets[k] for the taps k = (c, ki, kj) of one group, relative to the group's first channel.
std::vector<int64_t> tap_offsets(const ConvGeometry& g, const PaddedLayout& layout) {
  std::vector<int64_t> offsets;
  offsets.reserve(static_cast<size_t>(g.col_rows()));
  for (int64_t c = 0; c < g.in_per_group(); ++c)
    for (int64_t ki = 0; ki < g.kernel_h; ++ki)
      for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
        const int64_t dy = ki * g.dilation.h, dx = kj * g.dilation.w;
        const int64_t phase = dy % g.stride.h * g.stride.w + dx % g.stride.w;
        offsets.push_back(c * layout.channel_stride + phase * layout.phase_plane + dy / g.stride.h * layout.cols +
                          dx / g.stride.w);
      }
  return offsets;
}

// Where weight (o, tap) of one group lies: group_base + o * row_stride + tap_offset[tap]. For a
// plain convolution that is the weight's own [og][K] layout; for the input gradient of a stride-1
// convolution (run as a convolution of dout) it is the original kernel flipped and in/out-swapped,
// read in place instead of copied into a flipped tensor first.
struct WeightLayout {
  int64_t group_stride = 0, row_stride = 0;
  std::vector<int64_t> tap_offset;

  WeightLayout(const ConvGeometry& g, bool flipped) {
    const int64_t taps = g.kernel_h * g.kernel_w;
    if (!flipped) {
      group_stride = g.out_per_group() * g.col_rows(), row_stride = g.col_rows();
      for (int64_t t = 0; t < g.col_rows(); ++t) tap_offset.push_back(t);
      return;
    }
    // The original weight is [in_channels][out_per_group][kh][kw] in g's terms (g's input is the
    // original's output): tap (c, ki, kj) of row o is weight[grp * in_per_group + c][o][kh-1-ki][kw-1-kj].
    group_stride = g.in_per_group() * g.out_per_group() * taps, row_stride = taps;
    for (int64_t c = 0; c < g.in_per_group(); ++c)
      for (int64_t tap = 0; tap < taps; ++tap) tap_offset.push_back(c * g.out_per_group() * taps + taps - 1 - tap);
  }
};

// R rows of weights -> dst[t * R + r], tap-major with one read stream per row; a constant R lets the
// compiler unroll the row loop.
template <int R>
void pack_sliver(const float* src, int64_t row_stride, const int64_t* tap_offset, int64_t k, float* dst) {
  for (int64_t t = 0; t < k; ++t, dst += R) {
    const float* column = src + tap_offset[t];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) dst[r] = column[r * row_stride];
  }
}

// Weights -> per group, slivers of `rows` output channels stored k-major (dst[k * rows + r]), rows
// past og zero.
void pack_weights(const ConvGeometry& g, int64_t rows, const float* weight, const WeightLayout& layout, float* packed) {
  const int64_t og = g.out_per_group(), k = g.col_rows(), slivers = (og + rows - 1) / rows;
  const int64_t* taps = layout.tap_offset.data();
  parallel_for(0, g.groups * slivers, 1, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      const int64_t grp = s / slivers, o0 = s % slivers * rows;
      float* dst = packed + s * rows * k;
      const int64_t valid = std::min(rows, og - o0), stride = layout.row_stride;
      const float* src = weight + grp * layout.group_stride + o0 * stride;
      if (valid == rows && rows == 16) pack_sliver<16>(src, stride, taps, k, dst);
      else if (valid == rows && rows == 8) pack_sliver<8>(src, stride, taps, k, dst);
      else if (valid == rows && rows == 6) pack_sliver<6>(src, stride, taps, k, dst);
      else
        for (int64_t t = 0; t < k; ++t, dst += rows) {
          for (int64_t r = 0; r < valid; ++r) dst[r] = src[r * stride + taps[t]];
          for (int64_t r = valid; r < rows; ++r) dst[r] = 0.0f;
        }
    }
  });
}

// Where a flat tile's lanes go (see choose_tile): lane runs of one vector (16 lanes with AVX-512, 8
// with AVX2) that fall in one output row each. Pixels in the padded frame's columns (ox >= out_w)
// belong to no run.
struct FlatStore {
  static constexpr int kMaxRuns = 4;  // 16 lanes over rows of >= 6 frame columns touch <= 4 rows
  struct Run {
    __mmask16 lanes = 0;  // the run's lanes in the vector, consecutive
    int64_t first = 0;    // output pixel (oy * out_w + ox) of its first lane
    int64_t length = 0;
  };
  int runs[2] = {0, 0};  // per vector of the tile (32 lanes with AVX-512, 16 with AVX2)
  Run run[2][kMaxRuns];
  int64_t rows = 0;      // output channels to store: the tile's, or fewer in the last sliver
};

// C tile (R x 8V, rows ldc apart) = [C or bias or 0] + sum over kc taps of a[k] x base[offsets[k] + 0..8V-1],
// a holding R weights per tap. AVX2: 8-float vectors, R x V accumulators in registers. With kRowPair
// (V = 2) the second vector is the next output row's 8 pixels (row_step floats on): maps 8 pixels
// wide fill every lane. kFlat as in kernel_avx512 below: AVX2 has no compress, so each run's lanes
// are permuted down to lane 0 and stored with a mask.
template <int R, int V, bool kRowPair = false, bool kFlat = false>
__attribute__((target("avx2,fma"))) void kernel_avx2(int64_t kc, const float* a, const float* base,
                                                     const int64_t* offsets, int64_t row_step, float* c,
                                                     int64_t ldc, const float* bias, bool accumulate,
                                                     const FlatStore* flat) {
  __m256 acc[R][V];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k, a += R) {
    const float* b = base + offsets[k];
    __m256 bv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) bv[v] = _mm256_loadu_ps(kRowPair ? b + v * row_step : b + 8 * v);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m256 w = _mm256_broadcast_ss(a + r);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] = _mm256_fmadd_ps(w, bv[v], acc[r][v]);
    }
  }
  if constexpr (kFlat) {
    // Lane j of a run's permuted vector is the run's lane (first lane + j); its store keeps lanes < length.
    const __m256i lane_index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i from[V][FlatStore::kMaxRuns], keep[V][FlatStore::kMaxRuns];
    for (int v = 0; v < V; ++v)
      for (int i = 0; i < flat->runs[v]; ++i) {
        const FlatStore::Run& run = flat->run[v][i];
        from[v][i] = _mm256_add_epi32(lane_index, _mm256_set1_epi32(__builtin_ctz(run.lanes)));
        keep[v][i] = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(run.length)), lane_index);
      }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      if (r >= flat->rows) break;
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v)
        for (int i = 0; i < flat->runs[v]; ++i) {
          float* out = c + r * ldc + flat->run[v][i].first;
          __m256 value = _mm256_permutevar8x32_ps(acc[r][v], from[v][i]);
          if (accumulate) value = _mm256_add_ps(value, _mm256_maskload_ps(out, keep[v][i]));
          else if (bias) value = _mm256_add_ps(value, _mm256_set1_ps(bias[r]));
          _mm256_maskstore_ps(out, keep[v][i], value);
        }
    }
    return;
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      float* out = c + r * ldc + 8 * v;
      __m256 value = acc[r][v];
      if (accumulate) value = _mm256_add_ps(value, _mm256_loadu_ps(out));
      else if (bias) value = _mm256_add_ps(value, _mm256_set1_ps(bias[r]));
      _mm256_storeu_ps(out, value);
    }
}

// The same with 16-float AVX-512 vectors: 32 registers hold larger tiles, so fewer loads per
// multiply (the broadcast weights fold into the FMAs as memory operands). With kRowPair (V = 1) a
// tile is two output rows of 8 pixels, the second row's inputs row_step floats after the first's:
// maps 8 pixels wide (FPN's P5, ResNet's last stage at 256 px) then still fill every lane. With
// kFlat the lanes are consecutive positions of the padded frame, spanning output rows; `flat` says
// which lanes land where (c is then the first output channel's plane, and the frame's columns are
// dropped). The sums are the same FMAs in the same order either way: bit-identical outputs.
template <int R, int V, bool kRowPair = false, bool kFlat = false>
__attribute__((target("avx512f"))) void kernel_avx512(int64_t kc, const float* a, const float* base,
                                                      const int64_t* offsets, int64_t row_step, float* c, int64_t ldc,
                                                      const float* bias, bool accumulate, const FlatStore* flat) {
  __m512 acc[R][V];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k, a += R) {
    const float* b = base + offsets[k];
    __m512 bv[V];
    if constexpr (kRowPair) {
      static_assert(V == 1, "a row pair fills one vector");
      // Lanes 0-7 from the first row, lanes 8-15 from the second: two masked loads, no shuffle.
      bv[0] = _mm512_mask_loadu_ps(_mm512_maskz_loadu_ps(0x00FF, b), 0xFF00, b + row_step - 8);
    } else {
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) bv[v] = _mm512_loadu_ps(b + 16 * v);
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 w = _mm512_set1_ps(a[r]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(w, bv[v], acc[r][v]);
    }
  }
  if constexpr (kFlat) {
    // Each run's lanes are moved down to lane 0 and stored (masked) at its first output pixel.
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      if (r >= flat->rows) break;
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v)
        for (int i = 0; i < flat->runs[v]; ++i) {
          const FlatStore::Run& run = flat->run[v][i];
          float* out = c + r * ldc + run.first;
          const auto store = static_cast<__mmask16>((1u << run.length) - 1);
          __m512 value = _mm512_maskz_compress_ps(run.lanes, acc[r][v]);
          if (accumulate) value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(store, out));
          else if (bias) value = _mm512_add_ps(value, _mm512_set1_ps(bias[r]));
          _mm512_mask_storeu_ps(out, store, value);
        }
    }
    return;
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      float* out = c + r * ldc + 16 * v;
      __m512 value = acc[r][v];
      if (accumulate) value = _mm512_add_ps(value, _mm512_loadu_ps(out));
      else if (bias) value = _mm512_add_ps(value, _mm512_set1_ps(bias[r]));
      _mm512_storeu_ps(out, value);
    }
}

using TileKernel = void (*)(int64_t kc, const float* a, const float* base, const int64_t* offsets, int64_t row_step,
                            float* c, int64_t ldc, const float* bias, bool accumulate, const FlatStore* flat);

// One micro-tile shape: rows (output channels) x cols (consecutive output pixels: of one output row,
// of two 8-pixel rows when row_pair, or of the padded frame when flat) and its kernel.
struct Tile {
  int64_t rows = 0, cols = 0;
  TileKernel kernel = nullptr;
  bool row_pair = false;
  const char* name = "";
  bool flat = false;
  int64_t lanes = 16;  // floats per vector: 16 (AVX-512) or 8 (AVX2)
};

// The largest tile choose_tile picks (8 x 32 and 16 x 16 hold 256 floats; this leaves room for 16 x 32).
constexpr int64_t kMaxTileFloats = 16 * 32;

// A partial tile (fewer output channels or pixels) goes through a full scratch tile; only its
// rows x cols part is written back.
void edge_tile(const Tile& tile, int64_t kc, const float* a, const float* base, const int64_t* offsets,
               int64_t row_step, float* c, int64_t ldc, const float* bias, bool accumulate, int64_t rows, int64_t cols) {
  alignas(64) float scratch[kMaxTileFloats];
  tile.kernel(kc, a, base, offsets, row_step, scratch, tile.cols, nullptr, false, nullptr);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const float start = accumulate ? c[r * ldc + j] : bias ? bias[r] : 0.0f;
      c[r * ldc + j] = start + scratch[r * tile.cols + j];
    }
}

// Share of a row's tiles' lanes that hold real output pixels.
double lane_use(int64_t out_w, int64_t cols) { return double(out_w) / double((out_w + cols - 1) / cols * cols); }

// The same for flat tiles: consecutive positions of the padded frame (frame_cols per row), so a tile
// runs on from one output row into the next and only the frame's columns past out_w and the last
// tile's tail stay idle. 24 pixels wide (frame 26): 0.90 of the lanes, where 32-pixel row tiles use 0.75.
double flat_lane_use(const ConvGeometry& g, int64_t frame_cols, int64_t cols) {
  const int64_t positions = (g.out_h - 1) * frame_cols + g.out_w;
  return double(g.out_plane()) / double((positions + cols - 1) / cols * cols);
}

// Flat tiles must beat row tiles by this share of lanes: their stores move each run of lanes down
// to lane 0 first.
constexpr double kFlatMargin = 0.05;

std::atomic<bool> g_allow_flat{true}, g_allow_direct{true}, g_prefer_direct{false};

// Whether the direct kernel takes every convolution it applies to: on AVX-512 CPUs, or with the
// AVX2 rules (direct_conv_forward, direct_input_grad) set aside by prefer_direct_conv.
bool direct_everywhere() { return use_avx512() || g_prefer_direct.load(std::memory_order_relaxed); }

// The tile that fills the most lanes; none (cols = 0) when even that leaves a quarter idle.
Tile choose_tile(const ConvGeometry& g) {
  if (gemm_kernel() != GemmKernel::Packed) return {};
  Tile best;
  double best_use = 0.0;
  const auto consider = [&](double use, const Tile& tile) {  // ties go to the earlier candidate
    if (use > best_use) best_use = use, best = tile;
  };
  const bool flat_allowed = g_allow_flat.load(std::memory_order_relaxed);
  const int64_t frame_cols = PaddedLayout(g).cols;
  if (use_avx512()) {
    // Measured on 64-channel 3x3 convs (Zen 4): 8x32, 6x32, 4x64 and 16x16 within noise of each
    // other, 12x32 and 24x16 slower (register spills).
    consider(lane_use(g.out_w, 32), {8, 32, kernel_avx512<8, 2>, false, "avx512 8x32"});
    consider(lane_use(g.out_w, 16), {16, 16, kernel_avx512<16, 1>, false, "avx512 16x16"});
    if (g.out_w == 8) consider(1.0, {16, 16, kernel_avx512<16, 1, true>, true, "avx512 16x(2x8)"});
    // Narrower rows in the pair's two 8-lane halves, each half stored as its own run: 7 wide fills 0.875.
    if (flat_allowed && g.out_w < 8)
      consider(double(g.out_w) / 8.0 - kFlatMargin,
               {16, 16, kernel_avx512<16, 1, true, true>, true, "avx512 16x(2x8) flat", true});
    if (flat_allowed && g.out_h > 1 && frame_cols >= 6) {
      consider(flat_lane_use(g, frame_cols, 32) - kFlatMargin,
               {8, 32, kernel_avx512<8, 2, false, true>, false, "avx512 8x32 flat", true});
      consider(flat_lane_use(g, frame_cols, 16) - kFlatMargin,
               {16, 16, kernel_avx512<16, 1, false, true>, false, "avx512 16x16 flat", true});
    }
    return best_use >= 0.75 ? best : Tile{};
  }
  // AVX2's 6x16 measured ~10% slower than AVX-512's 8x32. The same candidates with 8-float vectors:
  // 16 lanes are two vectors, so a row pair is simply two rows of 8.
  consider(lane_use(g.out_w, 16), {6, 16, kernel_avx2<6, 2>, false, "avx2 6x16", false, 8});
  if (g.out_w == 8) consider(1.0, {6, 16, kernel_avx2<6, 2, true>, true, "avx2 6x(2x8)", false, 8});
  if (flat_allowed && g.out_w < 8)
    consider(double(g.out_w) / 8.0 - kFlatMargin, {6, 16, kernel_avx2<6, 2, true, true>, true, "avx2 6x(2x8) flat", true, 8});
  if (flat_allowed && g.out_h > 1 && frame_cols >= 6)
    consider(flat_lane_use(g, frame_cols, 16) - kFlatMargin, {6, 16, kernel_avx2<6, 2, false, true>, false, "avx2 6x16 flat", true, 8});
  return best_use >= 0.75 ? best : Tile{};
}

// The runs of a flat tile starting at frame position f0 (see FlatStore), in vectors of `lanes` floats.
void flat_runs(int64_t f0, int64_t frame_cols, int64_t vectors, int64_t lanes, const ConvGeometry& g,
               FlatStore& store) {
  for (int v = 0; v < vectors; ++v) {
    int count = 0;
    for (int64_t lane = 0; lane < lanes;) {
      const int64_t f = f0 + lanes * v + lane, oy = f / frame_cols, ox = f % frame_cols;
      if (oy >= g.out_h) break;
      if (ox >= g.out_w) {
        lane += frame_cols - ox;
        continue;
      }
      const int64_t length = std::min(lanes - lane, g.out_w - ox);
      store.run[v][count++] = {static_cast<__mmask16>(((1u << length) - 1) << lane), oy * g.out_w + ox, length};
      lane += length;
    }
    store.runs[v] = count;
  }
}

// The runs of a row-pair tile over output rows oy and oy + 1 (out_w < 8 pixels each): with 16-lane
// vectors lanes 0-7 hold row oy and lanes 8-15 the next; with 8-lane vectors each vector holds a row.
void pair_runs(int64_t oy, int64_t lanes, const ConvGeometry& g, FlatStore& store) {
  const auto row = static_cast<__mmask16>((1u << g.out_w) - 1);
  const bool second = oy + 1 < g.out_h;
  store.run[0][0] = {row, oy * g.out_w, g.out_w};
  if (lanes == 16) {
    store.run[0][1] = {static_cast<__mmask16>(row << 8), (oy + 1) * g.out_w, g.out_w};
    store.runs[0] = second ? 2 : 1;
  } else {
    store.run[1][0] = {row, (oy + 1) * g.out_w, g.out_w};
    store.runs[0] = 1, store.runs[1] = second ? 1 : 0;
  }
}

// n parts of near-equal size, each a multiple of `unit` (the last may be shorter).
int64_t balanced_part(int64_t total, int64_t max_part, int64_t unit) {
  const int64_t parts = (total + max_part - 1) / max_part;
  return ((total + parts - 1) / parts + unit - 1) / unit * unit;
}

}  // namespace

void allow_flat_conv_tiles(bool allowed) { g_allow_flat.store(allowed, std::memory_order_relaxed); }
void allow_direct_conv(bool allowed) { g_allow_direct.store(allowed, std::memory_order_relaxed); }
void prefer_direct_conv(bool preferred) { g_prefer_direct.store(preferred, std::memory_order_relaxed); }

std::string direct_conv_tile(const ConvGeometry& g) { return direct_conv_applies(g) ? choose_tile(g).name : ""; }
bool direct_conv_flat_tile(const ConvGeometry& g) { return direct_conv_applies(g) && choose_tile(g).flat; }

bool direct_conv_forward(const ConvGeometry& g) {
  // AVX2's 6x16 tile against the implicit-im2col GEMM, forward, batch 4, best of 11 alternated
  // rounds on a Zen 3 (bench_conv_flat_tiles gemm): GEMM / direct 0.76-0.93 from 128 channels
  // (32 x 28 to 16 x 16 maps, row and flat tiles) and 0.75-0.90 on row pairs (8 x 8 and 8 x 7 maps,
  // 64-512 channels); even with 64 channels over wide maps (0.96-1.0); the 7x7 stem (one input
  // channel, 49 taps) 1.09-1.18. Input gradients: direct_input_grad.
  return direct_conv_applies(g) && (direct_everywhere() || (g.out_per_group() <= 64 && !choose_tile(g).row_pair));
}

bool direct_input_grad(const ConvGeometry& t) {
  // The flipped-kernel convolution t of a stride-1 input gradient: AVX2 tiles against that
  // convolution through the implicit-im2col GEMM (its flipped copy of the kernel included), batch 4,
  // on a Zen 3 (bench_conv_flat_tiles 9 rules, three runs): GEMM / direct 0.82-1.02 of the best
  // times with 128 channels over maps 22 to 64 pixels wide (the rounds' median ratios 0.84-0.94),
  // 0.92-1.11 on the mask head's 14 x 14; 256 channels at 16 x 14 and 16 x 16 even (0.84-1.06). The
  // direct kernel keeps 64 channels (its lead over weight^T @ dout + col2im holds there, and the
  // GEMM is no faster) and the row pairs of 8 x 8 maps (the GEMM took 1.2x its time with 64 and 128
  // channels, single calls alternated).
  return direct_conv_applies(t) && (direct_everywhere() || t.out_per_group() <= 64 || choose_tile(t).row_pair);
}

bool direct_conv_applies(const ConvGeometry& g) {
  // Tiles run along one output row: narrow rows would leave most lanes idle, and there the
  // batch-merged implicit GEMM is faster. A strided 1x1 conv's padded copy reads the whole input
  // to keep a quarter of it, which only many output channels amortise (measured: the implicit GEMM
  // ~1.3x faster for 64->128 at 128x128, the direct kernel ~1.2x faster for 256->512 at 64x64).
  if (!g_allow_direct.load(std::memory_order_relaxed)) return false;
  if (g.pointwise() || (g.kernel_h * g.kernel_w == 1 && g.out_per_group() < 256)) return false;
  return g.out_h > 0 && choose_tile(g).kernel != nullptr;
}

void conv_forward_direct(const ConvGeometry& g, const float* x, const float* weight, const float* bias, float* out,
                         bool flipped_weight) {
  const Tile tile = choose_tile(g);
  const PaddedLayout layout(g);
  const int64_t og = g.out_per_group(), depth = g.col_rows(), plane = g.out_plane();
  const int64_t slivers = (og + tile.rows - 1) / tile.rows;
  thread_local std::vector<float> packed;
  const float* padded_input = padded_copy(g, layout, x);
  float* packed_weights = grown(packed, g.groups * slivers * tile.rows * depth);
  pack_weights(g, tile.rows, weight, WeightLayout(g, flipped_weight), packed_weights);
  const std::vector<int64_t> offsets = tap_offsets(g, layout);

  // Work items: (image, group, block of output channels, band of tiles), each writing its own part
  // of `out`. A band holds at least 8 tiles so a block's packed weights serve several tiles.
  const int64_t block_rows = balanced_part(og, kMaxBlockRows, tile.rows), blocks = (og + block_rows - 1) / block_rows;
  const int64_t kc_max = balanced_part(depth, kMaxDepth, 1);
  struct Item {
    int64_t band, grp, o_begin, o_end;
    const float* image;  // the group's first padded input channel
    float* y;            // the group's first output channel
  };
  // Calls band_pass(store, item, k0, kc) for every item and depth pass, in pass order per item.
  const auto run_items = [&](int64_t bands, const auto& band_pass) {
    parallel_for(0, g.batch * g.groups * blocks * bands, 1, [&](int64_t begin, int64_t end) {
      FlatStore store;
      for (int64_t i = begin; i < end; ++i) {
        const int64_t blk = i / bands % blocks, grp = i / bands / blocks % g.groups, n = i / bands / blocks / g.groups;
        const Item item{i % bands, grp, blk * block_rows, std::min(og, (blk + 1) * block_rows),
                        padded_input + (n * g.in_channels + grp * g.in_per_group()) * layout.channel_stride,
                        out + (n * g.out_channels + grp * og) * plane};
        for (int64_t k0 = 0; k0 < depth; k0 += kc_max) band_pass(store, item, k0, std::min(kc_max, depth - k0));
      }
    });
  };
  const auto sliver = [&](const Item& item, int64_t o, int64_t k0) {
    return packed_weights + ((item.grp * slivers + o / tile.rows) * depth + k0) * tile.rows;
  };
  const auto bias_of = [&](const Item& item, int64_t o) { return bias ? bias + item.grp * og + o : nullptr; };

  if (tile.flat && !tile.row_pair) {
    const int64_t positions = (g.out_h - 1) * layout.cols + g.out_w;
    const int64_t tiles = (positions + tile.cols - 1) / tile.cols, band = 8;
    run_items((tiles + band - 1) / band, [&](FlatStore& store, const Item& item, int64_t k0, int64_t kc) {
      for (int64_t t = item.band * band; t < std::min(tiles, (item.band + 1) * band); ++t) {
        flat_runs(t * tile.cols, layout.cols, tile.cols / tile.lanes, tile.lanes, g, store);
        for (int64_t o = item.o_begin; o < item.o_end; o += tile.rows) {
          store.rows = std::min(tile.rows, item.o_end - o);
          tile.kernel(kc, sliver(item, o, k0), item.image + t * tile.cols, offsets.data() + k0, layout.cols,
                      item.y + o * plane, plane, bias_of(item, o), k0 > 0, &store);
        }
      }
    });
    return;
  }
  const int64_t rows_per_tile = tile.row_pair ? 2 : 1;
  const int64_t tiles_per_row = (g.out_w + tile.cols - 1) / tile.cols;
  const int64_t band = std::max<int64_t>(1, 8 / tiles_per_row) * rows_per_tile;
  run_items((g.out_h + band - 1) / band, [&](FlatStore& store, const Item& item, int64_t k0, int64_t kc) {
    const int64_t y_begin = item.band * band, y_end = std::min(g.out_h, y_begin + band);
    for (int64_t oy = y_begin; oy < y_end; oy += rows_per_tile)
      for (int64_t ox = 0; ox < g.out_w; ox += tile.cols) {
        const float* base = item.image + oy * layout.cols + ox;
        if (tile.flat) {  // a row pair whose halves are stored as runs: the store knows the valid lanes
          pair_runs(oy, tile.lanes, g, store);
          for (int64_t o = item.o_begin; o < item.o_end; o += tile.rows) {
            store.rows = std::min(tile.rows, item.o_end - o);
            tile.kernel(kc, sliver(item, o, k0), base, offsets.data() + k0, layout.cols, item.y + o * plane, plane,
                        bias_of(item, o), k0 > 0, &store);
          }
          continue;
        }
        // Valid lanes: the rest of the row, or of the row pair (one row when oy is the last).
        const int64_t cols = tile.row_pair ? 8 * std::min<int64_t>(2, y_end - oy) : std::min(tile.cols, g.out_w - ox);
        for (int64_t o = item.o_begin; o < item.o_end; o += tile.rows) {
          const float* a = sliver(item, o, k0);
          float* c = item.y + o * plane + oy * g.out_w + ox;
          const int64_t rows = std::min(tile.rows, item.o_end - o);
          if (rows == tile.rows && cols == tile.cols) {
            tile.kernel(kc, a, base, offsets.data() + k0, layout.cols, c, plane, bias_of(item, o), k0 > 0, nullptr);
          } else {
            edge_tile(tile, kc, a, base, offsets.data() + k0, layout.cols, c, plane, bias_of(item, o), k0 > 0, rows, cols);
          }
        }
      }
  });
}

// Weight gradient: dweight[o][k] = sum over images and output pixels p of dout[o][p] * x_k(p), where
// x_k(p) = padded[base(p) + offset[k]]. Both factors are contiguous along a row of output pixels,
// so vectors run along pixels: a micro-tile of kGradRows output channels x kGradTaps taps loads
// 4 + 6 vectors of 16 pixels per 24 FMAs, nothing is packed or transposed, and each accumulator's
// lanes are summed once at the end.
namespace {

constexpr int kGradRows = 4, kGradTaps = 6;
constexpr int64_t kGradTileBlock = 16;  // tap tiles per work item: their input rows stay in L1/L2
constexpr int64_t kGradBandPixels = 512;  // pixels per pass: partial sums go to memory once per pass
constexpr int64_t kGradMinPixels = 4096;  // shorter reductions: the lane sums cost too much

using GradSums = __m512[kGradRows][kGradTaps];

// sum[r][t] += d[r][dofs : dofs + 16] * x[t][xofs : xofs + 16], lanes outside `mask` zero when kMasked.
template <bool kMasked>
__attribute__((target("avx512f"), always_inline)) inline void grad_step(GradSums& sum, const float* const* d,
                                                                        int64_t dofs, const float* const* x,
                                                                        int64_t xofs, __mmask16 mask) {
  __m512 dv[kGradRows], xv[kGradTaps];
#pragma GCC unroll 4
  for (int r = 0; r < kGradRows; ++r)
    dv[r] = kMasked ? _mm512_maskz_loadu_ps(mask, d[r] + dofs) : _mm512_loadu_ps(d[r] + dofs);
#pragma GCC unroll 6
  for (int t = 0; t < kGradTaps; ++t)
    xv[t] = kMasked ? _mm512_maskz_loadu_ps(mask, x[t] + xofs) : _mm512_loadu_ps(x[t] + xofs);
#pragma GCC unroll 4
  for (int r = 0; r < kGradRows; ++r)
#pragma GCC unroll 6
    for (int t = 0; t < kGradTaps; ++t) sum[r][t] = _mm512_fmadd_ps(dv[r], xv[t], sum[r][t]);
}

// acc (kGradRows x kGradTaps vectors, in and out) += the lane-wise products of dout rows d[r] and
// tap rows x[t] over `rows` rows of out_w pixels (row strides d_step and x_step).
__attribute__((target("avx512f"))) void weight_grad_kernel(int64_t rows, int64_t out_w, const float* const* d,
                                                           int64_t d_step, const float* const* x, int64_t x_step,
                                                           float* acc) {
  GradSums sum;
#pragma GCC unroll 4
  for (int r = 0; r < kGradRows; ++r)
#pragma GCC unroll 6
    for (int t = 0; t < kGradTaps; ++t) sum[r][t] = _mm512_loadu_ps(acc + (r * kGradTaps + t) * 16);
  const int64_t full = out_w / 16 * 16;
  const auto tail = static_cast<__mmask16>((1u << (out_w - full)) - 1);
  for (int64_t row = 0; row < rows; ++row) {
    for (int64_t ox = 0; ox < full; ox += 16) grad_step<false>(sum, d, row * d_step + ox, x, row * x_step + ox, 0);
    if (tail) grad_step<true>(sum, d, row * d_step + full, x, row * x_step + full, tail);
  }
#pragma GCC unroll 4
  for (int r = 0; r < kGradRows; ++r)
#pragma GCC unroll 6
    for (int t = 0; t < kGradTaps; ++t) _mm512_storeu_ps(acc + (r * kGradTaps + t) * 16, sum[r][t]);
}

// The 16 lanes of a partial sum, added pairwise in a fixed order.
float lane_sum(const float* v) {
  float half[8];
  for (int i = 0; i < 8; ++i) half[i] = v[i] + v[i + 8];
  for (int i = 0; i < 4; ++i) half[i] += half[i + 4];
  return (half[0] + half[2]) + (half[1] + half[3]);
}

}  // namespace

bool direct_weight_grad_applies(const ConvGeometry& g) {
  // Measured against the implicit-im2col GEMM (backward of batch-2 convs, Zen 4): the ResNet stem
  // (3 channels) 1.5x faster, 64 channels ~1.1x, 128 even, 256 ~7% slower (each loaded vector
  // feeds 2.4 FMAs where the GEMM's packed slivers feed more); and each weight's 16 lanes are summed
  // at the end, which costs 1.5x at 512-pixel reductions.
  // Where the framed route applies, its tap-row kernel is faster still (64 channels at 64x56: 0.73x).
  return g_allow_direct.load(std::memory_order_relaxed) && gemm_kernel() == GemmKernel::Packed && use_avx512() &&
         !g.pointwise() && g.out_h > 0 &&
         lane_use(g.out_w, 16) >= 0.75 && g.in_per_group() <= 64 && g.batch * g.out_plane() >= kGradMinPixels &&
         !framed_weight_grad_applies(g);
}

void conv_backward_weight_direct(const ConvGeometry& g, const float* dout, const float* x, float* dweight) {
  const PaddedLayout layout(g);
  const int64_t og = g.out_per_group(), depth = g.col_rows(), plane = g.out_plane();
  const float* padded_input = padded_copy(g, layout, x);
  const std::vector<int64_t> offsets = tap_offsets(g, layout);
  const int64_t row_tiles = (og + kGradRows - 1) / kGradRows, tap_tiles = (depth + kGradTaps - 1) / kGradTaps;
  const int64_t tap_blocks = (tap_tiles + kGradTileBlock - 1) / kGradTileBlock;
  const int64_t band = std::max<int64_t>(1, (kGradBandPixels + g.out_w - 1) / g.out_w);
  constexpr int64_t kTileFloats = kGradRows * kGradTaps * 16;
  // Work items: (group, block of tap tiles, tile of output channels), each summing over every image
  // and pixel in one fixed order: results do not depend on the thread count.
  parallel_for(0, g.groups * tap_blocks * row_tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(static_cast<size_t>(kGradTileBlock * kTileFloats));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t rt = item % row_tiles, blk = item / row_tiles % tap_blocks, grp = item / row_tiles / tap_blocks;
      const int64_t o0 = rt * kGradRows, tile0 = blk * kGradTileBlock;
      const int64_t tiles = std::min(kGradTileBlock, tap_tiles - tile0);
      std::fill(acc.begin(), acc.begin() + tiles * kTileFloats, 0.0f);
      for (int64_t n = 0; n < g.batch; ++n) {
        const float* image = padded_input + (n * g.in_channels + grp * g.in_per_group()) * layout.channel_stride;
        for (int64_t y0 = 0; y0 < g.out_h; y0 += band) {
          const int64_t rows = std::min(band, g.out_h - y0);
          // Channels past og and taps past depth repeat the last valid one; their sums are dropped.
          const float* d[kGradRows];
          for (int r = 0; r < kGradRows; ++r)
            d[r] = dout + (n * g.out_channels + grp * og + std::min(o0 + r, og - 1)) * plane + y0 * g.out_w;
          for (int64_t tile = 0; tile < tiles; ++tile) {
            const float* xs[kGradTaps];
            for (int t = 0; t < kGradTaps; ++t)
              xs[t] = image + offsets[std::min((tile0 + tile) * kGradTaps + t, depth - 1)] + y0 * layout.cols;
            weight_grad_kernel(rows, g.out_w, d, g.out_w, xs, layout.cols, acc.data() + tile * kTileFloats);
          }
        }
      }
      for (int64_t tile = 0; tile < tiles; ++tile)
        for (int r = 0; r < kGradRows && o0 + r < og; ++r)
          for (int t = 0; t < kGradTaps; ++t) {
            const int64_t k = (tile0 + tile) * kGradTaps + t;
            if (k < depth)
              dweight[(grp * og + o0 + r) * depth + k] = lane_sum(acc.data() + tile * kTileFloats + (r * kGradTaps + t) * 16);
          }
    }
  });
}

}  // namespace mrcnn::cpu
