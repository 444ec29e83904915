// C = op(A) op(B) on row-major buffers through Eigen's single-threaded GEMM, parallelised here over
// panels of C whose split depends only on the shape: bit-identical results for any thread count.
#pragma once
#include <cstdint>
#include <functional>

namespace mrcnn::cpu {

// op(A) is M x K: A[i*lda + k], or A[k*lda + i] when trans_a. op(B) is K x N likewise.
// C[i*ldc + j] is overwritten (accumulate=false) or added to.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
          int64_t ldb, T* c, int64_t ldc, bool accumulate = false);

// Which single-threaded kernel runs each float panel: our packed AVX2/FMA kernel (the default where
// the CPU has AVX2 and FMA) or Eigen's. double always uses Eigen. For benchmarks and comparisons.
enum class GemmKernel { Packed, Eigen };
void set_gemm_kernel(GemmKernel kernel);
GemmKernel gemm_kernel();  // what float GEMMs use now (Eigen when the CPU lacks AVX2/FMA)

bool cpu_has_avx2_fma();
// Whether the direct convolution kernels (ops/conv_direct.cpp) use their AVX-512 variants: where the
// CPU has AVX-512F, unless switched off (tests and benchmarks compare both). The packed GEMM stays
// on AVX2: an AVX-512 16x16 micro-kernel measured no faster here (bench_gemm, Zen 4, 86-91% of peak
// either way).
bool use_avx512();
void allow_avx512(bool allowed);

// The packed kernel reads B as slivers of kPackedNR columns, each stored k-major: a packer writes
// op(B)[k0 : k0 + kc, j0 : j0 + nc] to dst[(j / kPackedNR) * kc * kPackedNR + k * kPackedNR + j % kPackedNR]
// (j, k relative to j0, k0), zero past nc. Supplying B this way lets a convolution gather its im2col
// matrix straight from the image instead of materialising it.
constexpr int64_t kPackedNR = 16;
using PackB = std::function<void(int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst)>;

// One packed B sliver from kPackedNR contiguous column runs: dst[k * kPackedNR + c] = columns[c][k]
// for k < kc; a null column packs zeros. For packers whose B columns are runs in memory (op(B)
// transposed, a convolution's shifted input planes). Requires cpu_has_avx2_fma().
void pack_column_runs(const float* const* columns, int64_t kc, float* dst);

// The packed float kernels (ops/gemm_packed.cpp), parallel over panels of C; they require
// cpu_has_avx2_fma(). sgemm_packed_b takes B from a packer (an implicit im2col, for instance).
void sgemm_packed(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                  const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate);
void sgemm_packed_b(bool trans_a, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const PackB& pack_b,
                    float* c, int64_t ldc, bool accumulate);
// C = A @ B (row-major, no transposes) on the calling thread only: for callers that already run
// independent products in parallel (Winograd's 16).
void sgemm_packed_serial(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                         float* c, int64_t ldc);

// How a product is split for threads, from its shape alone: small products run whole; large ones
// are cut along the longer side of C into 2, 4, 6 or 8 panels of about 64 rows/columns or more. A large
// product whose C is too small for two panels (a weight gradient summed over many pixels, 64 x 64
// over 32768) is cut along K instead (depth_chunks > 1, float kernel only): partial products summed
// in chunk order. The packed kernel moves each cut to a whole micro-tile (panel_edge in
// ops/gemm_packed.cpp); Eigen's panels are `width` wide.
struct GemmPanels {
  bool split_columns = true;
  int64_t count = 1, width = 0;
  int64_t depth_chunks = 1;
};
GemmPanels gemm_panels(int64_t m, int64_t n, int64_t k);

}  // namespace mrcnn::cpu
