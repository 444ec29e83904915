// C = op(A) op(B) on row-major buffers through Eigen's single-threaded GEMM, parallelised here over
// panels of C whose split depends only on the shape: bit-identical results for any thread count.
#pragma once
#include <cstdint>

namespace mrcnn::cpu {

// op(A) is M x K: A[i*lda + k], or A[k*lda + i] when trans_a. op(B) is K x N likewise.
// C[i*ldc + j] is overwritten (accumulate=false) or added to.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
          int64_t ldb, T* c, int64_t ldc, bool accumulate = false);

}  // namespace mrcnn::cpu
