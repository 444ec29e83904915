// Single-threaded float GEMM in the GotoBLAS/BLIS layout: B is packed into KC x 16 slivers, A into
// 6 x KC slivers, and a 6x16 AVX2/FMA micro-kernel keeps 12 accumulators in registers. Compiled for
// AVX2+FMA with a target attribute and chosen at run time (ops/gemm.cpp), so one binary also runs on
// CPUs without AVX2 (through Eigen). C is split into shape-determined panels run in parallel; the k
// loop runs in the same order for every tile, so results do not depend on the thread count.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "ops/gemm.h"
#include "ops/simd_transpose.h"
#include "tensor/parallel.h"

namespace mrcnn::cpu {

// Eight k at a time: 16 row loads, two 8x8 transposes, 16 stores of 8 floats (the scalar loop
// stored one float per 64-byte row, and packing cost a third of a 1x1 conv's weight gradient).
__attribute__((target("avx2"))) void pack_column_runs(const float* const* columns, int64_t kc, float* dst) {
  static const float zeros[8] = {};
  int64_t k = 0;
  for (; k + 8 <= kc; k += 8) {
    for (int64_t half = 0; half < 2; ++half) {
      __m256 rows[8], cols[8];
      for (int i = 0; i < 8; ++i) {
        const float* run = columns[half * 8 + i];
        rows[i] = _mm256_loadu_ps(run ? run + k : zeros);
      }
      transpose8x8(rows, cols);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + (k + i) * kPackedNR + half * 8, cols[i]);
    }
  }
  for (; k < kc; ++k)
    for (int64_t c = 0; c < kPackedNR; ++c) dst[k * kPackedNR + c] = columns[c] ? columns[c][k] : 0.0f;
}

namespace {

constexpr int64_t kMR = 6;     // rows of C per micro-tile
constexpr int64_t kNR = kPackedNR;  // columns of C per micro-tile: two 8-float registers
constexpr int64_t kKC = 256;   // depth of one packed block: a 16 KB B sliver stays in L1
constexpr int64_t kMC = 96;    // rows of A per packed block: 96 KB, stays in L2
constexpr int64_t kNC = 3072;  // columns of B per packed block: 3 MB, stays in L3

// A float buffer aligned to a cache line: a packed B row of 16 floats is then exactly one line, and
// no 32-byte load straddles two lines (16-byte aligned malloc memory would split every other one).
class AlignedFloats {
 public:
  AlignedFloats() = default;
  AlignedFloats(const AlignedFloats&) = delete;
  AlignedFloats& operator=(const AlignedFloats&) = delete;
  ~AlignedFloats() { std::free(data_); }
  // Grows (contents not kept) to hold at least n floats.
  float* reserve(size_t n) {
    if (n > capacity_) {
      std::free(data_);
      const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
      data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!data_) throw std::bad_alloc();
      capacity_ = n;
    }
    return data_;
  }
  float* data() const { return data_; }

 private:
  float* data_ = nullptr;
  size_t capacity_ = 0;
};

// How to read op(A) (M x K) or op(B) (K x N) from a row-major buffer.
struct Operand {
  const float* data;
  int64_t ld;
  bool transposed;
  float at(int64_t row, int64_t col) const { return transposed ? data[col * ld + row] : data[row * ld + col]; }
};

// dst[k * 6 + r] = rows[r][k] for k < kc: eight k at a time as an 8x8 transpose (two rows of zeros),
// each transposed column stored as 4 + 2 floats. The scalar interleave cost as much as the arithmetic
// where few columns of B reuse each packed A element (1x1 convs' weight gradients).
__attribute__((target("avx2"))) void pack_six_rows(const float* const* rows, int64_t kc, float* dst) {
  int64_t k = 0;
  for (; k + 8 <= kc; k += 8) {
    __m256 in[8], out[8];
    for (int r = 0; r < 6; ++r) in[r] = _mm256_loadu_ps(rows[r] + k);
    in[6] = in[7] = _mm256_setzero_ps();
    transpose8x8(in, out);
    for (int i = 0; i < 8; ++i) {
      float* d = dst + (k + i) * 6;
      _mm_storeu_ps(d, _mm256_castps256_ps128(out[i]));
      _mm_storel_pi(reinterpret_cast<__m64*>(d + 4), _mm256_extractf128_ps(out[i], 1));
    }
  }
  for (; k < kc; ++k)
    for (int r = 0; r < 6; ++r) dst[k * 6 + r] = rows[r][k];
}

// A[i0 : i0 + mc, k0 : k0 + kc] -> slivers of kMR rows, each stored k-major (dst[k * kMR + r]);
// rows past mc are zero so the micro-kernel needs no edge cases.
void pack_a(const Operand& a, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst) {
  for (int64_t s = 0; s < mc; s += kMR, dst += kMR * kc) {
    const int64_t rows = std::min(kMR, mc - s);
    if (a.transposed) {  // op(A)[i][k] = data[k * ld + i]: the sliver's rows are contiguous
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = a.data + (k0 + k) * a.ld + i0 + s;
        for (int64_t r = 0; r < kMR; ++r) dst[k * kMR + r] = r < rows ? src[r] : 0.0f;
      }
    } else if (rows == kMR) {  // six row streams, written contiguously
      const float* src[kMR];
      for (int64_t r = 0; r < kMR; ++r) src[r] = a.data + (i0 + s + r) * a.ld + k0;
      pack_six_rows(src, kc, dst);
    } else {
      for (int64_t r = 0; r < kMR; ++r) {
        const float* src = a.data + (i0 + s + r) * a.ld + k0;
        for (int64_t k = 0; k < kc; ++k) dst[k * kMR + r] = r < rows ? src[k] : 0.0f;
      }
    }
  }
}

// B[k0 : k0 + kc, j0 : j0 + nc] -> slivers of kNR columns, k-major (dst[k * kNR + c]), zero-padded.
void pack_b(const Operand& b, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  for (int64_t s = 0; s < nc; s += kNR, dst += kNR * kc) {
    const int64_t cols = std::min(kNR, nc - s);
    if (!b.transposed && cols == kNR) {
      for (int64_t k = 0; k < kc; ++k) std::memcpy(dst + k * kNR, b.data + (k0 + k) * b.ld + j0 + s, sizeof(float) * kNR);
    } else if (!b.transposed) {
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t c = 0; c < kNR; ++c) dst[k * kNR + c] = c < cols ? b.data[(k0 + k) * b.ld + j0 + s + c] : 0.0f;
    } else {  // op(B)[k][j] = data[j * ld + k]: each column is a contiguous run of k
      const float* runs[kNR];
      for (int64_t c = 0; c < kNR; ++c) runs[c] = c < cols ? b.data + (j0 + s + c) * b.ld + k0 : nullptr;
      pack_column_runs(runs, kc, dst);
    }
  }
}

// C tile (6 x 16, row stride ldc) = or += packed A sliver x packed B sliver over kc.
__attribute__((target("avx2,fma"))) void micro_kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                                      bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  // The C tile's rows are ldc apart (often a multiple of 4 KB): fetch them while the k loop runs.
  for (int64_t r = 0; r < kMR; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + kNR - 1), _MM_HINT_T0);
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k, a += kMR, b += kNR) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    __m256 x = _mm256_broadcast_ss(a);
    c00 = _mm256_fmadd_ps(x, b0, c00), c01 = _mm256_fmadd_ps(x, b1, c01);
    x = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(x, b0, c10), c11 = _mm256_fmadd_ps(x, b1, c11);
    x = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(x, b0, c20), c21 = _mm256_fmadd_ps(x, b1, c21);
    x = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(x, b0, c30), c31 = _mm256_fmadd_ps(x, b1, c31);
    x = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(x, b0, c40), c41 = _mm256_fmadd_ps(x, b1, c41);
    x = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(x, b0, c50), c51 = _mm256_fmadd_ps(x, b1, c51);
  }
  const __m256 rows[kMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int64_t r = 0; r < kMR; ++r) {
    float* row = c + r * ldc;
    __m256 lo = rows[r][0], hi = rows[r][1];
    if (accumulate) {
      lo = _mm256_add_ps(lo, _mm256_loadu_ps(row));
      hi = _mm256_add_ps(hi, _mm256_loadu_ps(row + 8));
    }
    _mm256_storeu_ps(row, lo);
    _mm256_storeu_ps(row + 8, hi);
  }
}

// A partial tile goes through a full 6x16 scratch tile; only its rows x cols part is written back.
__attribute__((target("avx2,fma"))) void edge_kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                                     int64_t rows, int64_t cols, bool accumulate) {
  alignas(32) float tile[kMR * kNR];
  micro_kernel(kc, a, b, tile, kNR, false);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) c[r * ldc + j] = accumulate ? c[r * ldc + j] + tile[r * kNR + j] : tile[r * kNR + j];
}

}  // namespace

bool cpu_has_avx2_fma() {
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return supported;
}

namespace {
std::atomic<bool> g_allow_avx512{true};
}  // namespace

void allow_avx512(bool allowed) { g_allow_avx512.store(allowed, std::memory_order_relaxed); }

bool use_avx512() {
  static const bool supported = __builtin_cpu_supports("avx512f");
  return supported && cpu_has_avx2_fma() && g_allow_avx512.load(std::memory_order_relaxed);
}

namespace {

// Where the block loops find packed blocks: B block (j0, k0) and A block (i0, k0), either packed on
// demand into a per-thread buffer or a pointer into an operand packed once for all panels.
using BlockSource = std::function<const float*(int64_t outer0, int64_t outer_len, int64_t k0, int64_t kc)>;

// The single-threaded block loops (GotoBLAS order: j0 blocks, k0 blocks, i0 blocks, micro-tiles).
void run_blocks(int64_t m, int64_t n, int64_t k, const BlockSource& a_block, const BlockSource& b_block, float* c,
                int64_t ldc, bool accumulate) {
  for (int64_t j0 = 0; j0 < n; j0 += kNC) {
    const int64_t nc = std::min(kNC, n - j0);
    for (int64_t k0 = 0; k0 < k; k0 += kKC) {
      const int64_t kc = std::min(kKC, k - k0);
      const bool add = accumulate || k0 > 0;  // later depth blocks add to what the first wrote
      const float* packed_b = b_block(j0, nc, k0, kc);
      for (int64_t i0 = 0; i0 < m; i0 += kMC) {
        const int64_t mc = std::min(kMC, m - i0);
        const float* packed_a = a_block(i0, mc, k0, kc);
        for (int64_t jr = 0; jr < nc; jr += kNR) {
          const float* bs = packed_b + (jr / kNR) * kNR * kc;
          const int64_t cols = std::min(kNR, nc - jr);
          for (int64_t ir = 0; ir < mc; ir += kMR) {
            const float* as = packed_a + (ir / kMR) * kMR * kc;
            const int64_t rows = std::min(kMR, mc - ir);
            float* tile = c + (i0 + ir) * ldc + j0 + jr;
            if (rows == kMR && cols == kNR) micro_kernel(kc, as, bs, tile, ldc, add);
            else edge_kernel(kc, as, bs, tile, ldc, rows, cols, add);
          }
        }
      }
    }
  }
}

// Every block of one operand packed once (in parallel) and shared read-only by the panels: the
// operand all panels read whole (A when C is split by columns, B when split by rows).
class PackedOperand {
 public:
  // pack(outer0, outer_len, k0, kc, dst) writes one block; blocks are outer_step x kKC, padded to
  // a multiple of `unit` along the outer dimension.
  // `storage` is reused from call to call (a fresh large allocation would be fresh pages to fault in).
  template <typename Pack>
  PackedOperand(AlignedFloats& storage, int64_t outer, int64_t outer_step, int64_t unit, int64_t k, const Pack& pack)
      : data_(storage), outer_step_(outer_step), k_blocks_((k + kKC - 1) / kKC) {
    std::vector<std::array<int64_t, 4>> blocks;
    int64_t total = 0;
    for (int64_t o0 = 0; o0 < outer; o0 += outer_step)
      for (int64_t k0 = 0; k0 < k; k0 += kKC) {
        const int64_t len = std::min(outer_step, outer - o0), kc = std::min(kKC, k - k0);
        blocks.push_back({o0, len, k0, kc});
        offsets_.push_back(total);
        total += (len + unit - 1) / unit * unit * kc;
      }
    data_.reserve(static_cast<size_t>(total));
    parallel_for(0, static_cast<int64_t>(blocks.size()), 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) pack(blocks[b][0], blocks[b][1], blocks[b][2], blocks[b][3], data_.data() + offsets_[b]);
    });
  }
  const float* block(int64_t outer0, int64_t k0) const {
    return data_.data() + offsets_[outer0 / outer_step_ * k_blocks_ + k0 / kKC];
  }

 private:
  AlignedFloats& data_;
  std::vector<int64_t> offsets_;
  int64_t outer_step_, k_blocks_;
};

// Block sources that pack on demand into `buffer` (one block at a time): A rows from row0 on,
// B columns from col0 on.
BlockSource packing_a(const Operand& a, int64_t row0, AlignedFloats& buffer) {
  buffer.reserve(static_cast<size_t>((kMC + kMR) * kKC));
  return [&a, row0, &buffer](int64_t i0, int64_t mc, int64_t k0, int64_t kc) {
    pack_a(a, row0 + i0, mc, k0, kc, buffer.data());
    return static_cast<const float*>(buffer.data());
  };
}

BlockSource packing_b(const PackB& pack_b, int64_t col0, AlignedFloats& buffer) {
  buffer.reserve(static_cast<size_t>((kNC + kNR) * kKC));
  return [&pack_b, col0, &buffer](int64_t j0, int64_t nc, int64_t k0, int64_t kc) {
    pack_b(k0, kc, col0 + j0, nc, buffer.data());
    return static_cast<const float*>(buffer.data());
  };
}

// Where panel p of `side` rows or columns starts (p = count: the end): the panels share out whole
// micro-tiles (`unit` rows or columns), so only the last can hold a partial one. Widths of
// side / count left a partial tile in every panel (72 columns = 4.5 tiles of 16) and the edge
// kernel computed the full tile for each.
int64_t panel_edge(const GemmPanels& panels, int64_t side, int64_t unit, int64_t p) {
  const int64_t units = (side + unit - 1) / unit;
  return std::min(side, units * p / panels.count * unit);
}

// Empty products: nothing to do, or (k = 0) C = 0 unless accumulating. True when handled.
bool empty_product(int64_t m, int64_t n, int64_t k, float* c, int64_t ldc, bool accumulate) {
  if (m > 0 && n > 0 && k > 0) return false;
  if (m > 0 && n > 0 && !accumulate)
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
  return true;
}

// C (m x n, small) = or += op(A) op(B) with K cut into `chunks` parts, each multiplied on its own
// thread into a private buffer; the parts are then added to C in chunk order, so the result does
// not depend on the thread count.
void depth_split(int64_t chunks, const Operand& op_a, int64_t m, int64_t n, int64_t k, const PackB& pack_b, float* c,
                 int64_t ldc, bool accumulate) {
  const int64_t depth = (k + chunks - 1) / chunks;
  chunks = (k + depth - 1) / depth;
  std::vector<float> partial(static_cast<size_t>(chunks * m * n));
  parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    thread_local AlignedFloats a_buffer, b_buffer;
    a_buffer.reserve(static_cast<size_t>((kMC + kMR) * kKC));
    b_buffer.reserve(static_cast<size_t>((kNC + kNR) * kKC));
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      const int64_t k_begin = chunk * depth, kc = std::min(depth, k - k_begin);
      run_blocks(
          m, n, kc,
          [&](int64_t i0, int64_t mc, int64_t k0, int64_t kk) {
            pack_a(op_a, i0, mc, k_begin + k0, kk, a_buffer.data());
            return static_cast<const float*>(a_buffer.data());
          },
          [&](int64_t j0, int64_t nc, int64_t k0, int64_t kk) {
            pack_b(k_begin + k0, kk, j0, nc, b_buffer.data());
            return static_cast<const float*>(b_buffer.data());
          },
          partial.data() + chunk * m * n, n, false);
    }
  });
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float sum = accumulate ? c[i * ldc + j] : 0.0f;
      for (int64_t chunk = 0; chunk < chunks; ++chunk) sum += partial[(chunk * m + i) * n + j];
      c[i * ldc + j] = sum;
    }
}

}  // namespace

void sgemm_packed_b(bool trans_a, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const PackB& pack_b,
                    float* c, int64_t ldc, bool accumulate) {
  if (empty_product(m, n, k, c, ldc, accumulate)) return;
  const Operand op_a{a, lda, trans_a};
  const GemmPanels panels = gemm_panels(m, n, k);
  if (panels.depth_chunks > 1) return depth_split(panels.depth_chunks, op_a, m, n, k, pack_b, c, ldc, accumulate);
  if (panels.split_columns) {
    // Each panel packs its own columns of B (no B element is packed twice) and reads the shared A.
    thread_local AlignedFloats shared_a;
    const PackedOperand packed_a(shared_a, m, kMC, kMR, k, [&](int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst) {
      pack_a(op_a, i0, mc, k0, kc, dst);
    });
    parallel_for(0, panels.count, 1, [&](int64_t begin, int64_t end) {
      thread_local AlignedFloats buffer;
      for (int64_t p = begin; p < end; ++p) {
        const int64_t start = panel_edge(panels, n, kNR, p), len = panel_edge(panels, n, kNR, p + 1) - start;
        run_blocks(
            m, len, k, [&](int64_t i0, int64_t, int64_t k0, int64_t) { return packed_a.block(i0, k0); },
            packing_b(pack_b, start, buffer), c + start, ldc, accumulate);
      }
    });
    return;
  }
  // Row panels all read the whole of B: pack it once and share it; each packs its own rows of A.
  thread_local AlignedFloats shared_b;
  const PackedOperand packed_b(shared_b, n, kNC, kNR, k, [&](int64_t j0, int64_t nc, int64_t k0, int64_t kc, float* dst) {
    pack_b(k0, kc, j0, nc, dst);
  });
  parallel_for(0, panels.count, 1, [&](int64_t begin, int64_t end) {
    thread_local AlignedFloats buffer;
    for (int64_t p = begin; p < end; ++p) {
      const int64_t start = panel_edge(panels, m, kMR, p), len = panel_edge(panels, m, kMR, p + 1) - start;
      run_blocks(
          len, n, k, packing_a(op_a, start, buffer),
          [&](int64_t j0, int64_t, int64_t k0, int64_t) { return packed_b.block(j0, k0); }, c + start * ldc, ldc,
          accumulate);
    }
  });
}

void sgemm_packed_serial(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                         float* c, int64_t ldc) {
  if (empty_product(m, n, k, c, ldc, false)) return;
  const Operand op_a{a, lda, false}, op_b{b, ldb, false};
  const PackB pack = [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) { pack_b(op_b, k0, kc, j0, nc, dst); };
  thread_local AlignedFloats a_buffer, b_buffer;
  run_blocks(m, n, k, packing_a(op_a, 0, a_buffer), packing_b(pack, 0, b_buffer), c, ldc, false);
}

void sgemm_packed(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                  const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  const Operand op_b{b, ldb, trans_b};
  sgemm_packed_b(trans_a, m, n, k, a, lda,
                 [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) { pack_b(op_b, k0, kc, j0, nc, dst); },
                 c, ldc, accumulate);
}

}  // namespace mrcnn::cpu
