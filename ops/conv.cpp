// conv2d and conv_transpose2d: checks, autograd wiring and the CUDA calls. Both run on three CPU
// kernels of the direct convolution (ops/conv_cpu.cpp): forward, backward-input and
// backward-weight; a transposed convolution is the backward-input of the conv whose input it
// produces, so its forward/backward reuse the same kernels with roles swapped.
#include "ops/conv.h"

#include <algorithm>
#include <vector>

#include "autograd/node.h"
#include "cuda/conv.h"
#include "ops/reduce.h"
#include "ops/channel_kernels.h"
#include "ops/conv_geometry.h"
#include "ops/conv_profile.h"
#include "ops/view.h"
#include "tensor/dispatch.h"
#include "tensor/flop_count.h"
#include "tensor/parallel.h"

namespace mrcnn::ops {

namespace {

// Checks shared by conv2d and conv_transpose2d: operand ranks, dtypes, devices, groups and bias.
// The bias has one element per output channel: weight dim 0 for conv2d, dim 1 times groups for the transpose.
void check_conv_operands(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t groups, bool transposed,
                         const char* op) {
  check_spatial_input(x, 4, "[N, C, H, W]", op);
  check(weight.defined() && weight.dim() == 4, op, ": expected a 4-D weight, got ",
        weight.defined() ? shape_str(weight.sizes()) : std::string("an undefined tensor"));
  check(weight.dtype() == x.dtype() && weight.device() == x.device(), op, ": weight is ", dtype_name(weight.dtype()),
        " on ", weight.device().str(), " but input is ", dtype_name(x.dtype()), " on ", x.device().str());
  check(groups >= 1, op, ": groups must be >= 1, got ", groups);
  const int64_t bias_size = transposed ? weight.size(1) * groups : weight.size(0);
  if (bias.defined())
    check(bias.dim() == 1 && bias.size(0) == bias_size && bias.dtype() == x.dtype() && bias.device() == x.device(), op,
          ": bias must be a ", dtype_name(x.dtype()), " vector of ", bias_size, " elements, got ",
          dtype_name(bias.dtype()), " ", shape_str(bias.sizes()));
}

void check_window(Size2 stride, Size2 padding, Size2 dilation, const char* op) {
  check(stride.h >= 1 && stride.w >= 1, op, ": stride must be >= 1, got (", stride.h, ", ", stride.w, ")");
  check(padding.h >= 0 && padding.w >= 0, op, ": padding must be >= 0, got (", padding.h, ", ", padding.w, ")");
  check(dilation.h >= 1 && dilation.w >= 1, op, ": dilation must be >= 1, got (", dilation.h, ", ", dilation.w, ")");
}

// Wires the backward of conv2d (transposed = false) or conv_transpose2d (true), both expressed with
// the direct convolution g: the transpose's input gradient is g's forward, its weight gradient is
// g's weight gradient with the roles of input and output swapped.
cuda::ConvShape cuda_shape(const cpu::ConvGeometry& g) {
  cuda::ConvShape s;
  s.batch = g.batch, s.in_channels = g.in_channels, s.in_h = g.in_h, s.in_w = g.in_w;
  s.out_channels = g.out_channels, s.out_h = g.out_h, s.out_w = g.out_w, s.kernel_h = g.kernel_h, s.kernel_w = g.kernel_w;
  s.stride_h = g.stride.h, s.stride_w = g.stride.w, s.pad_h = g.padding.h, s.pad_w = g.padding.w;
  s.dilation_h = g.dilation.h, s.dilation_w = g.dilation.w, s.groups = g.groups;
  return s;
}

// The CUDA backward: the same three products as the CPU's, through cuDNN; the bias gradient is a sum.
std::vector<Tensor> conv_backward_cuda(const Tensor& d, const Tensor& xc, const Tensor& wc, const cpu::ConvGeometry& g,
                                       bool transposed, bool need_x, bool need_w, bool need_b) {
  Tensor dx, dw, db;
  const cuda::ConvShape s = cuda_shape(g);
  if (need_b) db = sum(d, {0, 2, 3});
  const char* op = transposed ? "conv_transpose2d" : "conv2d";
  if (need_x) {
    dx = empty(xc.sizes(), xc.dtype(), xc.device());
    const ops::detail::ConvCallTimer timer(op, "input grad", g, transposed, d.device());
    if (transposed) cuda::conv_forward(s, d, wc, dx);
    else cuda::conv_backward_input(s, d, wc, dx);
  }
  if (need_w) {
    dw = empty(wc.sizes(), wc.dtype(), wc.device());
    const ops::detail::ConvCallTimer timer(op, "weight grad", g, transposed, d.device());
    if (transposed) cuda::conv_backward_weight(s, xc, d, dw);
    else cuda::conv_backward_weight(s, d, xc, dw);
  }
  return {dx, dw, db};
}

// A direct convolution's multiply-adds; its input gradient and weight gradient take as many.
int64_t conv_flops(const cpu::ConvGeometry& g) { return 2 * g.batch * g.out_channels * g.out_plane() * g.col_rows(); }

Tensor record_conv(const char* op, const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                   const Tensor& xc, const Tensor& wc, const cpu::ConvGeometry& g, bool transposed) {
  return autograd::record(
      op, out, {x, weight, bias},
      [xc, wc, g, transposed, need_x = x.requires_grad(), need_w = weight.requires_grad(),
       need_b = bias.defined() && bias.requires_grad()](const Tensor& dout) {
        const Tensor d = contiguous(dout);
        count_flops(conv_flops(g) * (int64_t{need_x} + int64_t{need_w}));
        const char* op_name = transposed ? "conv_transpose2d" : "conv2d";
        if (d.device().is_cuda()) return conv_backward_cuda(d, xc, wc, g, transposed, need_x, need_w, need_b);
        Tensor dx, dw, db;
        dispatch_floating(d.dtype(), "conv backward", [&](auto tag) {
          using T = decltype(tag);
          if (need_b) {
            const int64_t channels = transposed ? g.in_channels : g.out_channels;
            db = empty({channels}, d.dtype());
            // Summed per channel in place: a reduction over dims (0, 2, 3) would copy dout transposed.
            const cpu::ChannelLayout layout{d.size(0), channels, d.size(2) * d.size(3)};
            cpu::channel_sums<T>(layout, d.data<T>(), nullptr, nullptr, db.data<T>());
          }
          if (need_x) {
            dx = empty(xc.sizes(), xc.dtype());
            const ops::detail::ConvCallTimer timer(op_name, "input grad", g, transposed, kCPU);
            if (transposed) cpu::conv_forward<T>(g, d.data<T>(), wc.data<T>(), nullptr, dx.data<T>());
            else cpu::conv_backward_input<T>(g, d.data<T>(), wc.data<T>(), dx.data<T>());
          }
          if (need_w) {
            dw = empty(wc.sizes(), wc.dtype());
            const ops::detail::ConvCallTimer timer(op_name, "weight grad", g, transposed, kCPU);
            if (transposed) cpu::conv_backward_weight<T>(g, xc.data<T>(), d.data<T>(), dw.data<T>());
            else cpu::conv_backward_weight<T>(g, d.data<T>(), xc.data<T>(), dw.data<T>());
          }
        });
        return std::vector<Tensor>{dx, dw, db};
      });
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& options) {
  const char* op = "conv2d";
  check_conv_operands(x, weight, bias, options.groups, false, op);
  check_window(options.stride, options.padding, options.dilation, op);
  const int64_t channels = x.size(1), out_channels = weight.size(0);
  check(channels % options.groups == 0 && out_channels % options.groups == 0 &&
            weight.size(1) * options.groups == channels,
        op, ": input ", shape_str(x.sizes()), " and weight ", shape_str(weight.sizes()), " do not fit groups=",
        options.groups, " (weight must be [O, C/groups, kH, kW] with O and C divisible by groups)");
  cpu::ConvGeometry g;
  g.batch = x.size(0), g.in_channels = channels, g.in_h = x.size(2), g.in_w = x.size(3);
  g.out_channels = out_channels, g.kernel_h = weight.size(2), g.kernel_w = weight.size(3);
  g.stride = options.stride, g.padding = options.padding, g.dilation = options.dilation, g.groups = options.groups;
  g.out_h = (g.in_h + 2 * g.padding.h - g.dilation.h * (g.kernel_h - 1) - 1) / g.stride.h + 1;
  g.out_w = (g.in_w + 2 * g.padding.w - g.dilation.w * (g.kernel_w - 1) - 1) / g.stride.w + 1;
  const bool fits = g.in_h + 2 * g.padding.h >= g.dilation.h * (g.kernel_h - 1) + 1 &&
                    g.in_w + 2 * g.padding.w >= g.dilation.w * (g.kernel_w - 1) + 1;
  check(fits, op, ": kernel ", g.kernel_h, "x", g.kernel_w, " (dilation ", g.dilation.h, "x", g.dilation.w,
        ") is larger than the padded input ", shape_str(x.sizes()), " with padding (", g.padding.h, ", ", g.padding.w, ")");

  const Tensor xc = contiguous(x.detach()), wc = contiguous(weight.detach());
  const Tensor bc = bias.defined() ? contiguous(bias.detach()) : Tensor();
  count_flops(conv_flops(g));
  if (x.device().is_cuda()) {
    Tensor out = empty({g.batch, g.out_channels, g.out_h, g.out_w}, x.dtype(), x.device());
    const ops::detail::ConvCallTimer timer(op, "forward", g, false, x.device());
    cuda::conv_forward(cuda_shape(g), xc, wc, out);
    if (bc.defined()) cuda::add_channel_bias(out, bc);
    return record_conv(op, out, x, weight, bias, xc, wc, g, false);
  }
  Tensor out = empty({g.batch, g.out_channels, g.out_h, g.out_w}, x.dtype());
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const ops::detail::ConvCallTimer timer(op, "forward", g, false, kCPU);
    cpu::conv_forward<T>(g, xc.data<T>(), wc.data<T>(), bc.defined() ? bc.data<T>() : nullptr, out.data<T>());
  });
  return record_conv(op, out, x, weight, bias, xc, wc, g, false);
}

int64_t set_tiled_transpose_chunk_bytes(int64_t bytes) {
  check(bytes > 0, "set_tiled_transpose_chunk_bytes: expected a positive byte count, got ", bytes);
  return cpu::exchange_tiled_transpose_chunk_bytes(bytes);
}

Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const ConvTranspose2dOptions& options) {
  const char* op = "conv_transpose2d";
  check_conv_operands(x, weight, bias, options.groups, true, op);
  check_window(options.stride, options.padding, options.dilation, op);
  const Size2 op_pad = options.output_padding;
  check(op_pad.h >= 0 && op_pad.w >= 0 && (op_pad.h < options.stride.h || op_pad.h < options.dilation.h) &&
            (op_pad.w < options.stride.w || op_pad.w < options.dilation.w),
        op, ": output_padding (", op_pad.h, ", ", op_pad.w, ") must be smaller than stride or dilation");
  const int64_t channels = x.size(1);
  check(weight.size(0) == channels && channels % options.groups == 0, op, ": input ", shape_str(x.sizes()),
        " and weight ", shape_str(weight.sizes()), " do not fit groups=", options.groups,
        " (weight must be [C, O/groups, kH, kW] with C divisible by groups)");
  // The direct convolution this one is the transpose of: its input is our output and vice versa.
  cpu::ConvGeometry g;
  g.batch = x.size(0), g.out_channels = channels, g.out_h = x.size(2), g.out_w = x.size(3);
  g.in_channels = weight.size(1) * options.groups, g.kernel_h = weight.size(2), g.kernel_w = weight.size(3);
  g.stride = options.stride, g.padding = options.padding, g.dilation = options.dilation, g.groups = options.groups;
  g.in_h = (g.out_h - 1) * g.stride.h - 2 * g.padding.h + g.dilation.h * (g.kernel_h - 1) + op_pad.h + 1;
  g.in_w = (g.out_w - 1) * g.stride.w - 2 * g.padding.w + g.dilation.w * (g.kernel_w - 1) + op_pad.w + 1;
  check(g.in_h >= 1 && g.in_w >= 1, op, ": input ", shape_str(x.sizes()), " gives an empty output ", g.in_h, "x",
        g.in_w, " with padding (", g.padding.h, ", ", g.padding.w, ")");

  const Tensor xc = contiguous(x.detach()), wc = contiguous(weight.detach());
  count_flops(conv_flops(g));
  if (x.device().is_cuda()) {
    Tensor out = empty({g.batch, g.in_channels, g.in_h, g.in_w}, x.dtype(), x.device());
    const ops::detail::ConvCallTimer timer(op, "forward", g, true, x.device());
    cuda::conv_backward_input(cuda_shape(g), xc, wc, out);
    if (bias.defined()) cuda::add_channel_bias(out, contiguous(bias.detach()));
    return record_conv(op, out, x, weight, bias, xc, wc, g, true);
  }
  Tensor out = empty({g.batch, g.in_channels, g.in_h, g.in_w}, x.dtype());
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const ops::detail::ConvCallTimer timer(op, "forward", g, true, kCPU);
    cpu::conv_backward_input<T>(g, xc.data<T>(), wc.data<T>(), out.data<T>());
    if (bias.defined())
      cpu::add_channel_bias<T>(out.data<T>(), g.batch, g.in_channels, g.in_plane(), contiguous(bias.detach()).data<T>());
  });
  return record_conv(op, out, x, weight, bias, xc, wc, g, true);
}

}  // namespace mrcnn::ops
