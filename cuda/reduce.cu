// max/min along one dim: one thread per output lane scans in order (first extreme wins), as the CPU.
#include "cuda/launch.cuh"
#include "cuda/reduce.h"
#include "tensor/dispatch.h"

namespace mrcnn::cuda {

namespace {
// Kernel bodies live in function templates: device lambdas may not sit inside dispatch's generic lambdas.
template <typename T>
void extreme(const T* in, int64_t outer, int64_t reduced, int64_t inner, bool largest, T* v, int64_t* idx) {
      for_each_index(outer * inner, [=] __device__(int64_t job) {
        const int64_t o = job / inner, i = job % inner;
        const T* p = in + o * reduced * inner + i;
        T best = p[0];
        int64_t best_r = 0;
        for (int64_t r = 1; r < reduced && best == best; ++r) {
          const T value = p[r * inner];
          if (value != value || (largest ? value > best : value < best)) {
            best = value;
            best_r = r;
          }
        }
        v[job] = best;
        idx[job] = best_r;
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
