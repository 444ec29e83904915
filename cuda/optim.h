// CUDA optimizer updates for ops/optim.cpp: one kernel per parameter running the shared element body.
// Plain C++ declarations: implemented in optim.cu, or by stubs.cpp.
#pragma once
#include <cstdint>

#include "ops/optim_kernels.h"

namespace mrcnn::cuda {

void sgd_step(float* p, const float* g, float* buffer, const SgdScalars<float>& s, int64_t n);
void sgd_step(double* p, const double* g, double* buffer, const SgdScalars<double>& s, int64_t n);
void adamw_step(float* p, const float* g, float* m, float* v, const AdamWScalars<float>& s, int64_t n);
void adamw_step(double* p, const double* g, double* m, double* v, const AdamWScalars<double>& s, int64_t n);
void average_step(float* average, const float* value, float weight, int64_t n);
void average_step(double* average, const double* value, double weight, int64_t n);

}  // namespace mrcnn::cuda
