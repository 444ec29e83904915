// Normalisation layers over [N, C, *] tensors: batch norm (training and eval), torchvision's
// FrozenBatchNorm2d, and group norm. Statistics are biased (divide by the count) like PyTorch.
#pragma once
#include "tensor/tensor.h"

namespace mrcnn::ops {

// F.batch_norm. training: normalise with the batch's per-channel statistics and, when running_mean
// and running_var are defined, update them in place: r = (1 - momentum) * r + momentum * stat (the
// variance unbiased). eval: normalise with the running statistics. weight/bias may be undefined.
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5);
// torchvision.ops.FrozenBatchNorm2d: x * scale + shift with scale = weight / sqrt(running_var + eps),
// shift = bias - running_mean * scale; the four tensors are buffers (gradient flows only through them
// if they require grad, which torchvision's never do).
Tensor frozen_batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                         const Tensor& running_var, double eps = 1e-5);
// relu(frozen_batch_norm(...) [+ residual]) in one pass each way (ResNet's norm + relu, and a
// block's last norm + identity + relu), the same bits as the separate ops.
Tensor frozen_batch_norm_relu(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                              const Tensor& running_var, double eps = 1e-5, const Tensor& residual = Tensor());
// F.group_norm: channels split into num_groups groups, each normalised per sample; weight/bias per channel.
Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight = Tensor(), const Tensor& bias = Tensor(),
                  double eps = 1e-5);
// relu(group_norm(...) [+ residual]) (ResNet's norm + relu, and a block's last norm + identity +
// relu, under GroupNorm): on the CPU one pass forward after the statistics and relu's gradient
// folded into group norm's backward passes; the same bits as the separate ops. residual: x's shape,
// dtype and device.
Tensor group_norm_relu(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias, double eps = 1e-5,
                       const Tensor& residual = Tensor());
// y[n, c, ...] = x[n, c, ...] * scale[c] + shift[c], differentiable in all three.
Tensor channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift);
// relu(channel_affine(x, scale, shift) [+ residual]) in one pass, and backward relu's gradient and
// the input gradient in one pass when scale and shift need none: the same bits as the separate ops.
// residual: x's shape, dtype and device.
Tensor channel_affine_relu(const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& residual = Tensor());

}  // namespace mrcnn::ops
