// Optimizer updates: argument checks, then the shared per-element body (ops/optim_kernels.h) in a CPU
// loop or a CUDA kernel. Elements are independent, so neither the loop order nor the split between
// threads changes any bit.
#include "ops/optim.h"

#include <cmath>

#include "cuda/optim.h"
#include "ops/optim_kernels.h"
#include "tensor/dispatch.h"
#include "tensor/parallel.h"

namespace mrcnn::ops {

namespace {

// body(i) for every element, the large parameters split across threads: the update streams 3-4
// arrays and memory bounds it, and one core rarely draws a machine's whole bandwidth (the recipe's
// 16M-parameter SGD step alone, bench_optimizer_step: 2 threads of the 2-core VM took 0.59x and
// 0.80x one thread's time, medians of two runs; inside its train step the stage took ~17 ms either
// way there). Each chunk runs a local copy of the body (which captures by value): its pointers and
// scalars then cannot alias the stores, and every loop vectorises (capturing by reference, a third
// of them did not).
template <typename Body>
void for_each_element(int64_t n, const Body& body) {
  parallel_for(0, n, kParallelGrain, [&](int64_t begin, int64_t end) {
    const Body local = body;
    for (int64_t i = begin; i < end; ++i) local(i);
  });
}

void check_operand(const Tensor& t, const Tensor& param, const char* name, const char* op) {
  check(t.defined() && t.sizes() == param.sizes() && t.dtype() == param.dtype() && t.device() == param.device() &&
            t.is_contiguous(),
        op, ": ", name, " must be a contiguous ", dtype_name(param.dtype()), " tensor of shape ", shape_str(param.sizes()),
        " on ", param.device().str());
}
}  // namespace

void sgd_step_(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const SgdStep& step) {
  const char* op = "sgd_step_";
  check(param.is_contiguous() && is_floating(param.dtype()), op, ": the parameter must be a contiguous float tensor");
  check_operand(grad, param, "grad", op);
  if (momentum_buffer.defined()) check_operand(momentum_buffer, param, "momentum_buffer", op);
  dispatch_floating(param.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const SgdScalars<T> s{static_cast<T>(step.weight_decay), static_cast<T>(step.momentum),
                          static_cast<T>(1 - step.dampening), static_cast<T>(step.lr), step.nesterov, step.first};
    T* p = static_cast<T*>(param.raw_data());
    const T* g = static_cast<const T*>(grad.raw_data());
    T* b = momentum_buffer.defined() ? static_cast<T*>(momentum_buffer.raw_data()) : nullptr;
    if (param.device().is_cuda()) return cuda::sgd_step(p, g, b, s, param.numel());
    if (b) for_each_element(param.numel(), [=](int64_t i) { sgd_element(p + i, g[i], b + i, s); });
    else for_each_element(param.numel(), [=](int64_t i) { sgd_element<T>(p + i, g[i], nullptr, s); });
  });
}

void adamw_step_(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq, const AdamWStep& step) {
  const char* op = "adamw_step_";
  check(param.is_contiguous() && is_floating(param.dtype()), op, ": the parameter must be a contiguous float tensor");
  check_operand(grad, param, "grad", op);
  check_operand(exp_avg, param, "exp_avg", op);
  check_operand(exp_avg_sq, param, "exp_avg_sq", op);
  const double t = static_cast<double>(step.step);
  const double correction1 = 1 - std::pow(step.beta1, t), correction2 = 1 - std::pow(step.beta2, t);
  dispatch_floating(param.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const AdamWScalars<T> s{static_cast<T>(step.beta1), static_cast<T>(step.beta2), static_cast<T>(1 - step.lr * step.weight_decay),
                            static_cast<T>(step.lr / correction1), static_cast<T>(std::sqrt(correction2)),
                            static_cast<T>(step.eps)};
    T* p = static_cast<T*>(param.raw_data());
    const T* g = static_cast<const T*>(grad.raw_data());
    T* m = static_cast<T*>(exp_avg.raw_data());
    T* v = static_cast<T*>(exp_avg_sq.raw_data());
    if (param.device().is_cuda()) return cuda::adamw_step(p, g, m, v, s, param.numel());
    for_each_element(param.numel(), [=](int64_t i) { adamw_element(p + i, g[i], m + i, v + i, s); });
  });
}

void average_step_(const Tensor& average, const Tensor& value, double weight) {
  const char* op = "average_step_";
  check(average.is_contiguous() && is_floating(average.dtype()), op, ": the average must be a contiguous float tensor");
  check_operand(value, average, "value", op);
  check(weight >= 0 && weight <= 1, op, ": the weight must be in [0, 1], got ", weight);
  dispatch_floating(average.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    T* a = static_cast<T*>(average.raw_data());
    const T* v = static_cast<const T*>(value.raw_data());
    const T w = static_cast<T>(weight);
    if (average.device().is_cuda()) return cuda::average_step(a, v, w, average.numel());
    for_each_element(average.numel(), [=](int64_t i) { average_element(a + i, v[i], w); });
  });
}

}  // namespace mrcnn::ops
