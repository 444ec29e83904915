// The float32 CPU kernels this machine selects, against float64 (apps/selftest_kernels.cpp), and
// the case type both halves of `mrcnn selftest` list their rows in.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace mrcnn::apps {

// One selftest row: a named function of its inputs (leaf tensors for the gradchecks, shapes for the
// float32 kernels, whose values are drawn per dtype).
template <typename Input>
struct SelftestCase {
  std::string name;
  std::function<Tensor(const std::vector<Tensor>&)> f;
  std::vector<Input> inputs;
};

// Bound on max |float32 - float64| / max |float64| per output and gradient. Rounding reaches
// 2e-7 to 3e-6 of the scale on the development machine (Winograd's transforms the most); a kernel
// that reads or writes a wrong element errs by the scale itself, 1e4 times the bound.
inline constexpr double kFloat32KernelBound = 1e-4;

// Prints one table row per case and counts it in passed or failed.
void selftest_float32_kernels(int& passed, int& failed);

}  // namespace mrcnn::apps
