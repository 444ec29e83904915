// Elementwise ops: argument checks, CPU loops over the shared functors, CUDA dispatch, and autograd.
// Backward formulas are written with the ops themselves, so they run on whichever device the
// forward ran on.
#include "ops/elementwise.h"

#include <cmath>
#include <limits>

#include "autograd/node.h"
#include "cuda/elementwise.h"
#include "ops/reduce.h"
#include "tensor/dispatch.h"
#include "tensor/parallel.h"
#include "tensor/strided_index.h"

namespace mrcnn {

namespace cpu {

// out is contiguous; operands may be strided or broadcast.
template <int N, typename Body>
void strided_loop(const Tensor& out, const std::array<const Tensor*, N>& operands, const char* op,
                  const Body& body) {
  std::array<const Tensor*, N + 1> all;
  all[0] = &out;
  for (int k = 0; k < N; ++k) all[k + 1] = operands[k];
  const auto index = make_strided_index<N + 1>(out.sizes(), all, op);
  const bool contiguous = index.all_contiguous();
  parallel_for(0, out.numel(), kParallelGrain, [&](int64_t begin, int64_t end) {
    if (!contiguous) return index.for_each_offsets(begin, end, body);
    int64_t off[N + 1];
    for (int64_t i = begin; i < end; ++i) {
      for (int k = 0; k <= N; ++k) off[k] = i;
      body(off);
    }
  });
}

void unary_forward(UnaryOp op, double p0, double p1, const Tensor& x, const Tensor& out) {
  dispatch_floating(x.dtype(), "unary", [&](auto tag) {
    using T = decltype(tag);
    const T* in = static_cast<const T*>(x.raw_data());
    T* o = out.data<T>();
    with_unary_functor(op, p0, p1, [&](auto f) {
      strided_loop<1>(out, {&x}, "unary", [&](const int64_t* off) { o[off[0]] = f(in[off[1]]); });
    });
  });
}

void binary_forward(BinaryOp op, double param, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_floating(a.dtype(), "binary", [&](auto tag) {
    using T = decltype(tag);
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    T* o = out.data<T>();
    with_binary_functor(op, param, [&](auto f) {
      strided_loop<2>(out, {&a, &b}, "binary", [&](const int64_t* off) { o[off[0]] = f(pa[off[1]], pb[off[2]]); });
    });
  });
}

void compare_forward(CompareOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    uint8_t* o = out.data<uint8_t>();
    with_compare_functor(op, [&](auto f) {
      strided_loop<2>(out, {&a, &b}, "compare", [&](const int64_t* off) { o[off[0]] = f(pa[off[1]], pb[off[2]]); });
    });
  });
}

void where_forward(const Tensor& condition, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const uint8_t* pc = static_cast<const uint8_t*>(condition.raw_data());
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    T* o = out.data<T>();
    strided_loop<3>(out, {&condition, &a, &b}, "where",
                       [&](const int64_t* off) { o[off[0]] = pc[off[1]] ? pa[off[2]] : pb[off[3]]; });
  });
}

}  // namespace cpu

namespace ops {

using autograd::record;

namespace {

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  check(a.device() == b.device(), op, ": tensors on different devices: ", shape_str(a.sizes()), " on ",
        a.device().str(), " and ", shape_str(b.sizes()), " on ", b.device().str());
}

void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  check(a.dtype() == b.dtype(), op, ": dtype mismatch: ", shape_str(a.sizes()), " ", dtype_name(a.dtype()), " and ",
        shape_str(b.sizes()), " ", dtype_name(b.dtype()));
}

void unary_on_device(UnaryOp op, double p0, double p1, const Tensor& x, const Tensor& out) {
  if (x.device().is_cuda()) cuda::unary_forward(op, p0, p1, x, out);
  else cpu::unary_forward(op, p0, p1, x, out);
}

Tensor unary(UnaryOp op, const char* name, const Tensor& x, double p0 = 0, double p1 = 0) {
  check(is_floating(x.dtype()), name, ": expected a float32 or float64 tensor, got ", dtype_name(x.dtype()),
        " of shape ", shape_str(x.sizes()));
  Tensor out = empty(x.sizes(), x.dtype(), x.device());
  if (out.numel() == 0) return out;
  unary_on_device(op, p0, p1, x, out);
  return out;
}

Tensor binary(BinaryOp op, const char* name, const Tensor& a, const Tensor& b, double param = 0) {
  check_same_device(name, a, b);
  check_same_dtype(name, a, b);
  check(is_floating(a.dtype()), name, ": expected float32 or float64 tensors, got ", dtype_name(a.dtype()));
  Tensor out = empty(broadcast_shapes(a.sizes(), b.sizes(), name), a.dtype(), a.device());
  if (out.numel() == 0) return out;
  if (a.device().is_cuda()) cuda::binary_forward(op, param, a, b, out);
  else cpu::binary_forward(op, param, a, b, out);
  return out;
}

Tensor compare(CompareOp op, const char* name, const Tensor& a, const Tensor& b) {
  check_same_device(name, a, b);
  check_same_dtype(name, a, b);
  Tensor out = empty(broadcast_shapes(a.sizes(), b.sizes(), name), kBool, a.device());
  if (out.numel() == 0) return out;
  if (a.device().is_cuda()) cuda::compare_forward(op, a, b, out);
  else cpu::compare_forward(op, a, b, out);
  return out;
}

Tensor scalar_like(double value, const Tensor& like) { return scalar_tensor(value, like.dtype(), like.device()); }

// Gradients of broadcast inputs are summed back to their shapes; inputs without grad get none.
std::vector<Tensor> reduce_pair(const Tensor& da, const Tensor& db, const Shape& a_shape, const Shape& b_shape) {
  return {da.defined() ? sum_to(da, a_shape) : Tensor(), db.defined() ? sum_to(db, b_shape) : Tensor()};
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  return record("add", binary(BinaryOp::Add, "add", a, b), {a, b},
                [as = a.sizes(), bs = b.sizes()](const Tensor& d) { return reduce_pair(d, d, as, bs); });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  return record("sub", binary(BinaryOp::Sub, "sub", a, b), {a, b},
                [as = a.sizes(), bs = b.sizes(), need_b = b.requires_grad()](const Tensor& d) {
                  return reduce_pair(d, need_b ? neg(d) : Tensor(), as, bs);
                });
}

// Backward keeps only the operands its gradients read: x * scale with a constant scale (a frozen
// norm, a loss weight) must not hold x, often a whole activation, until the backward pass.
Tensor mul(const Tensor& a, const Tensor& b) {
  const bool need_a = a.requires_grad(), need_b = b.requires_grad();
  return record("mul", binary(BinaryOp::Mul, "mul", a, b), {a, b},
                [a_kept = need_b ? a.detach() : Tensor(), b_kept = need_a ? b.detach() : Tensor(), as = a.sizes(),
                 bs = b.sizes()](const Tensor& d) {
                  return reduce_pair(b_kept.defined() ? mul(d, b_kept) : Tensor(), a_kept.defined() ? mul(d, a_kept) : Tensor(),
                                     as, bs);
                });
}

Tensor div(const Tensor& a, const Tensor& b) {
  const bool need_a = a.requires_grad(), need_b = b.requires_grad();
  return record("div", binary(BinaryOp::Div, "div", a, b), {a, b},
                [a_kept = need_b ? a.detach() : Tensor(), b_kept = b.detach(), need_a, need_b, as = a.sizes(),
                 bs = b.sizes()](const Tensor& d) {
                  // d(a/b)/db = -a / b^2, written as PyTorch does.
                  return reduce_pair(need_a ? div(d, b_kept) : Tensor(),
                                     need_b ? neg(div(mul(d, a_kept), mul(b_kept, b_kept))) : Tensor(), as, bs);
                });
}

Tensor add(const Tensor& a, double b) { return add(a, scalar_like(b, a)); }
Tensor sub(const Tensor& a, double b) { return sub(a, scalar_like(b, a)); }
Tensor mul(const Tensor& a, double b) { return mul(a, scalar_like(b, a)); }
Tensor div(const Tensor& a, double b) { return div(a, scalar_like(b, a)); }

namespace {
// maximum/minimum: the winner takes the gradient; ties split it in halves (PyTorch's rule).
Tensor extremum(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  return record(name, binary(op, name, a, b), {a, b}, [op, a = a.detach(), b = b.detach()](const Tensor& d) {
    const Tensor a_wins = op == BinaryOp::Maximum ? gt(a, b) : lt(a, b);
    const Tensor b_wins = op == BinaryOp::Maximum ? gt(b, a) : lt(b, a);
    const Tensor half = where(eq(a, b), mul(d, 0.5), 0.0);
    return reduce_pair(where(a_wins, d, half), where(b_wins, d, half), a.sizes(), b.sizes());
  });
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) { return extremum(BinaryOp::Maximum, "maximum", a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum(BinaryOp::Minimum, "minimum", a, b); }

Tensor neg(const Tensor& x) {
  return record("neg", unary(UnaryOp::Neg, "neg", x), {x}, [](const Tensor& d) { return std::vector<Tensor>{neg(d)}; });
}

Tensor exp(const Tensor& x) {
  Tensor out = unary(UnaryOp::Exp, "exp", x);
  return record("exp", out, {x}, [y = out.detach()](const Tensor& d) { return std::vector<Tensor>{mul(d, y)}; });
}

Tensor log(const Tensor& x) {
  return record("log", unary(UnaryOp::Log, "log", x), {x},
                [x = x.detach()](const Tensor& d) { return std::vector<Tensor>{div(d, x)}; });
}

Tensor sqrt(const Tensor& x) {
  Tensor out = unary(UnaryOp::Sqrt, "sqrt", x);
  return record("sqrt", out, {x},
                [y = out.detach()](const Tensor& d) { return std::vector<Tensor>{div(d, mul(y, 2.0))}; });
}

Tensor abs(const Tensor& x) {
  return record("abs", unary(UnaryOp::Abs, "abs", x), {x},
                [x = x.detach()](const Tensor& d) { return std::vector<Tensor>{mul(d, sign(x))}; });
}

Tensor sign(const Tensor& x) {
  return record("sign", unary(UnaryOp::Sign, "sign", x), {x},
                [](const Tensor& d) { return std::vector<Tensor>{zeros_like(d)}; });
}

void relu_(const Tensor& x) {
  check(is_floating(x.dtype()), "relu_: expected a float32 or float64 tensor, got ", dtype_name(x.dtype()));
  check(!(autograd::grad_enabled() && x.requires_grad()),
        "relu_: x needs a gradient, and an in-place relu would overwrite what backward reads; use relu");
  check(x.is_contiguous(), "relu_: x must be contiguous, got ", shape_str(x.sizes()), " with strides ", shape_str(x.strides()));
  if (x.numel() == 0) return;
  // Each element is read, then written at the same place (same layout): in place is safe.
  unary_on_device(UnaryOp::Relu, 0, 0, x, x);
}

Tensor relu_backward(const Tensor& dout, const Tensor& y) { return binary(BinaryOp::ReluBackward, "relu_backward", dout, y); }

Tensor relu(const Tensor& x) {
  Tensor out = unary(UnaryOp::Relu, "relu", x);
  return record("relu", out, {x}, [y = out.detach()](const Tensor& d) { return std::vector<Tensor>{relu_backward(d, y)}; });
}

Tensor sigmoid(const Tensor& x) {
  Tensor out = unary(UnaryOp::Sigmoid, "sigmoid", x);
  return record("sigmoid", out, {x}, [y = out.detach()](const Tensor& d) {
    return std::vector<Tensor>{mul(d, mul(y, sub(scalar_like(1.0, y), y)))};
  });
}

Tensor tanh(const Tensor& x) {
  Tensor out = unary(UnaryOp::Tanh, "tanh", x);
  return record("tanh", out, {x}, [y = out.detach()](const Tensor& d) {
    return std::vector<Tensor>{mul(d, sub(scalar_like(1.0, y), mul(y, y)))};
  });
}

Tensor pow(const Tensor& x, double exponent) {
  return record("pow", unary(UnaryOp::Pow, "pow", x, exponent), {x}, [x = x.detach(), exponent](const Tensor& d) {
    if (exponent == 0) return std::vector<Tensor>{zeros_like(d)};
    return std::vector<Tensor>{mul(d, mul(pow(x, exponent - 1), exponent))};
  });
}

Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double lo = min.value_or(nan), hi = max.value_or(nan);
  return record("clamp", unary(UnaryOp::Clamp, "clamp", x, lo, hi), {x}, [x = x.detach(), min, max](const Tensor& d) {
    Tensor g = d;
    if (min) g = where(ge(x, *min), g, 0.0);
    if (max) g = where(le(x, *max), g, 0.0);
    return std::vector<Tensor>{g};
  });
}

Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b) {
  check(condition.dtype() == kBool, "where: condition must be bool, got ", dtype_name(condition.dtype()));
  check_same_device("where", condition, a);
  check_same_device("where", a, b);
  check_same_dtype("where", a, b);
  const Shape shape = broadcast_shapes(broadcast_shapes(condition.sizes(), a.sizes(), "where"), b.sizes(), "where");
  Tensor out = empty(shape, a.dtype(), a.device());
  if (out.numel() > 0) {
    if (a.device().is_cuda()) cuda::where_forward(condition, a, b, out);
    else cpu::where_forward(condition, a, b, out);
  }
  return record("where", out, {a, b},
                [c = condition.detach(), as = a.sizes(), bs = b.sizes(), need_a = a.requires_grad(),
                 need_b = b.requires_grad()](const Tensor& d) {
                  const Tensor zero = scalar_like(0.0, d);
                  return reduce_pair(need_a ? where(c, d, zero) : Tensor(), need_b ? where(c, zero, d) : Tensor(), as, bs);
                });
}

Tensor where(const Tensor& condition, const Tensor& a, double b) { return where(condition, a, scalar_like(b, a)); }

Tensor gt(const Tensor& a, const Tensor& b) { return compare(CompareOp::Gt, "gt", a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare(CompareOp::Lt, "lt", a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare(CompareOp::Ge, "ge", a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return compare(CompareOp::Le, "le", a, b); }
Tensor eq(const Tensor& a, const Tensor& b) { return compare(CompareOp::Eq, "eq", a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare(CompareOp::Ne, "ne", a, b); }
Tensor gt(const Tensor& a, double b) { return gt(a, scalar_like(b, a)); }
Tensor lt(const Tensor& a, double b) { return lt(a, scalar_like(b, a)); }
Tensor ge(const Tensor& a, double b) { return ge(a, scalar_like(b, a)); }
Tensor le(const Tensor& a, double b) { return le(a, scalar_like(b, a)); }
Tensor eq(const Tensor& a, double b) { return eq(a, scalar_like(b, a)); }
Tensor ne(const Tensor& a, double b) { return ne(a, scalar_like(b, a)); }

Tensor binary_cross_entropy_with_logits_elementwise(const Tensor& logits, const Tensor& target) {
  return record("binary_cross_entropy_with_logits",
                binary(BinaryOp::BceWithLogits, "binary_cross_entropy_with_logits", logits, target), {logits, target},
                [x = logits.detach(), y = target.detach(), need_y = target.requires_grad()](const Tensor& d) {
                  // d/dx = sigmoid(x) - y; d/dy = -x.
                  return reduce_pair(mul(d, sub(sigmoid(x), y)), need_y ? neg(mul(d, x)) : Tensor(), x.sizes(),
                                     y.sizes());
                });
}

Tensor smooth_l1_elementwise(const Tensor& input, const Tensor& target, double beta) {
  check(beta >= 0, "smooth_l1_loss: beta must be >= 0, got ", beta);
  return record("smooth_l1_loss", binary(BinaryOp::SmoothL1, "smooth_l1_loss", input, target, beta), {input, target},
                [a = input.detach(), b = target.detach(), beta](const Tensor& d) {
                  const Tensor diff = sub(a, b);
                  // Inside |diff| < beta the loss is quadratic (slope diff/beta), outside linear.
                  const Tensor slope = beta > 0 ? where(lt(abs(diff), beta), div(diff, beta), sign(diff)) : sign(diff);
                  const Tensor g = mul(d, slope);
                  return reduce_pair(g, neg(g), a.sizes(), b.sizes());
                });
}

}  // namespace ops
}  // namespace mrcnn
