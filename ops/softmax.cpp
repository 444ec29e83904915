// softmax/log_softmax over one dim of a contiguous [outer, D, inner] view: each (o, i) lane is
// max-subtracted, exponentiated and normalised by one thread. Backward is composed from ops.
#include "ops/softmax.h"

#include <cmath>

#include "autograd/node.h"
#include "cuda/softmax.h"
#include "ops/elementwise.h"
#include "ops/elementwise_functors.h"
#include "ops/lane_kernels.h"
#include "ops/reduce.h"
#include "ops/view.h"
#include "tensor/dispatch.h"
#include "tensor/parallel.h"

namespace mrcnn::ops {

namespace {

Tensor softmax_forward(const Tensor& x, int64_t dim, bool log_output, const char* op) {
  const Tensor xc = contiguous(x.detach());
  Tensor out = empty(x.sizes(), x.dtype(), x.device());
  if (x.numel() == 0) return out;
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.sizes()[d];
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.sizes()[d];
  const int64_t n = x.dim() == 0 ? 1 : x.sizes()[dim];
  if (x.device().is_cuda()) {
    cuda::softmax_forward(xc, outer, n, inner, log_output, out);
    return out;
  }
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* in = xc.data<T>();
    T* o = out.data<T>();
    parallel_for(0, outer * inner, std::max<int64_t>(1, kParallelGrain / (4 * n)), [&](int64_t begin, int64_t end) {
      for (int64_t lane = begin; lane < end; ++lane)
        softmax_lane(in, o, (lane / inner) * n * inner + lane % inner, n, inner, log_output);
    });
  });
  return out;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "softmax");
  Tensor out = softmax_forward(x, dim, false, "softmax");
  return autograd::record("softmax", out, {x}, [y = out.detach(), dim](const Tensor& d) {
    // dx = y * (d - sum(d * y, dim))
    return std::vector<Tensor>{mul(y, sub(d, sum(mul(d, y), {dim}, true)))};
  });
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "log_softmax");
  Tensor out = softmax_forward(x, dim, true, "log_softmax");
  return autograd::record("log_softmax", out, {x}, [y = out.detach(), dim](const Tensor& d) {
    // dx = d - exp(y) * sum(d, dim)
    return std::vector<Tensor>{sub(d, mul(exp(y), sum(d, {dim}, true)))};
  });
}

}  // namespace mrcnn::ops
