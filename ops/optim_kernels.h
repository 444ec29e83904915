// One parameter element's optimizer update, shared by the CPU loop (ops/optim.cpp) and the CUDA
// kernel (cuda/optim.cu): PyTorch's SGD (momentum, dampening, nesterov, weight decay) and AdamW
// formulas, in the parameter's dtype and PyTorch's order of operations, and the moving average of
// weights (torch.lerp's formula).
#pragma once
#include "cuda/host_device.h"
#include "ops/elementwise_functors.h"

namespace mrcnn {

template <typename T>
struct SgdScalars {
  T weight_decay, momentum, damp, lr;  // damp = 1 - dampening
  bool nesterov, first;                // first: the momentum buffer starts as the step itself
};

template <typename T>
MRCNN_HD inline void sgd_element(T* p, T g, T* buffer, const SgdScalars<T>& s) {
  T d = g + s.weight_decay * *p;
  if (buffer != nullptr) {
    *buffer = s.first ? d : s.momentum * *buffer + s.damp * d;
    d = s.nesterov ? d + s.momentum * *buffer : *buffer;
  }
  *p -= s.lr * d;
}

template <typename T>
struct AdamWScalars {
  T beta1, beta2, decay, step_size, sqrt_correction2, eps;  // decay = 1 - lr * weight_decay
};

template <typename T>
MRCNN_HD inline void adamw_element(T* p, T g, T* m, T* v, const AdamWScalars<T>& s) {
  *p *= s.decay;
  *m = s.beta1 * *m + (1 - s.beta1) * g;
  *v = s.beta2 * *v + (1 - s.beta2) * g * g;
  *p -= s.step_size * *m / (m_sqrt(*v) / s.sqrt_correction2 + s.eps);
}

// average += weight * (value - average), torch.lerp_ for weight < 0.5. In this form a value that
// does not change (a frozen buffer) leaves its average exactly equal to it.
template <typename T>
MRCNN_HD inline void average_element(T* average, T value, T weight) {
  *average += weight * (value - *average);
}

}  // namespace mrcnn
