// Group norm (F.group_norm), alone or followed by relu of its sum with a residual
// (ops::group_norm_relu, ResNet's norm + relu under GroupNorm). CPU: sums accumulate in double and
// each (sample, group) or channel is summed by one thread in a fixed order, so results do not depend
// on the thread count; the fused op gives the separate ops' bits.
#include <cmath>
#include <vector>

#include "autograd/node.h"
#include "cuda/norm.h"
#include "ops/affine_kernels.h"
#include "ops/channel_kernels.h"
#include "ops/elementwise.h"
#include "ops/norm.h"
#include "ops/norm_common.h"
#include "ops/reduce.h"
#include "tensor/dispatch.h"
#include "tensor/parallel.h"

namespace mrcnn::cpu {

namespace {

// Group norm over x [batch, channels, inner] with `groups` groups: each (n, g) block of
// channels/groups * inner elements is contiguous.
struct GroupLayout {
  ChannelLayout l;
  int64_t groups = 1;
  int64_t per_group() const { return l.channels / groups; }
  int64_t block() const { return per_group() * l.inner; }
};

// y = x * a + shift per (n, g) statistics and channel affine; with relu, y = relu(that [+ residual])
// in the same pass: the expressions of group_norm, add and relu one after the other.
template <typename T>
void group_norm_forward(const GroupLayout& g, const T* x, const T* weight, const T* bias, double eps, T* y, T* mean,
                        T* invstd, bool relu, const T* residual) {
  const int64_t blocks = g.l.batch * g.groups;
  parallel_for(0, blocks, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(g.block(), 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t b = begin; b < end; ++b) {
                   const T* src = x + b * g.block();
                   double total[1] = {0}, squares[1] = {0};
                   add_lane_sums(g.block(), [&](int64_t i, double (&t)[1]) { t[0] = src[i]; }, total);
                   const double m = total[0] / static_cast<double>(g.block());
                   add_lane_sums(g.block(), [&](int64_t i, double (&t)[1]) { t[0] = (src[i] - m) * (src[i] - m); }, squares);
                   const double r = 1.0 / std::sqrt(squares[0] / static_cast<double>(g.block()) + eps);
                   mean[b] = static_cast<T>(m), invstd[b] = static_cast<T>(r);
                   for (int64_t k = 0; k < g.per_group(); ++k) {
                     const int64_t c = b % g.groups * g.per_group() + k;
                     T a, shift;
                     group_norm_affine(mean[b], invstd[b], weight ? weight[c] : T(1), bias ? bias[c] : T(0), a, shift);
                     const int64_t offset = b * g.block() + k * g.l.inner;
                     const T* s = x + offset;
                     T* d = y + offset;
                     if (!relu) {
                       for (int64_t i = 0; i < g.l.inner; ++i) d[i] = s[i] * a + shift;
                     } else if (residual) {
                       const T* add = residual + offset;
                       for (int64_t i = 0; i < g.l.inner; ++i) {
                         const T normalised = s[i] * a + shift;
                         d[i] = relu_of(normalised + add[i]);
                       }
                     } else {
                       for (int64_t i = 0; i < g.l.inner; ++i) d[i] = relu_of(s[i] * a + shift);
                     }
                   }
                 }
               });
}

// Backward in two passes over memory (x and the output gradient are read twice, not three times):
//   1. per group, the images in order: each channel row's sums of dy and dy * xhat (add_lane_sums),
//      which give the (n, g) block's mean(dxhat) and mean(dxhat * xhat) (times w[c], added over the
//      block's rows in order) and, added over the images in order, the channel's dbias and dweight:
//      an order fixed by the shape, whatever the thread count;
//   2. per block: dx = invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * w[c].
template <typename T>
void group_norm_backward(const GroupLayout& g, const T* x, const T* dy, const T* weight, const T* mean, const T* invstd,
                         T* dx, T* dweight, T* dbias) {
  const int64_t inner = g.l.inner, per_group = g.per_group(), blocks = g.l.batch * g.groups;
  std::vector<T> block_mean_dxhat(static_cast<size_t>(blocks)), block_mean_dxhat_xhat(static_cast<size_t>(blocks));
  const bool need_channel = dweight != nullptr || dbias != nullptr;
  if (dx || need_channel)
    parallel_for(0, g.groups, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(g.l.batch * g.block(), 1)),
                 [&](int64_t begin, int64_t end) {
                   std::vector<double> dw(static_cast<size_t>(per_group)), db(static_cast<size_t>(per_group));
                   for (int64_t grp = begin; grp < end; ++grp) {
                     std::fill(dw.begin(), dw.end(), 0.0), std::fill(db.begin(), db.end(), 0.0);
                     for (int64_t n = 0; n < g.l.batch; ++n) {
                       const int64_t b = n * g.groups + grp, base = b * g.block();
                       const T m = mean[b], r = invstd[b];
                       double sum_dxhat = 0, sum_dxhat_xhat = 0;
                       for (int64_t k = 0; k < per_group; ++k) {
                         const T w = weight ? weight[grp * per_group + k] : T(1);
                         const int64_t offset = base + k * inner;
                         const T *d = dy + offset, *xs = x + offset;
                         // This row's sum of dy and of dy * xhat; dxhat = dy * w makes the block's sums w times those.
                         double row[2] = {0, 0};
                         add_lane_sums(inner, [&](int64_t i, double (&t)[2]) {
                           t[0] = d[i], t[1] = static_cast<double>(d[i]) * (xs[i] - m) * r;
                         }, row);
                         sum_dxhat += row[0] * w, sum_dxhat_xhat += row[1] * w;
                         db[k] += row[0], dw[k] += row[1];
                       }
                       block_mean_dxhat[b] = static_cast<T>(sum_dxhat / static_cast<double>(g.block()));
                       block_mean_dxhat_xhat[b] = static_cast<T>(sum_dxhat_xhat / static_cast<double>(g.block()));
                     }
                     for (int64_t k = 0; k < per_group; ++k) {
                       if (dweight) dweight[grp * per_group + k] = static_cast<T>(dw[k]);
                       if (dbias) dbias[grp * per_group + k] = static_cast<T>(db[k]);
                     }
                   }
                 });
  if (!dx) return;
  parallel_for(0, blocks, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(g.block(), 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t b = begin; b < end; ++b) {
                   const int64_t base = b * g.block();
                   const T a = block_mean_dxhat[b], bb = block_mean_dxhat_xhat[b], m = mean[b], r = invstd[b];
                   for (int64_t k = 0; k < per_group; ++k) {
                     const T w = weight ? weight[b % g.groups * per_group + k] : T(1);
                     const int64_t offset = base + k * inner;
                     const T *d = dy + offset, *xs = x + offset;
                     T* out = dx + offset;
                     for (int64_t i = 0; i < inner; ++i) out[i] = group_norm_dx(d[i], xs[i], m, r, w, a, bb);
                   }
                 }
               });
}

}  // namespace
}  // namespace mrcnn::cpu

namespace mrcnn::ops {

using namespace norm_detail;

namespace {

// Group norm on CUDA: the statistics and the backward's sums through the CUDA reductions (double
// accumulation), the output and the input gradient in one elementwise pass each with the CPU's
// bodies. Backward keeps x and the [N, G] statistics only.
Tensor group_norm_cuda(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias, double eps) {
  const cpu::ChannelLayout l = channel_layout(x);
  const Tensor xc = contiguous(x.detach());
  const Tensor w = weight.defined() ? contiguous(weight.detach()) : Tensor();
  const Tensor b = bias.defined() ? contiguous(bias.detach()) : Tensor();
  Tensor group_mean, invstd;
  Tensor out = empty(x.sizes(), x.dtype(), x.device());
  {
    autograd::NoGradGuard no_grad;
    const Tensor grouped = reshape(xc, {l.batch, num_groups, -1});
    group_mean = mean(grouped, {2});  // [N, G]
    const Tensor centered = sub(grouped, unsqueeze(group_mean, 2));
    invstd = contiguous(pow(add(mean(mul(centered, centered), {2}), eps), -0.5));
    cuda::group_norm_forward(xc, group_mean, invstd, w, b, num_groups, l.channels, l.inner, out);
  }
  return autograd::record(
      "group_norm", out, {x, weight, bias},
      [xc, w, group_mean, invstd, l, num_groups, need_x = x.requires_grad(), need_w = weight.defined() && weight.requires_grad(),
       need_b = bias.defined() && bias.requires_grad()](const Tensor& dout) {
        const Tensor d = contiguous(dout);
        const auto by_group = [&](const Tensor& t) { return reshape(t, {l.batch, num_groups, -1}); };
        const Tensor xhat = need_x || need_w
                                ? reshape(mul(sub(by_group(xc), unsqueeze(group_mean, 2)), unsqueeze(invstd, 2)), xc.sizes())
                                : Tensor();
        Tensor dx, dw, db;
        if (need_x) {
          const Tensor dxhat = w.defined() ? mul(d, per_channel(w, d)) : d;
          const Tensor mean_dxhat = contiguous(mean(by_group(dxhat), {2}));
          const Tensor mean_dxhat_xhat = contiguous(mean(mul(by_group(dxhat), by_group(xhat)), {2}));
          dx = empty(xc.sizes(), xc.dtype(), xc.device());
          cuda::group_norm_input_grad(d, xc, group_mean, invstd, w, mean_dxhat, mean_dxhat_xhat, num_groups, l.channels,
                                      l.inner, dx);
        }
        if (need_w) dw = reshape(sum(mul(d, xhat), non_channel_dims(d)), {l.channels});
        if (need_b) db = reshape(sum(d, non_channel_dims(d)), {l.channels});
        return std::vector<Tensor>{dx, dw, db};
      });
}

// group_norm, then relu of its sum with `residual` (if defined): on the CPU one op (one pass
// forward after the statistics, relu's gradient folded into group norm's two backward passes); on
// CUDA the separate ops.
Tensor group_norm_impl(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias, double eps, bool relu,
                       const Tensor& residual) {
  const char* op = relu ? "group_norm_relu" : "group_norm";
  check_norm_input(x, op);
  check(num_groups >= 1 && x.size(1) % num_groups == 0, op, ": ", x.size(1), " channels of ", shape_str(x.sizes()),
        " cannot be split into ", num_groups, " groups");
  check_channel_vector(weight, x, "weight", false, op);
  check_channel_vector(bias, x, "bias", false, op);
  check_residual(residual, x, op);
  if (x.device().is_cuda()) {
    const Tensor normalised = group_norm_cuda(x, num_groups, weight, bias, eps);
    return relu ? ops::relu(residual.defined() ? add(normalised, residual) : normalised) : normalised;
  }
  cpu::GroupLayout g;
  g.l = channel_layout(x), g.groups = num_groups;
  const Tensor xc = contiguous(x.detach());
  const Tensor w = weight.defined() ? contiguous(weight.detach()) : Tensor();
  const Tensor b = bias.defined() ? contiguous(bias.detach()) : Tensor();
  const Tensor rc = residual.defined() ? contiguous(residual.detach()) : Tensor();
  Tensor out = empty(x.sizes(), x.dtype());
  Tensor mean = empty({g.l.batch * num_groups}, x.dtype()), invstd = empty({g.l.batch * num_groups}, x.dtype());
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    cpu::group_norm_forward<T>(g, xc.data<T>(), data_or_null<T>(w), data_or_null<T>(b), eps, out.data<T>(),
                               mean.data<T>(), invstd.data<T>(), relu, data_or_null<T>(rc));
  });
  std::vector<Tensor> inputs{x, weight, bias};
  if (residual.defined()) inputs.push_back(residual);
  return autograd::record(
      op, out, inputs,
      [xc, w, mean, invstd, g, y = relu ? out.detach() : Tensor(), need_x = x.requires_grad(),
       need_w = weight.defined() && weight.requires_grad(), need_b = bias.defined() && bias.requires_grad(),
       with_residual = residual.defined(), need_residual = residual.defined() && residual.requires_grad()](const Tensor& dout) {
        // With relu, its gradient (also the residual's) goes into group norm's backward. Folding
        // relu_grad into the norm's summing loops instead measured twice as slow (the select keeps
        // the compiler from vectorising them, and the second pass must select again).
        const Tensor d = y.defined() ? relu_backward(contiguous(dout), y) : contiguous(dout);
        Tensor dx = need_x ? empty_like(xc) : Tensor();
        Tensor dw = need_w ? empty({g.l.channels}, xc.dtype()) : Tensor();
        Tensor db = need_b ? empty({g.l.channels}, xc.dtype()) : Tensor();
        dispatch_floating(xc.dtype(), "group_norm backward", [&](auto tag) {
          using T = decltype(tag);
          cpu::group_norm_backward<T>(g, xc.data<T>(), d.data<T>(), data_or_null<T>(w), mean.data<T>(), invstd.data<T>(),
                                      need_x ? dx.data<T>() : nullptr, need_w ? dw.data<T>() : nullptr,
                                      need_b ? db.data<T>() : nullptr);
        });
        std::vector<Tensor> grads{dx, dw, db};
        if (with_residual) grads.push_back(need_residual ? d : Tensor());
        return grads;
      });
}

}  // namespace

Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias, double eps) {
  return group_norm_impl(x, num_groups, weight, bias, eps, false, Tensor());
}

Tensor group_norm_relu(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias, double eps,
                       const Tensor& residual) {
  return group_norm_impl(x, num_groups, weight, bias, eps, true, residual);
}

}  // namespace mrcnn::ops
