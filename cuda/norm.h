// CUDA kernels for ops/norm.cpp. Plain C++: implemented in norm.cu, or by stubs.cpp.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace mrcnn::cuda {

// y = x * scale[c] + shift[c] for contiguous x, y [batch, channels, inner]; shift may be undefined;
// relu: then max(y [+ residual], 0) (NaN kept), residual contiguous like x or undefined.
void channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift, int64_t channels, int64_t inner,
                    const Tensor& y, bool relu = false, const Tensor& residual = Tensor());
// channel_affine_relu's input gradient: (y > 0 ? dy : 0) * scale[c] + 0, y its output; gated (if
// defined) gets y > 0 ? dy : 0 (the residual's gradient).
void channel_affine_relu_input_grad(const Tensor& dy, const Tensor& y, const Tensor& scale, int64_t channels, int64_t inner,
                                    const Tensor& dx, const Tensor& gated = Tensor());

// Group norm over contiguous x, y [batch, channels, inner] from per-(sample, group) statistics
// mean, invstd [batch * groups]; weight and bias [channels] may be undefined.
void group_norm_forward(const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight, const Tensor& bias,
                        int64_t groups, int64_t channels, int64_t inner, const Tensor& y);
// Its input gradient, given each group's means of dxhat and dxhat * xhat [batch * groups].
void group_norm_input_grad(const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                           const Tensor& mean_dxhat, const Tensor& mean_dxhat_xhat, int64_t groups, int64_t channels,
                           int64_t inner, const Tensor& dx);

}  // namespace mrcnn::cuda
