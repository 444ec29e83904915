// Central differences of L(x) = sum(f(x) * R) against autograd's dL/dx, element by element.
#include "autograd/gradcheck.h"

#include <cmath>

#include "autograd/engine.h"
#include "tensor/random.h"

namespace mrcnn::autograd {

namespace {

double weighted_sum(const Tensor& out, const std::vector<double>& weights) {
  const std::vector<double> values = to_vector<double>(out);
  double total = 0;
  for (size_t i = 0; i < values.size(); ++i) total += values[i] * weights[i];
  return total;
}

// Element offsets of `t` in logical (row-major) order, so a non-contiguous input is perturbed at the
// memory its logical element lives in.
std::vector<int64_t> logical_offsets(const Tensor& t) {
  std::vector<int64_t> offsets;
  offsets.reserve(static_cast<size_t>(t.numel()));
  std::vector<int64_t> index(t.sizes().size(), 0);
  for (int64_t n = 0, count = t.numel(); n < count; ++n) {
    int64_t off = 0;
    for (size_t d = 0; d < index.size(); ++d) off += index[d] * t.strides()[d];
    offsets.push_back(off);
    for (size_t d = index.size(); d-- > 0;) {
      if (++index[d] < t.sizes()[d]) break;
      index[d] = 0;
    }
  }
  return offsets;
}

}  // namespace

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  GradcheckResult result;
  for (const Tensor& x : inputs) {
    if (!x.defined() || !x.requires_grad()) continue;
    check(x.dtype() == kFloat64 && x.device().is_cpu(), "gradcheck: inputs that require grad must be float64 on the CPU");
    for (int64_t s : x.strides()) check(s != 0, "gradcheck: an input that requires grad must not be an expanded (stride 0) view");
  }
  std::vector<Tensor> leaves = inputs;
  for (Tensor& x : leaves)
    if (x.defined()) x.zero_grad();

  // Analytic: backward of f with R as the incoming gradient.
  const Tensor out = f(leaves);
  check(out.dtype() == kFloat64, "gradcheck: f must return float64, got ", dtype_name(out.dtype()));
  Generator generator(options.seed);
  const Tensor weights_tensor = randn(out.sizes(), kFloat64, kCPU, &generator);
  const std::vector<double> weights = to_vector<double>(weights_tensor);
  if (out.requires_grad()) backward(out, weights_tensor);

  NoGradGuard no_grad;
  for (size_t k = 0; k < leaves.size(); ++k) {
    const Tensor& x = leaves[k];
    if (!x.defined() || !x.requires_grad()) continue;
    const Tensor analytic_grad = x.grad().defined() ? x.grad() : zeros_like(x);
    const std::vector<double> analytic = to_vector<double>(analytic_grad);
    double* base = static_cast<double*>(x.storage()->data());
    const std::vector<int64_t> offsets = logical_offsets(x);
    for (size_t i = 0; i < offsets.size(); ++i) {
      double& element = base[x.offset() + offsets[i]];
      const double saved = element;
      element = saved + options.eps;
      const double plus = weighted_sum(f(leaves), weights);
      element = saved - options.eps;
      const double minus = weighted_sum(f(leaves), weights);
      element = saved;
      const double numeric = (plus - minus) / (2 * options.eps);
      const double error = std::abs(analytic[i] - numeric);
      result.max_abs_error = std::max(result.max_abs_error, error);
      if (result.ok && !(error <= options.atol + options.rtol * std::abs(numeric))) {
        result.ok = false;
        result.message = str_cat("gradcheck: input ", k, " element ", i, ": analytic ", analytic[i],
                                 " vs numeric ", numeric, " (error ", error, ")");
      }
    }
  }
  return result;
}

}  // namespace mrcnn::autograd
