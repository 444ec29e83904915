// gradcheck: compares the analytic gradient of sum(f(x) * R), R a fixed random tensor, with central
// differences in float64. Used by every differentiable op's test.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace mrcnn::autograd {

struct GradcheckOptions {
  double eps = 1e-6;    // central-difference step
  double atol = 1e-6;   // |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-4;
  uint64_t seed = 1234;  // for R
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0;  // over all checked elements
  std::string message;       // the first failing input/element, or empty
};

// Every input that requires grad must be float64; the function must return a float64 tensor.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});

}  // namespace mrcnn::autograd
