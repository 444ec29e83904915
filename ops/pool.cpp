// max_pool2d: one pass over each (n, c) plane records the window maxima and their flat positions;
// backward scatters dout to those positions, plane by plane (planes are disjoint: no races).
#include "ops/pool.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/node.h"
#include "cuda/pool.h"
#include "ops/view.h"
#include "tensor/dispatch.h"
#include "tensor/parallel.h"

namespace mrcnn::cpu {

using ops::Size2;

namespace {

struct PoolGeometry {
  int64_t planes = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  Size2 kernel, stride, padding, dilation;
};

// For outputs ox in [lo, hi): the input at column ox * stride + tap of `row` (flat position
// row_start + that column) replaces the running maximum if larger or NaN. `|`, not `||`: no branch.
template <typename T>
void take_larger(const T* __restrict row, int64_t row_start, int64_t tap, int64_t stride, int64_t lo, int64_t hi,
                 T* __restrict best_value, int64_t* __restrict best) {
  for (int64_t ox = lo; ox < hi; ++ox) {
    const int64_t ix = ox * stride + tap;
    const T v = row[ix], current = best_value[ox];
    const bool take = (v > current) | (v != v);
    best_value[ox] = take ? v : current;
    best[ox] = take ? row_start + ix : best[ox];
  }
}

// Each output row is built tap by tap over all its columns: for window tap (ky, kx), every output
// whose window holds it compares that one input, branch-free (the compiler turns the selects into
// blends). Per output the taps come in the order a window scan takes (rows, then columns), and a tap
// replaces the running maximum when it is larger or NaN: the value and position PyTorch's scan
// keeps (the first of equal maxima, the last NaN). A scan per output branched on every comparison,
// and on random data half of those branches were mispredicted (the ResNet stem's pool: 15 ms).
template <typename T>
void max_pool2d_forward(const PoolGeometry& g, const T* x, T* out, int64_t* argmax) {
  const int64_t out_plane = g.out_h * g.out_w;
  const int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(out_plane * g.kernel.h * g.kernel.w, 1));
  parallel_for(0, g.planes, grain, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const T* src = x + p * g.in_h * g.in_w;
      for (int64_t oy = 0; oy < g.out_h; ++oy) {
        int64_t y0 = oy * g.stride.h - g.padding.h;
        const int64_t y1 = std::min(y0 + (g.kernel.h - 1) * g.dilation.h + 1, g.in_h);
        while (y0 < 0) y0 += g.dilation.h;
        T* best_value = out + p * out_plane + oy * g.out_w;
        int64_t* best = argmax + p * out_plane + oy * g.out_w;
        // Before any tap: -inf at the window's first in-bounds position (kept if every tap is -inf).
        for (int64_t ox = 0; ox < g.out_w; ++ox) {
          int64_t x0 = ox * g.stride.w - g.padding.w;
          while (x0 < 0) x0 += g.dilation.w;
          best_value[ox] = -std::numeric_limits<T>::infinity();
          best[ox] = y0 * g.in_w + x0;
        }
        for (int64_t iy = y0; iy < y1; iy += g.dilation.h) {
          const T* row = src + iy * g.in_w;
          for (int64_t kx = 0; kx < g.kernel.w; ++kx) {
            const int64_t tap = kx * g.dilation.w - g.padding.w;
            int64_t lo, hi;
            ops::valid_range(g.in_w, g.out_w, g.stride.w, tap, lo, hi);
            take_larger(row, iy * g.in_w, tap, g.stride.w, lo, hi, best_value, best);
          }
        }
      }
    }
  });
}

template <typename T>
void max_pool2d_backward(const PoolGeometry& g, const T* dout, const int64_t* argmax, T* dx) {
  const int64_t out_plane = g.out_h * g.out_w, in_plane = g.in_h * g.in_w;
  parallel_for(0, g.planes, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(in_plane + out_plane, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t p = begin; p < end; ++p) {
                   T* d = dx + p * in_plane;
                   std::fill(d, d + in_plane, T(0));
                   for (int64_t i = 0; i < out_plane; ++i) d[argmax[p * out_plane + i]] += dout[p * out_plane + i];
                 }
               });
}

}  // namespace
}  // namespace mrcnn::cpu

namespace mrcnn::ops {

namespace {

// PyTorch's pooling_output_shape: floor (or ceil) division, and in ceil mode the last window must
// start inside the input or its left padding.
int64_t pooled_size(int64_t in, int64_t kernel, int64_t pad, int64_t stride, int64_t dilation, bool ceil_mode) {
  const int64_t span = in + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  int64_t out = (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

}  // namespace

Tensor max_pool2d(const Tensor& x, const MaxPool2dOptions& options) {
  const char* op = "max_pool2d";
  check_spatial_input(x, 4, "[N, C, H, W]", op);
  const Size2 k = options.kernel_size, d = options.dilation, p = options.padding;
  const Size2 s = options.stride == Size2(0) ? k : options.stride;
  check(k.h >= 1 && k.w >= 1, op, ": kernel_size must be >= 1, got (", k.h, ", ", k.w, ")");
  check(s.h >= 1 && s.w >= 1, op, ": stride must be >= 1, got (", s.h, ", ", s.w, ")");
  check(d.h >= 1 && d.w >= 1, op, ": dilation must be >= 1, got (", d.h, ", ", d.w, ")");
  check(p.h >= 0 && p.w >= 0 && 2 * p.h <= k.h && 2 * p.w <= k.w, op, ": padding (", p.h, ", ", p.w,
        ") must be >= 0 and at most half the kernel size (", k.h, ", ", k.w, ")");
  cpu::PoolGeometry g;
  g.planes = x.size(0) * x.size(1), g.in_h = x.size(2), g.in_w = x.size(3);
  g.kernel = k, g.stride = s, g.padding = p, g.dilation = d;
  g.out_h = pooled_size(g.in_h, k.h, p.h, s.h, d.h, options.ceil_mode);
  g.out_w = pooled_size(g.in_w, k.w, p.w, s.w, d.w, options.ceil_mode);
  check(g.out_h >= 1 && g.out_w >= 1, op, ": input ", shape_str(x.sizes()), " is too small for kernel (", k.h, ", ",
        k.w, ") with padding (", p.h, ", ", p.w, ") and dilation (", d.h, ", ", d.w, ")");
  const Tensor xc = contiguous(x.detach());
  if (x.device().is_cuda()) {
    const cuda::PoolShape cs{g.planes, g.in_h, g.in_w, g.out_h, g.out_w, k.h, k.w, s.h, s.w, p.h, p.w, d.h, d.w};
    Tensor out = empty({x.size(0), x.size(1), g.out_h, g.out_w}, x.dtype(), x.device());
    Tensor argmax = empty(out.sizes(), kInt64, x.device());
    cuda::max_pool2d_forward(cs, xc, out, argmax);
    return autograd::record(op, out, {x}, [cs, argmax, in_shape = x.sizes(), dtype = x.dtype(), device = x.device()](const Tensor& dout) {
      Tensor dx = empty(in_shape, dtype, device);
      cuda::max_pool2d_backward(cs, contiguous(dout), argmax, dx);
      return std::vector<Tensor>{dx};
    });
  }
  Tensor out = empty({x.size(0), x.size(1), g.out_h, g.out_w}, x.dtype());
  Tensor argmax = empty(out.sizes(), kInt64);
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    cpu::max_pool2d_forward<T>(g, xc.data<T>(), out.data<T>(), argmax.data<int64_t>());
  });
  return autograd::record(op, out, {x}, [g, argmax, in_shape = x.sizes(), dtype = x.dtype()](const Tensor& dout) {
    const Tensor dc = contiguous(dout);
    Tensor dx = empty(in_shape, dtype);
    dispatch_floating(dtype, "max_pool2d backward", [&](auto tag) {
      using T = decltype(tag);
      cpu::max_pool2d_backward<T>(g, dc.data<T>(), argmax.data<int64_t>(), dx.data<T>());
    });
    return std::vector<Tensor>{dx};
  });
}

}  // namespace mrcnn::ops
