// Eigen GEMM over raw row-major buffers. Eigen is built with EIGEN_DONT_PARALLELIZE; this file splits
// C into panels (a pure function of M, N, K) and runs one single-threaded Eigen product per panel.
#include "ops/gemm.h"

#include <Eigen/Core>
#include <algorithm>

#include "tensor/parallel.h"

namespace mrcnn::cpu {

namespace {

template <typename T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using ColMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;

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

template <typename T, typename MatA, typename MatB>
void gemm_layout(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
                 int64_t ldb, T* c, int64_t ldc, bool accumulate) {
  // Panels: small products run whole; large ones are cut along the longer side of C into up to 8
  // panels of at least 64 rows/columns. The cut depends on the shape only, never on threads.
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const bool split_columns = n >= m;
  const int64_t side = split_columns ? n : m;
  int64_t panels = flops < 4.0e6 ? 1 : std::min<int64_t>(8, (side + 63) / 64);
  const int64_t width = (side + panels - 1) / panels;
  panels = (side + width - 1) / width;
  parallel_for(0, panels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t start = p * width, len = std::min(side, start + width) - start;
      if (split_columns) {
        const T* b_panel = trans_b ? b + start * ldb : b + start;
        panel_product<T, MatA, MatB>(a, lda, b_panel, ldb, c + start, ldc, m, len, k, accumulate);
      } else {
        const T* a_panel = trans_a ? a + start : a + start * lda;
        panel_product<T, MatA, MatB>(a_panel, lda, b, ldb, c + start * ldc, ldc, len, n, k, accumulate);
      }
    }
  });
}

}  // namespace

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
          int64_t ldb, T* c, int64_t ldc, bool accumulate) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, T(0));
    return;
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
