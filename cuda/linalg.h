// cuBLAS matrix products for ops/linalg.cpp. Plain C++: implemented in linalg.cu, or by stubs.cpp.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace mrcnn::cuda {

// TF32 tensor-core math for float32 products: ~8x the FP32 rate on Hopper at 10-bit mantissa
// precision. Off by default (results then match the CPU to float32 rounding); `mrcnn --tf32` turns it on.
void set_allow_tf32(bool allow);
bool allow_tf32();

// Row-major C[i] = op(A[i]) @ op(B[i]) for i < batch: A is [m, k] (or [k, m] read transposed when
// trans_a) with leading dim lda, element offset i * stride_a from a's data; same for B; C is
// contiguous [batch, m, n]. a, b, c are float32 or float64 CUDA tensors.
void gemm_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const Tensor& a, int64_t lda,
                  int64_t stride_a, const Tensor& b, int64_t ldb, int64_t stride_b, const Tensor& c, int64_t batch);

// The same on raw device pointers to `dtype` elements, C[i] at element offset i * stride_c, and
// C[i] += op(A[i]) @ op(B[i]) when accumulate. Used by .cu files only (no stub).
void gemm_strided(DType dtype, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const void* a, int64_t lda,
                  int64_t stride_a, const void* b, int64_t ldb, int64_t stride_b, void* c, int64_t stride_c, int64_t batch,
                  bool accumulate);

}  // namespace mrcnn::cuda
