// Elementwise math with PyTorch broadcasting. Both operands of a binary op must have the same dtype
// and device (no implicit promotion); a double scalar takes the tensor's dtype. Comparisons return
// bool tensors and are not differentiable.
#pragma once
#include <optional>

#include "ops/elementwise_functors.h"
#include "tensor/tensor.h"

namespace mrcnn::ops {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor sub(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor div(const Tensor& a, double b);
Tensor maximum(const Tensor& a, const Tensor& b);  // ties send half the gradient to each side
Tensor minimum(const Tensor& a, const Tensor& b);

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor abs(const Tensor& x);    // gradient 0 at 0, like PyTorch
Tensor sign(const Tensor& x);   // gradient 0
Tensor relu(const Tensor& x);   // gradient 0 at 0
// relu's input gradient from its output y: dout where y > 0, else 0 (relu_grad); not recorded. For
// fused ops that keep relu's output (group_norm_relu).
Tensor relu_backward(const Tensor& dout, const Tensor& y);
// relu over x's own memory, for inference: x must be a contiguous float tensor that no gradient is
// recorded for (grad mode off, or x not needing one), and every view of it sees the change. It saves
// an activation-sized buffer where one is large (the mask predictor's 28x28 maps).
void relu_(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor pow(const Tensor& x, double exponent);
// Either bound may be absent; the gradient passes where min <= x <= max, like PyTorch.
Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max);

// condition is bool; the three broadcast together.
Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b);
Tensor where(const Tensor& condition, const Tensor& a, double b);

Tensor gt(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, double b);
Tensor lt(const Tensor& a, double b);
Tensor ge(const Tensor& a, double b);
Tensor le(const Tensor& a, double b);
Tensor eq(const Tensor& a, double b);
Tensor ne(const Tensor& a, double b);

// Per-element kernels behind the losses in ops/loss.h (no reduction).
Tensor binary_cross_entropy_with_logits_elementwise(const Tensor& logits, const Tensor& target);
Tensor smooth_l1_elementwise(const Tensor& input, const Tensor& target, double beta);

}  // namespace mrcnn::ops

namespace mrcnn {
inline Tensor operator+(const Tensor& a, const Tensor& b) { return ops::add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return ops::sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return ops::mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return ops::div(a, b); }
inline Tensor operator+(const Tensor& a, double b) { return ops::add(a, b); }
inline Tensor operator-(const Tensor& a, double b) { return ops::sub(a, b); }
inline Tensor operator*(const Tensor& a, double b) { return ops::mul(a, b); }
inline Tensor operator/(const Tensor& a, double b) { return ops::div(a, b); }
inline Tensor operator*(double a, const Tensor& b) { return ops::mul(b, a); }
inline Tensor operator-(const Tensor& x) { return ops::neg(x); }
}  // namespace mrcnn
