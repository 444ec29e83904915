// interpolate: per-axis source indices and weights computed once (PyTorch's rules, including its
// float arithmetic for nearest), then one pass over output rows; backward scatters plane by plane.
#include "ops/interpolate.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <tuple>

#include "autograd/node.h"
#include "cuda/interpolate.h"
#include "ops/interpolate_kernels.h"
#include "ops/view.h"
#include "tensor/dispatch.h"
#include "tensor/parallel.h"

namespace mrcnn::cpu {

namespace {

// Where output index i of one axis reads: in0 with weight w0 and in1 with weight w1 (nearest: w1 = 0).
template <typename T>
struct AxisTaps {
  std::vector<int64_t> in0, in1;
  std::vector<T> w0, w1;
};

// PyTorch's nearest_idx: identity and exact 2x upsampling are special-cased; otherwise
// floor(i * (float)in / out) in float, clamped to in - 1.
template <typename T>
AxisTaps<T> nearest_taps(int64_t in, int64_t out) {
  AxisTaps<T> t;
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t i = 0; i < out; ++i) {
    int64_t src;
    if (out == in) src = i;
    else if (out == 2 * in) src = i >> 1;
    else src = std::min(static_cast<int64_t>(std::floor(static_cast<float>(i) * scale)), in - 1);
    t.in0.push_back(src);
    t.in1.push_back(src);
    t.w0.push_back(T(1));
    t.w1.push_back(T(0));
  }
  return t;
}

// PyTorch's area_pixel_compute_source_index for linear modes, in T (its opmath type for f32/f64).
// align_corners=false: src = max(in/out * (i + 0.5) - 0.5, 0), the half-pixel rule.
template <typename T>
AxisTaps<T> linear_taps(int64_t in, int64_t out, bool align_corners) {
  AxisTaps<T> t;
  const T scale = align_corners ? (out > 1 ? static_cast<T>(in - 1) / static_cast<T>(out - 1) : T(0))
                                : static_cast<T>(in) / static_cast<T>(out);
  for (int64_t i = 0; i < out; ++i) {
    if (out == in) {  // PyTorch copies straight through when the size does not change
      t.in0.push_back(i), t.in1.push_back(i), t.w0.push_back(T(1)), t.w1.push_back(T(0));
      continue;
    }
    T src = align_corners ? scale * static_cast<T>(i) : scale * (static_cast<T>(i) + T(0.5)) - T(0.5);
    if (!align_corners && src < 0) src = 0;
    const int64_t i0 = static_cast<int64_t>(src);
    const T lambda1 = std::min(std::max(src - static_cast<T>(i0), T(0)), T(1));
    t.in0.push_back(i0);
    t.in1.push_back(i0 + (i0 < in - 1 ? 1 : 0));
    t.w0.push_back(T(1) - lambda1);
    t.w1.push_back(lambda1);
  }
  return t;
}

template <typename T>
struct ResizeTaps {
  int64_t planes = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  AxisTaps<T> ys, xs;
};

template <typename T>
ResizeTaps<T> make_taps(const Shape& in_shape, ops::Size2 size, ops::InterpolateMode mode, bool align_corners) {
  ResizeTaps<T> r;
  r.planes = in_shape[0] * in_shape[1], r.in_h = in_shape[2], r.in_w = in_shape[3], r.out_h = size.h, r.out_w = size.w;
  const bool nearest = mode == ops::InterpolateMode::Nearest;
  r.ys = nearest ? nearest_taps<T>(r.in_h, r.out_h) : linear_taps<T>(r.in_h, r.out_h, align_corners);
  r.xs = nearest ? nearest_taps<T>(r.in_w, r.out_w) : linear_taps<T>(r.in_w, r.out_w, align_corners);
  return r;
}

// out = h0 * (w0 * x00 + w1 * x01) + h1 * (w0 * x10 + w1 * x11): PyTorch's order of operations.
template <typename T>
void interpolate_forward(const ResizeTaps<T>& r, const T* x, T* out) {
  const int64_t rows = r.planes * r.out_h;
  parallel_for(0, rows, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(r.out_w * 4, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t row = begin; row < end; ++row) {
                   const int64_t p = row / r.out_h, oy = row % r.out_h;
                   const T* top = x + (p * r.in_h + r.ys.in0[oy]) * r.in_w;
                   const T* bottom = x + (p * r.in_h + r.ys.in1[oy]) * r.in_w;
                   const T h0 = r.ys.w0[oy], h1 = r.ys.w1[oy];
                   T* o = out + row * r.out_w;
                   for (int64_t ox = 0; ox < r.out_w; ++ox) {
                     const int64_t a = r.xs.in0[ox], b = r.xs.in1[ox];
                     const T w0 = r.xs.w0[ox], w1 = r.xs.w1[ox];
                     o[ox] = resize_value(h0, h1, w0, w1, top[a], top[b], bottom[a], bottom[b]);
                   }
                 }
               });
}

// The adjoint: each output gradient is spread over the (up to) four pixels it read (taps of weight
// zero skipped, ops/interpolate_kernels.h), so one loop serves both modes.
template <typename T>
void interpolate_backward(const ResizeTaps<T>& r, const T* dout, T* dx) {
  const int64_t in_plane = r.in_h * r.in_w, out_plane = r.out_h * r.out_w;
  parallel_for(0, r.planes, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(in_plane + 4 * out_plane, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t p = begin; p < end; ++p) {
                   T* d = dx + p * in_plane;
                   std::fill(d, d + in_plane, T(0));
                   for (int64_t oy = 0; oy < r.out_h; ++oy) {
                     T* top = d + r.ys.in0[oy] * r.in_w;
                     T* bottom = d + r.ys.in1[oy] * r.in_w;
                     const T h0 = r.ys.w0[oy], h1 = r.ys.w1[oy];
                     const T* g = dout + p * out_plane + oy * r.out_w;
                     for (int64_t ox = 0; ox < r.out_w; ++ox) {
                       const int64_t a = r.xs.in0[ox], b = r.xs.in1[ox];
                       const T w0 = r.xs.w0[ox], w1 = r.xs.w1[ox];
                       resize_scatter(h0, h1, w0, w1, top, bottom, a, b, g[ox], [](T* at, T v) { *at += v; });
                     }
                   }
                 }
               });
}

}  // namespace
}  // namespace mrcnn::cpu

namespace mrcnn::ops {

namespace {

// The CPU's taps as device tensors, so the CUDA kernels read the same indices and weights.
cuda::ResizeTaps upload_taps(const Shape& in_shape, Size2 size, InterpolateMode mode, bool align_corners, DType dtype,
                             Device device) {
  return dispatch_floating(dtype, "interpolate", [&](auto tag) {
    using T = decltype(tag);
    const cpu::ResizeTaps<T> r = cpu::make_taps<T>(in_shape, size, mode, align_corners);
    auto ints = [&](const std::vector<int64_t>& v) { return to(from_vector<int64_t>(v, {static_cast<int64_t>(v.size())}), device); };
    auto reals = [&](const std::vector<T>& v) { return to(from_vector<T>(v, {static_cast<int64_t>(v.size())}), device); };
    return cuda::ResizeTaps{r.planes, r.in_h, r.in_w, r.out_h, r.out_w,
                            ints(r.ys.in0), ints(r.ys.in1), reals(r.ys.w0), reals(r.ys.w1),
                            ints(r.xs.in0), ints(r.xs.in1), reals(r.xs.w0), reals(r.xs.w1)};
  });
}

// The taps depend only on the spatial sizes, mode, dtype and device, and a model resizes between a
// handful of shapes (FPN levels, the batch size): uploading 8 small tensors per call would put host
// work and copies on every resize, so they are kept per shape, like cuDNN's algorithm choices. The
// map is never destroyed: its device tensors must not be freed after the CUDA context at exit.
cuda::ResizeTaps cuda_taps(const Shape& in_shape, Size2 size, InterpolateMode mode, bool align_corners, DType dtype,
                           Device device) {
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int, bool, int, int>;
  static auto* cache = new std::map<Key, cuda::ResizeTaps>();
  static std::mutex mutex;
  const Key key{in_shape[2], in_shape[3], size.h, size.w, static_cast<int>(mode), align_corners, static_cast<int>(dtype),
                device.index};
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = cache->find(key);
  if (it == cache->end()) {
    if (cache->size() >= 512) cache->clear();  // multi-scale training: a bound, not an LRU
    it = cache->emplace(key, upload_taps(in_shape, size, mode, align_corners, dtype, device)).first;
  }
  cuda::ResizeTaps taps = it->second;
  taps.planes = in_shape[0] * in_shape[1];
  return taps;
}

}  // namespace

Tensor interpolate(const Tensor& x, Size2 size, InterpolateMode mode, bool align_corners) {
  const char* op = "interpolate";
  check_spatial_input(x, 4, "[N, C, H, W]", op);
  check(size.h >= 1 && size.w >= 1, op, ": output size must be positive, got (", size.h, ", ", size.w, ")");
  check(x.size(2) >= 1 && x.size(3) >= 1, op, ": input ", shape_str(x.sizes()), " has an empty spatial size");
  check(!(align_corners && mode == InterpolateMode::Nearest), op, ": align_corners only applies to bilinear mode");
  const Tensor xc = contiguous(x.detach());
  if (x.device().is_cuda()) {
    const cuda::ResizeTaps taps = cuda_taps(x.sizes(), size, mode, align_corners, x.dtype(), x.device());
    Tensor out = empty({x.size(0), x.size(1), size.h, size.w}, x.dtype(), x.device());
    cuda::interpolate_forward(taps, xc, out);
    return autograd::record(op, out, {x}, [taps, in_shape = x.sizes(), dtype = x.dtype(), device = x.device()](const Tensor& dout) {
      Tensor dx = empty(in_shape, dtype, device);
      cuda::interpolate_backward(taps, contiguous(dout), dx);
      return std::vector<Tensor>{dx};
    });
  }
  Tensor out = empty({x.size(0), x.size(1), size.h, size.w}, x.dtype());
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    cpu::interpolate_forward<T>(cpu::make_taps<T>(x.sizes(), size, mode, align_corners), xc.data<T>(), out.data<T>());
  });
  return autograd::record(op, out, {x}, [in_shape = x.sizes(), dtype = x.dtype(), size, mode, align_corners](const Tensor& dout) {
    const Tensor dc = contiguous(dout);
    Tensor dx = empty(in_shape, dtype);
    dispatch_floating(dtype, "interpolate backward", [&](auto tag) {
      using T = decltype(tag);
      cpu::interpolate_backward<T>(cpu::make_taps<T>(in_shape, size, mode, align_corners), dc.data<T>(), dx.data<T>());
    });
    return std::vector<Tensor>{dx};
  });
}

Tensor resize_masks_nearest(const Tensor& masks, Size2 size) {
  const char* op = "resize_masks_nearest";
  check(masks.dim() == 3 && masks.dtype() == kBool && !masks.device().is_cuda(), op,
        ": masks must be host bool [K, H, W], got ", dtype_name(masks.dtype()), " ", shape_str(masks.sizes()), " on ",
        masks.device().str());
  check(size.h >= 1 && size.w >= 1, op, ": output size must be positive, got (", size.h, ", ", size.w, ")");
  const int64_t count = masks.size(0), in_h = masks.size(1), in_w = masks.size(2);
  Tensor out = empty({count, size.h, size.w}, kBool);
  if (count == 0) return out;
  check(in_h >= 1 && in_w >= 1, op, ": input ", shape_str(masks.sizes()), " has an empty spatial size");
  const Tensor in = contiguous(masks.detach());
  const auto rows = cpu::nearest_taps<float>(in_h, size.h).in0, columns = cpu::nearest_taps<float>(in_w, size.w).in0;
  const uint8_t* src = in.data<uint8_t>();  // bool: one byte holding 0 or 1
  uint8_t* dst = out.data<uint8_t>();
  parallel_for(0, count * size.h, 64, [&](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r) {
      const uint8_t* in_row = src + ((r / size.h) * in_h + rows[static_cast<size_t>(r % size.h)]) * in_w;
      uint8_t* out_row = dst + r * size.w;
      for (int64_t x = 0; x < size.w; ++x) out_row[x] = in_row[columns[static_cast<size_t>(x)]];
    }
  });
  return out;
}

}  // namespace mrcnn::ops
