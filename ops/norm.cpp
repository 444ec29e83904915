// Normalisation kernels over x viewed as [batch, channels, inner]. Sums accumulate in double (PyTorch's
// CPU accumulation type for float too) and each channel or (sample, group) is summed by one thread in
// a fixed order, so results do not depend on the thread count.
#include "ops/norm.h"

#include <cmath>
#include <vector>

#include "autograd/node.h"
#include "cuda/norm.h"
#include "ops/affine_kernels.h"
#include "ops/channel_kernels.h"
#include "ops/elementwise.h"
#include "ops/norm_common.h"
#include "ops/reduce.h"
#include "ops/spatial.h"
#include "ops/view.h"
#include "tensor/dispatch.h"
#include "tensor/parallel.h"

namespace mrcnn::cpu {

namespace {

// Per channel: mean and biased variance, two passes (mean first, then squared deviations).
template <typename T>
void channel_moments(const ChannelLayout& l, const T* x, std::vector<double>& mean, std::vector<double>& var) {
  mean.assign(l.channels, 0.0), var.assign(l.channels, 0.0);
  parallel_for(0, l.channels, channel_grain(l), [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      double total = 0;
      for (int64_t n = 0; n < l.batch; ++n)
        for (const T *p = x + (n * l.channels + c) * l.inner, *e = p + l.inner; p < e; ++p) total += *p;
      const double m = l.count() > 0 ? total / static_cast<double>(l.count()) : 0.0;
      double squares = 0;
      for (int64_t n = 0; n < l.batch; ++n)
        for (const T *p = x + (n * l.channels + c) * l.inner, *e = p + l.inner; p < e; ++p)
          squares += (*p - m) * (*p - m);
      mean[c] = m;
      var[c] = l.count() > 0 ? squares / static_cast<double>(l.count()) : 0.0;
    }
  });
}

// y[n, c, :] = x[n, c, :] * scale[c] + shift[c] (shift may be null: zero); with relu then max(y, 0)
// (NaN kept, as ops::relu), after adding residual[n, c, :] if given, over the row while it is in
// cache: the same bits as the separate ops.
template <typename T>
void channel_affine_forward(const ChannelLayout& l, const T* x, const T* scale, const T* shift, T* y, bool relu = false,
                            const T* residual = nullptr) {
  parallel_for(0, l.batch * l.channels, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(l.inner, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t row = begin; row < end; ++row) {
                   const T a = scale[row % l.channels], b = shift ? shift[row % l.channels] : T(0);
                   const T* src = x + row * l.inner;
                   T* dst = y + row * l.inner;
                   for (int64_t i = 0; i < l.inner; ++i) dst[i] = src[i] * a + b;
                   if (residual) {
                     const T* r = residual + row * l.inner;
                     for (int64_t i = 0; i < l.inner; ++i) dst[i] = relu_of(dst[i] + r[i]);
                   } else if (relu) {
                     for (int64_t i = 0; i < l.inner; ++i) dst[i] = relu_of(dst[i]);
                   }
                 }
               });
}

// channel_affine_relu's input gradient in one pass: relu's backward (dy where y > 0) times scale[c],
// plus zero as channel_affine's backward adds its absent shift (so -0 becomes +0 there too); with
// `gated`, relu's backward itself is written there too (the residual's gradient).
template <typename T>
void channel_affine_relu_input_grad(const ChannelLayout& l, const T* dy, const T* y, const T* scale, T* dx, T* gated) {
  parallel_for(0, l.batch * l.channels, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(l.inner, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t row = begin; row < end; ++row) {
                   const T a = scale[row % l.channels];
                   const int64_t first = row * l.inner, last = first + l.inner;
                   for (int64_t i = first; i < last; ++i) dx[i] = channel_affine_relu_grad(dy[i], y[i], a);
                   if (gated)
                     for (int64_t i = first; i < last; ++i) gated[i] = relu_grad(dy[i], y[i]);
                 }
               });
}

// Training-mode batch norm backward, per channel (PyTorch's formula):
// dx = (dy - mean(dy) - xhat * mean(dy * xhat)) * invstd * w, dw = sum(dy * xhat), db = sum(dy).
template <typename T>
void batch_norm_backward(const ChannelLayout& l, const T* x, const T* dy, const T* mean, const T* invstd, const T* weight,
                         T* dx, T* dweight, T* dbias) {
  const double count = static_cast<double>(l.count());
  parallel_for(0, l.channels, channel_grain(l), [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      double sum_dy = 0, sum_dy_centered = 0;
      for (int64_t n = 0; n < l.batch; ++n) {
        const int64_t offset = (n * l.channels + c) * l.inner;
        for (int64_t i = 0; i < l.inner; ++i) {
          sum_dy += dy[offset + i];
          sum_dy_centered += static_cast<double>(dy[offset + i]) * (x[offset + i] - mean[c]);
        }
      }
      if (dweight) dweight[c] = static_cast<T>(sum_dy_centered * invstd[c]);
      if (dbias) dbias[c] = static_cast<T>(sum_dy);
      if (!dx) continue;
      const T grad_mean = static_cast<T>(sum_dy / count);
      const T proj = static_cast<T>(sum_dy_centered * invstd[c] * invstd[c] / count);
      const T gain = invstd[c] * (weight ? weight[c] : T(1));
      for (int64_t n = 0; n < l.batch; ++n) {
        const int64_t offset = (n * l.channels + c) * l.inner;
        for (int64_t i = 0; i < l.inner; ++i)
          dx[offset + i] = (dy[offset + i] - grad_mean - (x[offset + i] - mean[c]) * proj) * gain;
      }
    }
  });
}

}  // namespace
}  // namespace mrcnn::cpu

namespace mrcnn::ops {

using namespace norm_detail;

namespace {

// Training batch norm on CUDA, composed from ops (reductions and elementwise kernels): autograd
// derives the backward. Biased variance normalises; the running variance gets the unbiased one.
Tensor batch_norm_train_cuda(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                             const Tensor& bias, double momentum, double eps, int64_t count) {
  const std::vector<int64_t> dims = non_channel_dims(x);
  const Tensor m = mean(x, dims, true);
  const Tensor centered = sub(x, m);
  const Tensor v = mean(mul(centered, centered), dims, true);
  Tensor out = mul(centered, pow(add(v, eps), -0.5));
  if (weight.defined()) out = mul(out, per_channel(weight, x));
  if (bias.defined()) out = add(out, per_channel(bias, x));
  autograd::NoGradGuard no_grad;
  const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
  if (running_mean.defined())
    copy_into(running_mean, add(mul(running_mean, 1 - momentum), mul(reshape(m.detach(), {-1}), momentum)));
  if (running_var.defined())
    copy_into(running_var, add(mul(running_var, 1 - momentum), mul(reshape(v.detach(), {-1}), momentum * unbias)));
  return out;
}


// The fixed-affine normalisation of eval batch norm and FrozenBatchNorm2d (then relu, if asked),
// composed from ops so that gradients reach weight/bias (or the statistics) whenever they require grad.
Tensor affine_from_statistics(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                              const Tensor& running_var, double eps, bool relu = false, const Tensor& residual = Tensor()) {
  Tensor scale = pow(add(running_var, eps), -0.5);
  if (weight.defined()) scale = mul(weight, scale);
  Tensor shift = neg(mul(running_mean, scale));
  if (bias.defined()) shift = add(bias, shift);
  return relu ? channel_affine_relu(x, scale, shift, residual) : channel_affine(x, scale, shift);
}

Tensor frozen_batch_norm_impl(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                              const Tensor& running_var, double eps, bool relu, const Tensor& residual = Tensor()) {
  const char* op = relu ? "frozen_batch_norm_relu" : "frozen_batch_norm";
  check_norm_input(x, op);
  check_channel_vector(weight, x, "weight", true, op);
  check_channel_vector(bias, x, "bias", true, op);
  check_channel_vector(running_mean, x, "running_mean", true, op);
  check_channel_vector(running_var, x, "running_var", true, op);
  return affine_from_statistics(x, weight, bias, running_mean, running_var, eps, relu, residual);
}

Tensor batch_norm_train(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                        const Tensor& bias, double momentum, double eps) {
  const cpu::ChannelLayout l = channel_layout(x);
  check(l.count() > 1, "batch_norm: expected more than 1 value per channel when training, got input ",
        shape_str(x.sizes()));
  if (x.device().is_cuda()) return batch_norm_train_cuda(x, running_mean, running_var, weight, bias, momentum, eps, l.count());
  const Tensor xc = contiguous(x.detach());
  const Tensor w = weight.defined() ? contiguous(weight.detach()) : Tensor();
  Tensor out = empty(x.sizes(), x.dtype()), mean = empty({l.channels}, x.dtype()), invstd = empty({l.channels}, x.dtype());
  dispatch_floating(x.dtype(), "batch_norm", [&](auto tag) {
    using T = decltype(tag);
    std::vector<double> m, v;
    cpu::channel_moments<T>(l, xc.data<T>(), m, v);
    std::vector<T> scale(l.channels), shift(l.channels);
    const T* wp = data_or_null<T>(w);
    const Tensor b = bias.defined() ? contiguous(bias.detach()) : Tensor();
    for (int64_t c = 0; c < l.channels; ++c) {
      const double r = 1.0 / std::sqrt(v[c] + eps);
      mean.data<T>()[c] = static_cast<T>(m[c]), invstd.data<T>()[c] = static_cast<T>(r);
      scale[c] = static_cast<T>(r) * (wp ? wp[c] : T(1));
      shift[c] = (b.defined() ? b.data<T>()[c] : T(0)) - static_cast<T>(m[c]) * scale[c];
    }
    cpu::channel_affine_forward<T>(l, xc.data<T>(), scale.data(), shift.data(), out.data<T>());
    // Running statistics are buffers: updated in place, outside autograd, with the unbiased variance.
    const double unbias = static_cast<double>(l.count()) / static_cast<double>(l.count() - 1);
    if (running_mean.defined())
      for (int64_t c = 0; c < l.channels; ++c)
        running_mean.data<T>()[c] = static_cast<T>((1 - momentum) * running_mean.data<T>()[c] + momentum * m[c]);
    if (running_var.defined())
      for (int64_t c = 0; c < l.channels; ++c)
        running_var.data<T>()[c] = static_cast<T>((1 - momentum) * running_var.data<T>()[c] + momentum * v[c] * unbias);
  });
  return autograd::record(
      "batch_norm", out, {x, weight, bias},
      [xc, w, mean, invstd, l, need_x = x.requires_grad(), need_w = weight.defined() && weight.requires_grad(),
       need_b = bias.defined() && bias.requires_grad()](const Tensor& dout) {
        const Tensor d = contiguous(dout);
        Tensor dx = need_x ? empty_like(xc) : Tensor();
        Tensor dw = need_w ? empty({l.channels}, xc.dtype()) : Tensor();
        Tensor db = need_b ? empty({l.channels}, xc.dtype()) : Tensor();
        dispatch_floating(xc.dtype(), "batch_norm backward", [&](auto tag) {
          using T = decltype(tag);
          cpu::batch_norm_backward<T>(l, xc.data<T>(), d.data<T>(), mean.data<T>(), invstd.data<T>(), data_or_null<T>(w),
                                      need_x ? dx.data<T>() : nullptr, need_w ? dw.data<T>() : nullptr,
                                      need_b ? db.data<T>() : nullptr);
        });
        return std::vector<Tensor>{dx, dw, db};
      });
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  const char* op = "batch_norm";
  check_norm_input(x, op);
  check_channel_vector(running_mean, x, "running_mean", !training, op);
  check_channel_vector(running_var, x, "running_var", !training, op);
  check_channel_vector(weight, x, "weight", false, op);
  check_channel_vector(bias, x, "bias", false, op);
  for (const Tensor* buffer : {&running_mean, &running_var})
    check(!buffer->defined() || buffer->is_contiguous(), op, ": running statistics must be contiguous");
  if (!training) return affine_from_statistics(x, weight, bias, running_mean, running_var, eps);
  return batch_norm_train(x, running_mean, running_var, weight, bias, momentum, eps);
}

Tensor frozen_batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                         const Tensor& running_var, double eps) {
  return frozen_batch_norm_impl(x, weight, bias, running_mean, running_var, eps, false);
}

Tensor frozen_batch_norm_relu(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                              const Tensor& running_var, double eps, const Tensor& residual) {
  return frozen_batch_norm_impl(x, weight, bias, running_mean, running_var, eps, true, residual);
}

namespace {

// channel_affine, optionally followed by relu (of the sum with `residual`, if defined) in the same
// pass, and backward relu's gradient in channel_affine's input-gradient pass: the bits of the
// separate ops, one pass over memory each way.
Tensor channel_affine_impl(const Tensor& x, const Tensor& scale, const Tensor& shift, bool relu, const Tensor& residual) {
  const char* op = relu ? "channel_affine_relu" : "channel_affine";
  check_norm_input(x, op);
  check_channel_vector(scale, x, "scale", true, op);
  check_channel_vector(shift, x, "shift", true, op);
  check_residual(residual, x, op);
  const cpu::ChannelLayout l = channel_layout(x);
  const Tensor xc = contiguous(x.detach()), sc = contiguous(scale.detach()), bc = contiguous(shift.detach());
  // y = x * scale + shift, or (shift undefined) x * scale, then relu if asked: one pass on either device.
  const auto affine = [l](const Tensor& in, const Tensor& s, const Tensor& b, bool with_relu, const Tensor& r) {
    Tensor y = empty(in.sizes(), in.dtype(), in.device());
    if (in.device().is_cuda()) {
      cuda::channel_affine(in, s, b, l.channels, l.inner, y, with_relu, r);
      return y;
    }
    dispatch_floating(in.dtype(), "channel_affine", [&](auto tag) {
      using T = decltype(tag);
      cpu::channel_affine_forward<T>(l, in.data<T>(), s.data<T>(), data_or_null<T>(b), y.data<T>(), with_relu, data_or_null<T>(r));
    });
    return y;
  };
  const Tensor out = affine(xc, sc, bc, relu, residual.defined() ? contiguous(residual.detach()) : Tensor());
  // x is kept only when scale needs a gradient (not for a frozen norm: it would hold every conv
  // output); relu's output only with relu (ops::relu would keep it).
  std::vector<Tensor> inputs{x, scale, shift};
  if (residual.defined()) inputs.push_back(residual);
  return autograd::record(
      op, out, inputs,
      [xc = scale.requires_grad() ? xc : Tensor(), y = relu ? out.detach() : Tensor(), sc, l, affine, need_x = x.requires_grad(),
       need_scale = scale.requires_grad(), need_shift = shift.requires_grad(), with_residual = residual.defined(),
       need_residual = residual.defined() && residual.requires_grad()](const Tensor& dout) {
        Tensor d = contiguous(dout);
        std::vector<Tensor> grads;
        if (y.defined() && need_x && !need_scale && !need_shift) {  // a frozen norm + relu: one fused pass
          Tensor dx = empty(d.sizes(), d.dtype(), d.device());
          Tensor gated = need_residual ? empty(d.sizes(), d.dtype(), d.device()) : Tensor();
          if (d.device().is_cuda()) {
            cuda::channel_affine_relu_input_grad(d, y, sc, l.channels, l.inner, dx, gated);
          } else {
            dispatch_floating(d.dtype(), "channel_affine_relu backward", [&](auto tag) {
              using T = decltype(tag);
              cpu::channel_affine_relu_input_grad<T>(l, d.data<T>(), y.data<T>(), sc.data<T>(), dx.data<T>(),
                                                     need_residual ? gated.data<T>() : nullptr);
            });
          }
          grads = {dx, Tensor(), Tensor()};
          if (with_residual) grads.push_back(gated);
          return grads;
        }
        if (y.defined()) d = where(gt(y, 0.0), d, 0.0);  // relu's gradient first (the residual's too)
        const Tensor dx = need_x ? affine(d, sc, Tensor(), false, Tensor()) : Tensor();
        Tensor dscale, dshift;
        if (d.device().is_cuda()) {
          // Per-channel sums through the CUDA reductions (double accumulation).
          const std::vector<int64_t> dims = non_channel_dims(d);
          if (need_scale) dscale = reshape(sum(mul(d, xc), dims), {l.channels});
          if (need_shift) dshift = reshape(sum(d, dims), {l.channels});
        } else {
          dscale = need_scale ? empty({l.channels}, d.dtype()) : Tensor();
          dshift = need_shift ? empty({l.channels}, d.dtype()) : Tensor();
          if (need_scale || need_shift)
            dispatch_floating(d.dtype(), "channel_affine backward", [&](auto tag) {
              using T = decltype(tag);
              cpu::channel_sums<T>(l, d.data<T>(), need_scale ? xc.data<T>() : nullptr, need_scale ? dscale.data<T>() : nullptr,
                                   need_shift ? dshift.data<T>() : nullptr);
            });
        }
        grads = {dx, dscale, dshift};
        if (with_residual) grads.push_back(need_residual ? d : Tensor());
        return grads;
      });
}

}  // namespace

Tensor channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift) {
  return channel_affine_impl(x, scale, shift, false, Tensor());
}

Tensor channel_affine_relu(const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& residual) {
  return channel_affine_impl(x, scale, shift, true, residual);
}

}  // namespace mrcnn::ops
