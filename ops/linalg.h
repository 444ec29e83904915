// Matrix products on Eigen's GEMM over raw buffers (see ops/gemm.h), and linear layers.
#pragma once
#include "tensor/tensor.h"

namespace mrcnn::ops {

// [M, K] @ [K, N]; [B, M, K] @ [B, K, N]; [B, M, K] @ [K, N]. Transposed views are used in place.
Tensor matmul(const Tensor& a, const Tensor& b);
// x [..., in] @ weight[out, in]^T + bias[out], like torch.nn.functional.linear.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace mrcnn::ops
