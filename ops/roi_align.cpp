// roi_align CPU kernels. Per RoI the bilinear taps of every sample (four pixel offsets and weights)
// are computed once and shared by all channels, as in torchvision. Two layouts: the map's own planes,
// or a channel-last copy where the RoIs sample the map densely (see channel_last_pays).
#include "ops/roi_align.h"

#include <atomic>
#include <cmath>
#include <memory>
#include <type_traits>
#include <vector>

#include "autograd/node.h"
#include "cuda/roi_align.h"
#include "ops/gemm.h"
#include "ops/roi_align_kernels.h"
#include "ops/simd_transpose.h"
#include "ops/view.h"
#include "tensor/dispatch.h"
#include "tensor/parallel.h"

namespace mrcnn::cpu {

namespace {

struct RoiAlignGeometry {
  int64_t batch = 0, channels = 0, height = 0, width = 0, rois = 0;
  ops::Size2 pooled;
  double spatial_scale = 1;
  int64_t sampling_ratio = -1;
  bool aligned = false;
};

// One sample's bilinear taps: pixels pos[k] of a plane with weights w[k] (all zero outside the map).
template <typename T>
struct SampleTaps {
  int64_t pos[4];
  T w[4];
};

// The sampling grid of one RoI and its taps in (bin_y, bin_x, sample_y, sample_x) order.
template <typename T>
struct RoiTaps {
  RoiGrid<T> grid;
  std::vector<SampleTaps<T>> taps;
};

// The grid and taps of one RoI in (bin_y, bin_x, sample_y, sample_x) order, from the shared body
// (ops/roi_align_kernels.h) the CUDA kernels use too.
template <typename T>
void roi_taps(const RoiAlignGeometry& g, const T* roi, RoiTaps<T>& r) {
  const RoiAlignParams p{g.height, g.width, g.pooled.h, g.pooled.w, g.spatial_scale, g.sampling_ratio, g.aligned};
  r.grid = roi_grid(p, roi);
  r.taps.resize(static_cast<size_t>(std::max<int64_t>(g.pooled.h * g.pooled.w * r.grid.grid_h * r.grid.grid_w, 0)));
  size_t k = 0;
  for (int64_t ph = 0; ph < g.pooled.h; ++ph)
    for (int64_t pw = 0; pw < g.pooled.w; ++pw)
      for (int64_t iy = 0; iy < r.grid.grid_h; ++iy)
        for (int64_t ix = 0; ix < r.grid.grid_w; ++ix, ++k) sample_taps(p, r.grid, ph, pw, iy, ix, r.taps[k].pos, r.taps[k].w);
}

// Plane layout: one plane per channel, gathered sample by sample. Forward is parallel over RoIs.
template <typename T>
void roi_align_forward_planar(const RoiAlignGeometry& g, const T* x, const T* rois, T* out) {
  const int64_t bins = g.pooled.h * g.pooled.w, plane = g.height * g.width;
  parallel_for(0, g.rois, 1, [&](int64_t begin, int64_t end) {
    RoiTaps<T> r;
    for (int64_t n = begin; n < end; ++n) {
      roi_taps(g, rois + n * 5, r);
      const int64_t samples = r.grid.grid_h * r.grid.grid_w;
      for (int64_t c = 0; c < g.channels; ++c) {
        const T* src = x + (r.grid.batch_index * g.channels + c) * plane;
        T* dst = out + (n * g.channels + c) * bins;
        const SampleTaps<T>* s = r.taps.data();
        for (int64_t b = 0; b < bins; ++b) {
          T value = 0;
          for (int64_t i = 0; i < samples; ++i, ++s)
            value += s->w[0] * src[s->pos[0]] + s->w[1] * src[s->pos[1]] + s->w[2] * src[s->pos[2]] +
                     s->w[3] * src[s->pos[3]];
          dst[b] = value / r.grid.count;
        }
      }
    }
  });
}

// Backward is parallel over blocks of channels: a block owns its channels' planes of dx and visits
// every RoI in order, so there are no atomics and the sums are the same for any thread count.
template <typename T>
void roi_align_backward_planar(const RoiAlignGeometry& g, const T* dout, const T* rois, T* dx) {
  const int64_t bins = g.pooled.h * g.pooled.w, plane = g.height * g.width;
  // Blocks of channels: at least 16 blocks so two cores share work, each at least 1 channel.
  const int64_t block = std::max<int64_t>(1, g.channels / 16);
  parallel_for(0, g.channels, block, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t b = 0; b < g.batch; ++b)
      for (int64_t c = c_begin; c < c_end; ++c) std::fill(dx + (b * g.channels + c) * plane, dx + (b * g.channels + c + 1) * plane, T(0));
    RoiTaps<T> r;
    for (int64_t n = 0; n < g.rois; ++n) {
      roi_taps(g, rois + n * 5, r);
      const int64_t samples = r.grid.grid_h * r.grid.grid_w;
      // torchvision divides by grid_h * grid_w here without the max(., 1); with an empty grid
      // there are no samples, so the difference never shows.
      // divide_by_count with the branch outside the loops: (grad * w) / count, or times the exact
      // reciprocal for a power-of-two count (the heads' 2 x 2 samples), where division took most
      // of the time. The grid is copied so that stores to dx cannot alias it.
      const RoiGrid<T> grid = r.grid;
      for (int64_t c = c_begin; c < c_end; ++c) {
        T* dst = dx + (grid.batch_index * g.channels + c) * plane;
        const T* grad = dout + (n * g.channels + c) * bins;
        const SampleTaps<T>* s = r.taps.data();
        if (grid.exact_reciprocal) {
          for (int64_t bin = 0; bin < bins; ++bin)
            for (int64_t i = 0; i < samples; ++i, ++s)
              for (int k = 0; k < 4; ++k) dst[s->pos[k]] += grad[bin] * s->w[k] * grid.reciprocal;
        } else {
          for (int64_t bin = 0; bin < bins; ++bin)
            for (int64_t i = 0; i < samples; ++i, ++s)
              for (int k = 0; k < 4; ++k) dst[s->pos[k]] += grad[bin] * s->w[k] / grid.count;
        }
      }
    }
  });
}

// [batch][rows][cols] -> [batch][cols][rows], in tiles so that both sides are read and written in
// runs (a plane <-> channel-last change of a feature map).
template <typename T>
void transpose_planes(const T* src, int64_t batch, int64_t rows, int64_t cols, T* dst) {
  constexpr int64_t kTile = 32;
  const int64_t row_tiles = (rows + kTile - 1) / kTile;
  parallel_for(0, batch * row_tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / row_tiles, r0 = t % row_tiles * kTile, r1 = std::min(rows, r0 + kTile);
      const T* s = src + b * rows * cols;
      T* d = dst + b * rows * cols;
      for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
        const int64_t c1 = std::min(cols, c0 + kTile);
        int64_t r_done = r0;  // rows [r0, r_done) of this tile moved as 8x8 blocks
        if constexpr (std::is_same_v<T, float>) {
          if (cpu_has_avx2_fma()) {
            for (; r_done + 8 <= r1; r_done += 8)
              for (int64_t c = c0; c + 8 <= c1; c += 8) transpose8x8_block(s + r_done * cols + c, cols, d + c * rows + r_done, rows);
            // The columns past the last whole block of 8, for those rows.
            for (int64_t r = r0; r < r_done; ++r)
              for (int64_t c = c0 + (c1 - c0) / 8 * 8; c < c1; ++c) d[c * rows + r] = s[r * cols + c];
          }
        }
        for (int64_t r = r_done; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) d[c * rows + r] = s[r * cols + c];
      }
    }
  });
}

// The channel loops of the channel-last kernels. The operands never overlap (a row of sums or of
// the map copy, and rows of the map copy or of a RoI's gradients); __restrict says so, so the loops
// vectorise without run-time overlap checks. Per element they are the planar kernels' expressions.
template <typename T>
void add_sample(T* __restrict sum, const T* __restrict p0, const T* __restrict p1, const T* __restrict p2,
                const T* __restrict p3, const T w[4], int64_t channels) {
  const T w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
  for (int64_t c = 0; c < channels; ++c) sum[c] += w0 * p0[c] + w1 * p1[c] + w2 * p2[c] + w3 * p3[c];
}

// (grad * w) * reciprocal, or (grad * w) / count: divide_by_count with the branch outside the loop.
template <typename T>
void spread_tap(T* __restrict dst, const T* __restrict grad, T w, const RoiGrid<T>& grid, int64_t channels) {
  if (grid.exact_reciprocal) {
    const T reciprocal = grid.reciprocal;
    for (int64_t c = 0; c < channels; ++c) dst[c] += grad[c] * w * reciprocal;
  } else {
    const T count = grid.count;
    for (int64_t c = 0; c < channels; ++c) dst[c] += grad[c] * w / count;
  }
}

// Channel-last layout ([batch][pixel][channel]): a sample's four taps are four runs of channels, so
// the channel loop is a vector loop instead of one gathered load per channel and tap. Every output
// and dx element gets the planar kernels' expression with its terms in their order, so both layouts
// give the same bits (tested).
template <typename T>
void roi_align_forward_channel_last(const RoiAlignGeometry& g, const T* x, const T* rois, T* out) {
  const int64_t bins = g.pooled.h * g.pooled.w, plane = g.height * g.width, channels = g.channels;
  const std::unique_ptr<T[]> pixels(new T[static_cast<size_t>(g.batch * plane * channels)]);  // all overwritten
  transpose_planes(x, g.batch, channels, plane, pixels.get());
  // 16 chunks of RoIs: each allocates its sums once (200 KB at 14x14 x 256 channels: per RoI, every
  // allocation would be fresh pages).
  parallel_for(0, g.rois, std::max<int64_t>(1, (g.rois + 15) / 16), [&](int64_t begin, int64_t end) {
    RoiTaps<T> r;
    std::vector<T> sums(static_cast<size_t>(bins * channels));
    for (int64_t n = begin; n < end; ++n) {
      roi_taps(g, rois + n * 5, r);
      const int64_t samples = r.grid.grid_h * r.grid.grid_w;
      const T* image = pixels.get() + r.grid.batch_index * plane * channels;
      const SampleTaps<T>* s = r.taps.data();
      for (int64_t b = 0; b < bins; ++b) {
        T* sum = sums.data() + b * channels;
        std::fill(sum, sum + channels, T(0));
        for (int64_t i = 0; i < samples; ++i, ++s) {
          const T *p0 = image + s->pos[0] * channels, *p1 = image + s->pos[1] * channels;
          const T *p2 = image + s->pos[2] * channels, *p3 = image + s->pos[3] * channels;
          add_sample(sum, p0, p1, p2, p3, s->w, channels);
        }
      }
      for (int64_t c = 0; c < channels; ++c)
        for (int64_t b = 0; b < bins; ++b) out[(n * channels + c) * bins + b] = sums[b * channels + c] / r.grid.count;
    }
  });
}

// Blocks of channels run in parallel, each over every RoI in order (as the planar backward): each
// dx element receives its terms in the same order for any thread count.
template <typename T>
void roi_align_backward_channel_last(const RoiAlignGeometry& g, const T* dout, const T* rois, T* dx) {
  const int64_t bins = g.pooled.h * g.pooled.w, plane = g.height * g.width, channels = g.channels;
  std::vector<T> pixels(static_cast<size_t>(g.batch * plane * channels), T(0));
  // Blocks of a quarter of the channels rounded up to 16: two threads share the work, and where the
  // channel count is a multiple of 16 (the FPN's 128 or 256) no two blocks write one 64-byte line.
  const int64_t block = std::max<int64_t>(16, (channels / 4 + 15) / 16 * 16);
  parallel_for(0, channels, block, [&](int64_t c_begin, int64_t c_end) {
    const int64_t width = c_end - c_begin;
    RoiTaps<T> r;
    std::vector<T> grads(static_cast<size_t>(bins * width));
    for (int64_t n = 0; n < g.rois; ++n) {
      roi_taps(g, rois + n * 5, r);
      const RoiGrid<T> grid = r.grid;
      const int64_t samples = grid.grid_h * grid.grid_w;
      for (int64_t c = 0; c < width; ++c)
        for (int64_t b = 0; b < bins; ++b) grads[b * width + c] = dout[(n * channels + c_begin + c) * bins + b];
      T* image = pixels.data() + grid.batch_index * plane * channels + c_begin;
      const SampleTaps<T>* s = r.taps.data();
      for (int64_t b = 0; b < bins; ++b) {
        const T* grad = grads.data() + b * width;
        for (int64_t i = 0; i < samples; ++i, ++s)
          for (int k = 0; k < 4; ++k) {
            T* dst = image + s->pos[k] * channels;
            const T w = s->w[k];
            spread_tap(dst, grad, w, grid, width);
          }
      }
    }
  });
  transpose_planes(pixels.data(), g.batch, plane, channels, dx);
}

// The channel-last copy reads and writes the whole map (both ways in backward); it pays when the
// RoIs sample it densely: the box head's hundreds of RoIs, not the mask head at inference with a
// detection or two. About four samples per bin (the heads' 2 x 2) against the map's pixels.
bool channel_last_pays(const RoiAlignGeometry& g) {
  return roi_align_channel_last(g.batch, g.channels, g.height, g.width, g.rois, g.pooled);
}

template <typename T>
void roi_align_forward(const RoiAlignGeometry& g, const T* x, const T* rois, T* out) {
  if (channel_last_pays(g)) return roi_align_forward_channel_last(g, x, rois, out);
  roi_align_forward_planar(g, x, rois, out);
}

template <typename T>
void roi_align_backward(const RoiAlignGeometry& g, const T* dout, const T* rois, T* dx) {
  if (channel_last_pays(g)) return roi_align_backward_channel_last(g, dout, rois, dx);
  roi_align_backward_planar(g, dout, rois, dx);
}

}  // namespace

namespace {
std::atomic<bool> g_allow_channel_last{true};
}  // namespace

void allow_roi_align_channel_last(bool allowed) { g_allow_channel_last.store(allowed, std::memory_order_relaxed); }

bool roi_align_channel_last(int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t rois,
                            ops::Size2 output_size) {
  return g_allow_channel_last.load(std::memory_order_relaxed) && channels >= 16 &&
         rois * output_size.h * output_size.w * 4 >= batch * height * width;
}

}  // namespace mrcnn::cpu

namespace mrcnn::ops {

Tensor roi_align(const Tensor& x, const Tensor& rois, Size2 output_size, double spatial_scale, int64_t sampling_ratio,
                 bool aligned) {
  const char* op = "roi_align";
  check_spatial_input(x, 4, "[N, C, H, W]", op);
  check(rois.defined() && rois.dim() == 2 && rois.size(1) == 5, op,
        ": rois must be [R, 5] rows of (batch_index, x1, y1, x2, y2), got ",
        rois.defined() ? shape_str(rois.sizes()) : std::string("an undefined tensor"));
  const bool host_rois_for_gpu = rois.device().is_cpu() && x.device().is_cuda();
  check(rois.dtype() == x.dtype() && (rois.device() == x.device() || host_rois_for_gpu), op, ": rois are ",
        dtype_name(rois.dtype()), " on ", rois.device().str(), " but the input is ", dtype_name(x.dtype()), " on ",
        x.device().str());
  check(output_size.h >= 1 && output_size.w >= 1, op, ": output size must be positive, got (", output_size.h, ", ",
        output_size.w, ")");
  check(spatial_scale > 0, op, ": spatial_scale must be positive, got ", spatial_scale);
  cpu::RoiAlignGeometry g;
  g.batch = x.size(0), g.channels = x.size(1), g.height = x.size(2), g.width = x.size(3), g.rois = rois.size(0);
  g.pooled = output_size, g.spatial_scale = spatial_scale, g.sampling_ratio = sampling_ratio, g.aligned = aligned;
  check(g.rois == 0 || (g.height >= 1 && g.width >= 1), op, ": input ", shape_str(x.sizes()), " has an empty feature map");
  const Tensor xc = contiguous(x.detach());
  if (x.device().is_cuda()) {
    // The batch-index check reads the RoIs on the host: given there, they are read in place and
    // uploaded; on the GPU they come down (R x 5 numbers, but a wait for the GPU).
    const std::vector<double> host = to_vector<double>(rois);
    const Tensor rc = contiguous(to(rois.detach(), x.device()));
    for (int64_t n = 0; n < g.rois; ++n) {
      const double b = host[static_cast<size_t>(n * 5)];
      check(b >= 0 && b < static_cast<double>(g.batch) && std::floor(b) == b, op, ": RoI ", n, " has batch index ", b,
            " but the input holds ", g.batch, " images");
    }
    const cuda::RoiAlignShape cs{g.batch, g.channels, g.height, g.width, g.rois, output_size.h, output_size.w,
                                 spatial_scale, sampling_ratio, aligned};
    Tensor out = empty({g.rois, g.channels, output_size.h, output_size.w}, x.dtype(), x.device());
    cuda::roi_align_forward(cs, xc, rc, out);
    return autograd::record(op, out, {x}, [cs, rc, dtype = x.dtype(), device = x.device()](const Tensor& dout) {
      Tensor dx = empty({cs.batch, cs.channels, cs.height, cs.width}, dtype, device);
      cuda::roi_align_backward(cs, contiguous(dout), rc, dx);
      return std::vector<Tensor>{dx};
    });
  }
  const Tensor rc = contiguous(rois.detach());
  Tensor out = empty({g.rois, g.channels, output_size.h, output_size.w}, x.dtype());
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* r = rc.data<T>();
    for (int64_t n = 0; n < g.rois; ++n) {
      const T b = r[n * 5];
      check(b >= 0 && b < static_cast<T>(g.batch) && std::floor(b) == b, op, ": RoI ", n, " has batch index ", b,
            " but the input holds ", g.batch, " images");
    }
    cpu::roi_align_forward<T>(g, xc.data<T>(), r, out.data<T>());
  });
  return autograd::record(op, out, {x}, [g, rc, dtype = x.dtype()](const Tensor& dout) {
    const Tensor d = contiguous(dout);
    Tensor dx = empty({g.batch, g.channels, g.height, g.width}, dtype);
    dispatch_floating(dtype, "roi_align backward", [&](auto tag) {
      using T = decltype(tag);
      cpu::roi_align_backward<T>(g, d.data<T>(), rc.data<T>(), dx.data<T>());
    });
    return std::vector<Tensor>{dx};
  });
}

}  // namespace mrcnn::ops
