// softmax along one dim: one thread per lane, max-subtracted, in the CPU's order of operations.
#include "cuda/launch.cuh"
#include "cuda/softmax.h"
#include "ops/elementwise_functors.h"
#include "tensor/dispatch.h"

namespace mrcnn::cuda {

namespace {
// Kernel bodies live in function templates: device lambdas may not sit inside dispatch's generic lambdas.
template <typename T>
void lanes(const T* in, T* o, int64_t outer, int64_t n, int64_t inner, bool log_output) {
  for_each_index(outer * inner, [=] __device__(int64_t lane) {
    const int64_t base = (lane / inner) * n * inner + lane % inner;
    T peak = in[base];
    for (int64_t j = 1; j < n; ++j) peak = peak < in[base + j * inner] ? in[base + j * inner] : peak;
    T total = 0;
    for (int64_t j = 0; j < n; ++j) {
      const T e = m_exp(in[base + j * inner] - peak);
      total += e;
      if (!log_output) o[base + j * inner] = e;
    }
    const T log_total = m_log(total);
    for (int64_t j = 0; j < n; ++j) {
      if (log_output) o[base + j * inner] = in[base + j * inner] - peak - log_total;
      else o[base + j * inner] /= total;
    }
  });
}
}  // namespace

void softmax_forward(const Tensor& x, int64_t outer, int64_t n, int64_t inner, bool log_output, const Tensor& out) {
  dispatch_floating(x.dtype(), "softmax", [&](auto tag) {
    using T = decltype(tag);
    lanes<T>(static_cast<const T*>(x.raw_data()), static_cast<T*>(out.raw_data()), outer, n, inner, log_output);
  });
}

}  // namespace mrcnn::cuda
