// Losses with PyTorch's definitions and reductions.
#pragma once
#include "tensor/tensor.h"

namespace mrcnn::ops {

enum class Reduction { None, Mean, Sum };

// logits [N, K], target [N] int64 class indices in [0, K); mean over N like F.cross_entropy.
// The classes are range-checked on the host; for CUDA logits they may also be given on the CPU
// (checked there, then uploaded), which saves the download a CUDA target needs for the check.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction reduction = Reduction::Mean);
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        Reduction reduction = Reduction::Mean);
// beta 0 is the L1 loss (torchvision's box losses use beta 1/9 with sum).
Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, double beta = 1.0,
                      Reduction reduction = Reduction::Mean);
Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean);

}  // namespace mrcnn::ops
