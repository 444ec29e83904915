// Fused optimizer updates: one grid-stride kernel per parameter tensor over ops/optim_kernels.h.
#include "cuda/launch.cuh"
#include "cuda/optim.h"

namespace mrcnn::cuda {

namespace {
template <typename T>
void sgd(T* p, const T* g, T* buffer, SgdScalars<T> s, int64_t n) {
  for_each_index(n, [=] __device__(int64_t i) { sgd_element(p + i, g[i], buffer ? buffer + i : nullptr, s); });
}

template <typename T>
void adamw(T* p, const T* g, T* m, T* v, AdamWScalars<T> s, int64_t n) {
  for_each_index(n, [=] __device__(int64_t i) { adamw_element(p + i, g[i], m + i, v + i, s); });
}

template <typename T>
void average(T* a, const T* v, T weight, int64_t n) {
  for_each_index(n, [=] __device__(int64_t i) { average_element(a + i, v[i], weight); });
}
}  // namespace

void sgd_step(float* p, const float* g, float* buffer, const SgdScalars<float>& s, int64_t n) { sgd(p, g, buffer, s, n); }
void sgd_step(double* p, const double* g, double* buffer, const SgdScalars<double>& s, int64_t n) { sgd(p, g, buffer, s, n); }
void adamw_step(float* p, const float* g, float* m, float* v, const AdamWScalars<float>& s, int64_t n) { adamw(p, g, m, v, s, n); }
void adamw_step(double* p, const double* g, double* m, double* v, const AdamWScalars<double>& s, int64_t n) {
  adamw(p, g, m, v, s, n);
}
void average_step(float* a, const float* v, float weight, int64_t n) { average(a, v, weight, n); }
void average_step(double* a, const double* v, double weight, int64_t n) { average(a, v, weight, n); }

}  // namespace mrcnn::cuda
