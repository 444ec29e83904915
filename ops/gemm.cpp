// Eigen GEMM over raw row-major buffers. Eigen is built with EIGEN_DONT_PARALLELIZE; this file splits
// C into panels (a pure function of M, N, K) and runs one single-threaded Eigen product per panel.
#include "ops/gemm.h"

#include <Eigen/Core>
#include <algorithm>
#include <type_traits>

#include "tensor/parallel.h"

namespace mrcnn::cpu {

namespace {

template <typename T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using ColMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;

bool g_use_packed = true;

template <typename T, typename MatA, typename MatB>
void panel_product(const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc, int64_t m, int64_t n,
                   int64_t k, bool accumulate) {
  using Stride = Eigen::OuterStride<>;
  Eigen::Map<const MatA, Eigen::Unaligned, Stride> ma(a, m, k, Stride(lda));
  Eigen::Map<const MatB, Eigen::Unaligned, Stride> mb(b, k, n, Stride(ldb));
  Eigen::Map<RowMajor<T>, Eigen::Unaligned, Stride> mc(c, m, n, Stride(ldc));
  if (accumulate) mc.noalias() += ma * mb;
  else mc.noalias() = ma * mb;
}

// body(split_columns, start, len) computes one panel of gemm_panels(m, n, k).
template <typename Body>
void for_each_panel(int64_t m, int64_t n, int64_t k, const Body& body) {
  const GemmPanels panels = gemm_panels(m, n, k);
  const int64_t side = panels.split_columns ? n : m;
  parallel_for(0, panels.count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p)
      body(panels.split_columns, p * panels.width, std::min(side, (p + 1) * panels.width) - p * panels.width);
  });
}

template <typename T, typename MatA, typename MatB>
void gemm_layout(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
                 int64_t ldb, T* c, int64_t ldc, bool accumulate) {
  for_each_panel(m, n, k, [&](bool split_columns, int64_t start, int64_t len) {
    if (split_columns) {
      const T* b_panel = trans_b ? b + start * ldb : b + start;
      panel_product<T, MatA, MatB>(a, lda, b_panel, ldb, c + start, ldc, m, len, k, accumulate);
    } else {
      const T* a_panel = trans_a ? a + start : a + start * lda;
      panel_product<T, MatA, MatB>(a_panel, lda, b, ldb, c + start * ldc, ldc, len, n, k, accumulate);
    }
  });
}

}  // namespace

// Depth of one K chunk when a product is split along K: enough for packing to pay off.
constexpr int64_t kMinChunkDepth = 1024;

GemmPanels gemm_panels(int64_t m, int64_t n, int64_t k) {
  GemmPanels p;
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  p.split_columns = n >= m;
  const int64_t side = std::max<int64_t>(p.split_columns ? n : m, 1);
  p.count = flops < 4.0e6 ? 1 : std::min<int64_t>(8, (side + 63) / 64);
  // An even count keeps two threads (this project's CPU machines) equally busy: 3 panels left one
  // thread idle a third of the time.
  if (p.count > 1 && p.count % 2 == 1) ++p.count;
  p.width = (side + p.count - 1) / p.count;
  p.count = (side + p.width - 1) / p.width;
  if (p.count == 1 && flops >= 4.0e6) p.depth_chunks = std::clamp<int64_t>(k / kMinChunkDepth, 1, 8);
  return p;
}

void set_gemm_kernel(GemmKernel kernel) { g_use_packed = kernel == GemmKernel::Packed; }
GemmKernel gemm_kernel() { return g_use_packed && cpu_has_avx2_fma() ? GemmKernel::Packed : GemmKernel::Eigen; }

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
          int64_t ldb, T* c, int64_t ldc, bool accumulate) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, T(0));
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (gemm_kernel() == GemmKernel::Packed) {
      sgemm_packed(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
      return;
    }
  }
  // A transposed row-major matrix is a column-major one with the same leading dimension.
  if (!trans_a && !trans_b) gemm_layout<T, RowMajor<T>, RowMajor<T>>(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
  else if (!trans_a && trans_b) gemm_layout<T, RowMajor<T>, ColMajor<T>>(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
  else if (trans_a && !trans_b) gemm_layout<T, ColMajor<T>, RowMajor<T>>(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
  else gemm_layout<T, ColMajor<T>, ColMajor<T>>(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, float*,
                          int64_t, bool);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, const double*, int64_t, const double*, int64_t,
                           double*, int64_t, bool);

}  // namespace mrcnn::cpu
