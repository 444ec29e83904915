// softmax along one dim: one thread per lane running the CPU's lane body (ops/lane_kernels.h).
#include "cuda/launch.cuh"
#include "cuda/softmax.h"
#include "ops/lane_kernels.h"
#include "tensor/dispatch.h"

namespace mrcnn::cuda {

namespace {
// Kernel bodies live in function templates: device lambdas may not sit inside dispatch's generic lambdas.
template <typename T>
void lanes(const T* in, T* o, int64_t outer, int64_t n, int64_t inner, bool log_output) {
  for_each_index(outer * inner, [=] __device__(int64_t lane) {
    softmax_lane(in, o, (lane / inner) * n * inner + lane % inner, n, inner, log_output);
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
