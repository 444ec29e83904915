// Per-element math of the elementwise family, shared verbatim by the CPU loops (ops/elementwise.cpp)
// and the CUDA kernels (cuda/elementwise.cu). The enums name the operation; with_*_functor turns an
// enum into a functor type once, outside the element loop.
#pragma once
#include <math.h>

#include <cstdint>

#include "cuda/host_device.h"
#include "tensor/error.h"

namespace mrcnn {

enum class UnaryOp { Neg, Exp, Log, Sqrt, Abs, Sign, Relu, Sigmoid, Tanh, Pow, Clamp };
enum class BinaryOp { Add, Sub, Mul, Div, Maximum, Minimum, BceWithLogits, SmoothL1, ReluBackward };
enum class CompareOp { Gt, Lt, Ge, Le, Eq, Ne };

// C math by overload, callable from host and device code alike.
MRCNN_HD inline float m_exp(float x) { return expf(x); }
MRCNN_HD inline double m_exp(double x) { return exp(x); }
MRCNN_HD inline float m_log(float x) { return logf(x); }
MRCNN_HD inline double m_log(double x) { return log(x); }
MRCNN_HD inline float m_log1p(float x) { return log1pf(x); }
MRCNN_HD inline double m_log1p(double x) { return log1p(x); }
MRCNN_HD inline float m_sqrt(float x) { return sqrtf(x); }
MRCNN_HD inline double m_sqrt(double x) { return sqrt(x); }
MRCNN_HD inline float m_tanh(float x) { return tanhf(x); }
MRCNN_HD inline double m_tanh(double x) { return tanh(x); }
MRCNN_HD inline float m_pow(float x, float p) { return powf(x, p); }
MRCNN_HD inline double m_pow(double x, double p) { return pow(x, p); }
MRCNN_HD inline float m_abs(float x) { return fabsf(x); }
MRCNN_HD inline double m_abs(double x) { return fabs(x); }
template <typename T> MRCNN_HD inline bool m_isnan(T x) { return x != x; }

// Unary functors: p0/p1 carry the scalar arguments (pow's exponent, clamp's bounds).
struct NegF { double p0, p1; template <typename T> MRCNN_HD T operator()(T x) const { return -x; } };
struct ExpF { double p0, p1; template <typename T> MRCNN_HD T operator()(T x) const { return m_exp(x); } };
struct LogF { double p0, p1; template <typename T> MRCNN_HD T operator()(T x) const { return m_log(x); } };
struct SqrtF { double p0, p1; template <typename T> MRCNN_HD T operator()(T x) const { return m_sqrt(x); } };
struct AbsF { double p0, p1; template <typename T> MRCNN_HD T operator()(T x) const { return m_abs(x); } };
struct SignF {
  double p0, p1;
  template <typename T> MRCNN_HD T operator()(T x) const { return T((x > T(0)) - (x < T(0))); }
};
// relu keeps NaN like torch.relu (NaN > 0 is false, but NaN must not become 0). relu_of and
// relu_grad are relu's one definition, also used by the fused norm + relu (ops/affine_kernels.h).
template <typename T>
MRCNN_HD inline T relu_of(T x) {
  return (x > T(0) || m_isnan(x)) ? x : T(0);
}
// ReLU's gradient: dout where the output y is > 0, else 0 (NaN y gives 0, like PyTorch's
// threshold_backward).
template <typename T>
MRCNN_HD inline T relu_grad(T dout, T y) {
  return y > T(0) ? dout : T(0);
}
struct ReluF {
  double p0, p1;
  template <typename T> MRCNN_HD T operator()(T x) const { return relu_of(x); }
};
// Written so neither branch overflows: exp of a non-positive number only.
struct SigmoidF {
  double p0, p1;
  template <typename T> MRCNN_HD T operator()(T x) const {
    if (x >= T(0)) return T(1) / (T(1) + m_exp(-x));
    const T e = m_exp(x);
    return e / (T(1) + e);
  }
};
struct TanhF { double p0, p1; template <typename T> MRCNN_HD T operator()(T x) const { return m_tanh(x); } };
struct PowF { double p0, p1; template <typename T> MRCNN_HD T operator()(T x) const { return m_pow(x, T(p0)); } };
// Bounds are p0 (min) and p1 (max); NaN bounds mean "no bound" (torch.clamp with None).
struct ClampF {
  double p0, p1;
  template <typename T> MRCNN_HD T operator()(T x) const {
    if (m_isnan(x)) return x;
    if (!m_isnan(p0) && x < T(p0)) x = T(p0);
    if (!m_isnan(p1) && x > T(p1)) x = T(p1);
    return x;
  }
};

template <typename Fn>
decltype(auto) with_unary_functor(UnaryOp op, double p0, double p1, Fn&& fn) {
  switch (op) {
    case UnaryOp::Neg: return fn(NegF{p0, p1});
    case UnaryOp::Exp: return fn(ExpF{p0, p1});
    case UnaryOp::Log: return fn(LogF{p0, p1});
    case UnaryOp::Sqrt: return fn(SqrtF{p0, p1});
    case UnaryOp::Abs: return fn(AbsF{p0, p1});
    case UnaryOp::Sign: return fn(SignF{p0, p1});
    case UnaryOp::Relu: return fn(ReluF{p0, p1});
    case UnaryOp::Sigmoid: return fn(SigmoidF{p0, p1});
    case UnaryOp::Tanh: return fn(TanhF{p0, p1});
    case UnaryOp::Pow: return fn(PowF{p0, p1});
    case UnaryOp::Clamp: return fn(ClampF{p0, p1});
  }
  throw Error("unknown unary op");
}

// Binary functors; `param` is smooth_l1's beta.
struct AddF { double param; template <typename T> MRCNN_HD T operator()(T a, T b) const { return a + b; } };
struct SubF { double param; template <typename T> MRCNN_HD T operator()(T a, T b) const { return a - b; } };
struct MulF { double param; template <typename T> MRCNN_HD T operator()(T a, T b) const { return a * b; } };
struct DivF { double param; template <typename T> MRCNN_HD T operator()(T a, T b) const { return a / b; } };
// maximum/minimum propagate NaN, like torch.maximum.
struct MaximumF {
  double param;
  template <typename T> MRCNN_HD T operator()(T a, T b) const { return (a > b || m_isnan(a)) ? a : b; }
};
struct MinimumF {
  double param;
  template <typename T> MRCNN_HD T operator()(T a, T b) const { return (a < b || m_isnan(a)) ? a : b; }
};
// Per-element binary cross entropy on logits x with target y, in the overflow-free form
// max(x, 0) - x*y + log(1 + exp(-|x|)) that PyTorch uses.
struct BceWithLogitsF {
  double param;
  template <typename T> MRCNN_HD T operator()(T x, T y) const {
    return (x > T(0) ? x : T(0)) - x * y + m_log1p(m_exp(-m_abs(x)));
  }
};
// Huber-like loss of d = a - b: 0.5 d^2 / beta inside |d| < beta, |d| - 0.5 beta outside; beta 0 is L1.
struct SmoothL1F {
  double param;
  template <typename T> MRCNN_HD T operator()(T a, T b) const {
    const T d = m_abs(a - b);
    const T beta = T(param);
    return d < beta ? T(0.5) * d * d / beta : d - T(0.5) * beta;
  }
};
// ReLU's gradient in one pass (relu_grad).
struct ReluBackwardF {
  double param;
  template <typename T> MRCNN_HD T operator()(T dout, T y) const { return relu_grad(dout, y); }
};

template <typename Fn>
decltype(auto) with_binary_functor(BinaryOp op, double param, Fn&& fn) {
  switch (op) {
    case BinaryOp::Add: return fn(AddF{param});
    case BinaryOp::Sub: return fn(SubF{param});
    case BinaryOp::Mul: return fn(MulF{param});
    case BinaryOp::Div: return fn(DivF{param});
    case BinaryOp::Maximum: return fn(MaximumF{param});
    case BinaryOp::Minimum: return fn(MinimumF{param});
    case BinaryOp::BceWithLogits: return fn(BceWithLogitsF{param});
    case BinaryOp::SmoothL1: return fn(SmoothL1F{param});
    case BinaryOp::ReluBackward: return fn(ReluBackwardF{param});
  }
  throw Error("unknown binary op");
}

struct GtF { template <typename T> MRCNN_HD uint8_t operator()(T a, T b) const { return a > b; } };
struct LtF { template <typename T> MRCNN_HD uint8_t operator()(T a, T b) const { return a < b; } };
struct GeF { template <typename T> MRCNN_HD uint8_t operator()(T a, T b) const { return a >= b; } };
struct LeF { template <typename T> MRCNN_HD uint8_t operator()(T a, T b) const { return a <= b; } };
struct EqF { template <typename T> MRCNN_HD uint8_t operator()(T a, T b) const { return a == b; } };
struct NeF { template <typename T> MRCNN_HD uint8_t operator()(T a, T b) const { return a != b; } };

template <typename Fn>
decltype(auto) with_compare_functor(CompareOp op, Fn&& fn) {
  switch (op) {
    case CompareOp::Gt: return fn(GtF{});
    case CompareOp::Lt: return fn(LtF{});
    case CompareOp::Ge: return fn(GeF{});
    case CompareOp::Le: return fn(LeF{});
    case CompareOp::Eq: return fn(EqF{});
    case CompareOp::Ne: return fn(NeF{});
  }
  throw Error("unknown compare op");
}

}  // namespace mrcnn
