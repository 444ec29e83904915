// The float32 CPU kernels this machine selects, against float64 (apps/selftest_kernels.cpp).
#pragma once

namespace mrcnn::apps {

// Bound on max |float32 - float64| / max |float64| per output and gradient. Rounding reaches
// 2e-7 to 3e-6 of the scale on the development machine (Winograd's transforms the most); a kernel
// that reads or writes a wrong element errs by the scale itself, 1e4 times the bound.
inline constexpr double kFloat32KernelBound = 1e-4;

// Prints one table row per case and counts it in passed or failed.
void selftest_float32_kernels(int& passed, int& failed);

}  // namespace mrcnn::apps
