// Matrix products through cuBLAS. cuBLAS is column-major: a row-major C = A B is the column-major
// C^T = B^T A^T, so the operands are passed swapped and each keeps its own transpose flag.
#include "cuda/check.h"
#include "cuda/linalg.h"

namespace mrcnn::cuda {

namespace {
bool tf32_allowed = false;
}

void set_allow_tf32(bool allow) { tf32_allowed = allow; }
bool allow_tf32() { return tf32_allowed; }

void gemm_strided(DType dtype, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const void* a, int64_t lda,
                  int64_t stride_a, const void* b, int64_t ldb, int64_t stride_b, void* c, int64_t stride_c, int64_t batch,
                  bool accumulate) {
  if (m == 0 || n == 0 || batch == 0) return;
  if (k == 0) {  // an empty sum: cuBLAS may leave C untouched
    if (!accumulate)
      for (int64_t i = 0; i < batch; ++i)
        MRCNN_CUDA_CHECK(cudaMemsetAsync(static_cast<char*>(c) + i * stride_c * dtype_size(dtype), 0,
                                         static_cast<size_t>(m * n) * dtype_size(dtype), stream()));
    return;
  }
  cublasHandle_t handle = cublas_handle();
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int im = static_cast<int>(m), in = static_cast<int>(n), ik = static_cast<int>(k);
  if (dtype == kFloat32) {
    MRCNN_CUBLAS_CHECK(cublas().set_math_mode(handle, tf32_allowed ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_PEDANTIC_MATH));
    const float one = 1, beta = accumulate ? 1 : 0;
    MRCNN_CUBLAS_CHECK(cublas().sgemm_strided_batched(handle, op_b, op_a, in, im, ik, &one, static_cast<const float*>(b),
                                                 static_cast<int>(ldb), stride_b, static_cast<const float*>(a),
                                                 static_cast<int>(lda), stride_a, &beta, static_cast<float*>(c), in, stride_c,
                                                 static_cast<int>(batch)));
  } else {
    check(dtype == kFloat64, "matmul: CUDA supports float32 and float64, got ", dtype_name(dtype));
    MRCNN_CUBLAS_CHECK(cublas().set_math_mode(handle, CUBLAS_DEFAULT_MATH));
    const double one = 1, beta = accumulate ? 1 : 0;
    MRCNN_CUBLAS_CHECK(cublas().dgemm_strided_batched(handle, op_b, op_a, in, im, ik, &one, static_cast<const double*>(b),
                                                 static_cast<int>(ldb), stride_b, static_cast<const double*>(a),
                                                 static_cast<int>(lda), stride_a, &beta, static_cast<double*>(c), in, stride_c,
                                                 static_cast<int>(batch)));
  }
}

void gemm_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const Tensor& a, int64_t lda,
                  int64_t stride_a, const Tensor& b, int64_t ldb, int64_t stride_b, const Tensor& c, int64_t batch) {
  gemm_strided(c.dtype(), trans_a, trans_b, m, n, k, a.raw_data(), lda, stride_a, b.raw_data(), ldb, stride_b, c.raw_data(), m * n,
               batch, false);
}

}  // namespace mrcnn::cuda
