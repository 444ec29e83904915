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

void gemm_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const Tensor& a, int64_t lda,
                  int64_t stride_a, const Tensor& b, int64_t ldb, int64_t stride_b, const Tensor& c, int64_t batch) {
  if (m == 0 || n == 0 || batch == 0) return;
  if (k == 0) {  // an empty sum: cuBLAS may leave C untouched
    MRCNN_CUDA_CHECK(cudaMemsetAsync(c.raw_data(), 0, static_cast<size_t>(c.numel()) * dtype_size(c.dtype()), stream()));
    return;
  }
  cublasHandle_t handle = cublas_handle();
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int im = static_cast<int>(m), in = static_cast<int>(n), ik = static_cast<int>(k);
  if (c.dtype() == kFloat32) {
    MRCNN_CUBLAS_CHECK(cublas().set_math_mode(handle, tf32_allowed ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_PEDANTIC_MATH));
    const float one = 1, zero = 0;
    MRCNN_CUBLAS_CHECK(cublas().sgemm_strided_batched(handle, op_b, op_a, in, im, ik, &one, static_cast<const float*>(b.raw_data()),
                                                 static_cast<int>(ldb), stride_b, static_cast<const float*>(a.raw_data()),
                                                 static_cast<int>(lda), stride_a, &zero, static_cast<float*>(c.raw_data()), in,
                                                 m * n, static_cast<int>(batch)));
  } else {
    check(c.dtype() == kFloat64, "matmul: CUDA supports float32 and float64, got ", dtype_name(c.dtype()));
    MRCNN_CUBLAS_CHECK(cublas().set_math_mode(handle, CUBLAS_DEFAULT_MATH));
    const double one = 1, zero = 0;
    MRCNN_CUBLAS_CHECK(cublas().dgemm_strided_batched(handle, op_b, op_a, in, im, ik, &one, static_cast<const double*>(b.raw_data()),
                                                 static_cast<int>(ldb), stride_b, static_cast<const double*>(a.raw_data()),
                                                 static_cast<int>(lda), stride_a, &zero, static_cast<double*>(c.raw_data()), in,
                                                 m * n, static_cast<int>(batch)));
  }
}

}  // namespace mrcnn::cuda
