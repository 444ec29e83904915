// max/min along one dim: one thread per output lane running the CPU's lane body (ops/lane_kernels.h).
#include "cuda/launch.cuh"
#include "cuda/reduce.h"
#include "ops/lane_kernels.h"
#include "tensor/dispatch.h"

namespace mrcnn::cuda {

namespace {
// Kernel bodies live in function templates: device lambdas may not sit inside dispatch's generic lambdas.
template <typename T>
void extreme(const T* in, int64_t outer, int64_t reduced, int64_t inner, bool largest, T* v, int64_t* idx) {
  for_each_index(outer * inner, [=] __device__(int64_t job) {
    extreme_lane(in + (job / inner) * reduced * inner + job % inner, reduced, inner, largest, v + job, idx + job);
  });
}
}  // namespace

void arg_extreme(const Tensor& x, int64_t outer, int64_t reduced, int64_t inner, bool largest, const Tensor& values,
                 const Tensor& indices) {
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, uint8_t>) {
      extreme<T>(static_cast<const T*>(x.raw_data()), outer, reduced, inner, largest, static_cast<T*>(values.raw_data()),
                 static_cast<int64_t*>(indices.raw_data()));
    }
  });
}

}  // namespace mrcnn::cuda
