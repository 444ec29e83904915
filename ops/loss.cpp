// Losses: per-element terms from the elementwise family, then the reduction; cross entropy from
// log_softmax and gather. Gradients follow from the pieces.
#include "ops/loss.h"

#include "ops/elementwise.h"
#include "ops/index.h"
#include "ops/reduce.h"
#include "ops/softmax.h"
#include "ops/view.h"

namespace mrcnn::ops {

namespace {
Tensor reduce(const Tensor& per_element, Reduction reduction) {
  switch (reduction) {
    case Reduction::None: return per_element;
    case Reduction::Sum: return sum(per_element);
    case Reduction::Mean: return mean(per_element);
  }
  return per_element;
}

void check_same_shape(const char* op, const Tensor& input, const Tensor& target) {
  check(input.sizes() == target.sizes(), op, ": input ", shape_str(input.sizes()), " and target ",
        shape_str(target.sizes()), " must have the same shape");
}
}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction reduction) {
  check(logits.dim() == 2, "cross_entropy: logits must be [N, K], got ", shape_str(logits.sizes()));
  check(target.dim() == 1 && target.size(0) == logits.size(0), "cross_entropy: target ", shape_str(target.sizes()),
        " must be [N] for logits ", shape_str(logits.sizes()));
  check(target.dtype() == kInt64, "cross_entropy: target must be int64 class indices, got ", dtype_name(target.dtype()));
  const bool host_target_for_cuda = target.device().is_cpu() && logits.device().is_cuda();
  check(target.device() == logits.device() || host_target_for_cuda, "cross_entropy: target is on ", target.device().str(),
        " but logits on ", logits.device().str());
  // The range check reads the classes on the host (from the GPU: a copy of N integers and a wait).
  // gather takes that host copy as it is (it uploads host indices for GPU data), so a GPU target is
  // downloaded once, not again for gather's own check.
  const Tensor host = target.device().is_cpu() ? contiguous(target) : to(target, kCPU);
  const int64_t* t = host.data<int64_t>();
  for (int64_t i = 0, count = host.numel(); i < count; ++i)
    check(t[i] >= 0 && t[i] < logits.size(1), "cross_entropy: target ", t[i], " at position ", i,
          " is out of range for ", logits.size(1), " classes");
  const Tensor picked = gather(log_softmax(logits, 1), 1, unsqueeze(host, 1));
  return reduce(neg(reshape(picked, {-1})), reduction);
}

Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, Reduction reduction) {
  check_same_shape("binary_cross_entropy_with_logits", logits, target);
  return reduce(binary_cross_entropy_with_logits_elementwise(logits, target), reduction);
}

Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, double beta, Reduction reduction) {
  check_same_shape("smooth_l1_loss", input, target);
  return reduce(smooth_l1_elementwise(input, target, beta), reduction);
}

Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  check_same_shape("l1_loss", input, target);
  return reduce(abs(sub(input, target)), reduction);
}

}  // namespace mrcnn::ops
