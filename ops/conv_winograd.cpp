// Winograd F(2x2, 3x3) for float32 3x3 stride-1 convolutions (Lavin & Gray, 2016): each 2x2 output
// tile comes from a 4x4 input tile through 16 elementwise products of transformed tiles, i.e. 16
// GEMMs [O, C] x [C, tiles], which is 2.25x fewer multiplies than the direct convolution. The input
// gradient of a stride-1 conv is a stride-1 conv too (ops/conv.cpp), so it benefits as well.
// Transforms: V = B^T d B, U = G g G^T, y = A^T (U .* V) A with
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1]; all coefficients are 0, +-1, +-0.5, so the transforms round little.
#include <algorithm>
#include <vector>

#include "ops/conv_geometry.h"
#include "ops/gemm.h"
#include "tensor/parallel.h"

namespace mrcnn::cpu {

namespace {

// Tiles transformed per pass: the scratch, 16 x (C + O) x tiles floats, stays near 16 MB.
int64_t tile_chunk(int64_t channels, int64_t outs) {
  return std::clamp<int64_t>((int64_t{1} << 18) / (channels + outs) / 16 * 16, 64, 2048);
}

// U[xi][o][c] for xi = 4 * i + j, the transformed 4x4 kernel of (o, c).
void transform_weights(const ConvGeometry& g, const float* weight, float* u) {
  const int64_t pairs = g.out_channels * g.in_channels;
  parallel_for(0, pairs, std::max<int64_t>(1, kParallelGrain / 32), [&](int64_t begin, int64_t end) {
    for (int64_t oc = begin; oc < end; ++oc) {
      const float* k = weight + oc * 9;
      float t[4][3];  // G g
      for (int j = 0; j < 3; ++j) {
        t[0][j] = k[j];
        t[1][j] = (k[j] + k[3 + j] + k[6 + j]) * 0.5f;
        t[2][j] = (k[j] - k[3 + j] + k[6 + j]) * 0.5f;
        t[3][j] = k[6 + j];
      }
      for (int i = 0; i < 4; ++i) {  // (G g) G^T
        const float row[4] = {t[i][0], (t[i][0] + t[i][1] + t[i][2]) * 0.5f, (t[i][0] - t[i][1] + t[i][2]) * 0.5f,
                              t[i][2]};
        for (int j = 0; j < 4; ++j) u[(4 * i + j) * pairs + oc] = row[j];
      }
    }
  });
}

}  // namespace

bool winograd_applies(const ConvGeometry& g) {
  // Measured (bench_ops_vs_torch, alternating runs): FPN's 256-channel convs over 2048 tiles run ~18%
  // faster; at 128 channels or a few hundred tiles the 16 GEMMs are too small to amortise packing and
  // the transforms, and the implicit-im2col GEMM is faster.
  const int64_t tiles = g.batch * ((g.out_h + 1) / 2) * ((g.out_w + 1) / 2);
  return g.kernel_h == 3 && g.kernel_w == 3 && g.stride == ops::Size2(1) && g.dilation == ops::Size2(1) &&
         g.groups == 1 && g.padding.h <= 2 && g.padding.w <= 2 && g.in_channels >= 256 && g.out_channels >= 256 &&
         tiles >= 1024;
}

void conv_forward_winograd(const ConvGeometry& g, const float* x, const float* weight, const float* bias, float* out) {
  const int64_t channels = g.in_channels, outs = g.out_channels;
  const int64_t tiles_h = (g.out_h + 1) / 2, tiles_w = (g.out_w + 1) / 2, per_image = tiles_h * tiles_w;
  const int64_t tiles = g.batch * per_image;
  const int64_t chunk = std::min(tiles, tile_chunk(channels, outs));
  thread_local std::vector<float> u_buffer, v_buffer, m_buffer;
  float* u = grown(u_buffer, 16 * outs * channels);
  float* v = grown(v_buffer, 16 * channels * chunk);
  float* m = grown(m_buffer, 16 * outs * chunk);
  transform_weights(g, weight, u);
  for (int64_t t0 = 0; t0 < tiles; t0 += chunk) {
    const int64_t tc = std::min(chunk, tiles - t0);
    // V[xi][c][t] = (B^T d B)[xi] for the 4x4 input tile d of tile t0 + t in channel c.
    parallel_for(0, channels, std::max<int64_t>(1, kParallelGrain / (16 * tc)), [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c)
        for (int64_t t = 0; t < tc; ++t) {
          const int64_t tile = t0 + t, n = tile / per_image, ty = tile % per_image / tiles_w, tx = tile % tiles_w;
          const int64_t y0 = 2 * ty - g.padding.h, x0 = 2 * tx - g.padding.w;
          const float* plane = x + (n * channels + c) * g.in_plane();
          float d[4][4];
          if (y0 >= 0 && y0 + 4 <= g.in_h && x0 >= 0 && x0 + 4 <= g.in_w) {  // interior tile: no bounds checks
            for (int i = 0; i < 4; ++i)
              for (int j = 0; j < 4; ++j) d[i][j] = plane[(y0 + i) * g.in_w + x0 + j];
          } else {
            for (int i = 0; i < 4; ++i)
              for (int j = 0; j < 4; ++j) {
                const int64_t iy = y0 + i, ix = x0 + j;
                d[i][j] = iy >= 0 && iy < g.in_h && ix >= 0 && ix < g.in_w ? plane[iy * g.in_w + ix] : 0.0f;
              }
          }
          float r[4][4];  // B^T d
          for (int j = 0; j < 4; ++j) {
            r[0][j] = d[0][j] - d[2][j];
            r[1][j] = d[1][j] + d[2][j];
            r[2][j] = d[2][j] - d[1][j];
            r[3][j] = d[1][j] - d[3][j];
          }
          float* dst = v + c * tc + t;
          const int64_t stride = channels * tc;
          for (int i = 0; i < 4; ++i) {  // (B^T d) B
            dst[(4 * i + 0) * stride] = r[i][0] - r[i][2];
            dst[(4 * i + 1) * stride] = r[i][1] + r[i][2];
            dst[(4 * i + 2) * stride] = r[i][2] - r[i][1];
            dst[(4 * i + 3) * stride] = r[i][1] - r[i][3];
          }
        }
    });
    // The 16 products are independent: one thread each, no barrier per product.
    parallel_for(0, 16, 1, [&](int64_t begin, int64_t end) {
      for (int64_t xi = begin; xi < end; ++xi)
        sgemm_packed_serial(outs, tc, channels, u + xi * outs * channels, channels, v + xi * channels * tc, tc,
                            m + xi * outs * tc, tc);
    });
    // y = A^T M A (+ bias), written where the 2x2 tile lies inside the output.
    parallel_for(0, outs, std::max<int64_t>(1, kParallelGrain / (16 * tc)), [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; ++o)
        for (int64_t t = 0; t < tc; ++t) {
          const int64_t tile = t0 + t, n = tile / per_image, ty = tile % per_image / tiles_w, tx = tile % tiles_w;
          const float* src = m + o * tc + t;
          const int64_t stride = outs * tc;
          float q[4][2];  // M A
          for (int i = 0; i < 4; ++i) {
            const float a = src[(4 * i) * stride], b = src[(4 * i + 1) * stride], c = src[(4 * i + 2) * stride],
                        d = src[(4 * i + 3) * stride];
            q[i][0] = a + b + c;
            q[i][1] = b - c - d;
          }
          const float base = bias ? bias[o] : 0.0f;
          float* plane = out + (n * outs + o) * g.out_plane();
          for (int j = 0; j < 2; ++j) {
            const int64_t ox = 2 * tx + j;
            if (ox >= g.out_w) continue;
            const float y_top = q[0][j] + q[1][j] + q[2][j], y_bottom = q[1][j] - q[2][j] - q[3][j];
            plane[2 * ty * g.out_w + ox] = y_top + base;
            if (2 * ty + 1 < g.out_h) plane[(2 * ty + 1) * g.out_w + ox] = y_bottom + base;
          }
        }
    });
  }
}

}  // namespace mrcnn::cpu
