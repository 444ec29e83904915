// torch.nn.init formulas over our random numbers.
#include "nn/init.h"

#include <cmath>

#include "autograd/node.h"

namespace mrcnn::nn::init {

namespace {
thread_local int skip_depth = 0;
int64_t receptive_field(const Tensor& w) {
  int64_t r = 1;
  for (int64_t d = 2; d < w.dim(); ++d) r *= w.size(d);
  return r;
}
void fill_from(const Tensor& t, const Tensor& values) {
  autograd::NoGradGuard no_grad;
  copy_into(t, copy_as(values, t.dtype(), t.device()));
}
}  // namespace

int64_t fan_in(const Tensor& w) {
  check(w.dim() >= 2, "init: fan in/out need a weight with >= 2 dims, got ", shape_str(w.sizes()));
  return w.size(1) * receptive_field(w);
}

int64_t fan_out(const Tensor& w) {
  check(w.dim() >= 2, "init: fan in/out need a weight with >= 2 dims, got ", shape_str(w.sizes()));
  return w.size(0) * receptive_field(w);
}

SkipInit::SkipInit() { ++skip_depth; }
SkipInit::~SkipInit() { --skip_depth; }
bool skipping_init() { return skip_depth > 0; }

void uniform_(const Tensor& t, double low, double high, Generator* generator) {
  if (skipping_init()) return;
  Tensor u = rand(t.sizes(), kFloat64, kCPU, generator);
  double* p = u.data<double>();
  for (int64_t i = 0, count = u.numel(); i < count; ++i) p[i] = low + (high - low) * p[i];
  fill_from(t, u);
}

void normal_(const Tensor& t, double mean, double std, Generator* generator) {
  if (skipping_init()) return;
  Tensor n = randn(t.sizes(), kFloat64, kCPU, generator);
  double* p = n.data<double>();
  for (int64_t i = 0, count = n.numel(); i < count; ++i) p[i] = mean + std * p[i];
  fill_from(t, n);
}

void constant_(const Tensor& t, double value) {
  if (!skipping_init()) fill_from(t, full(t.sizes(), value, kFloat64));
}

void kaiming_uniform_(const Tensor& weight, double a, Generator* generator) {
  const double bound = std::sqrt(2.0 / (1.0 + a * a)) * std::sqrt(3.0 / static_cast<double>(fan_in(weight)));
  uniform_(weight, -bound, bound, generator);
}

void kaiming_normal_fan_out_(const Tensor& weight, Generator* generator) {
  normal_(weight, 0.0, std::sqrt(2.0 / static_cast<double>(fan_out(weight))), generator);
}

void default_bias_(const Tensor& bias, const Tensor& weight, Generator* generator) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in(weight)));
  uniform_(bias, -bound, bound, generator);
}

}  // namespace mrcnn::nn::init
