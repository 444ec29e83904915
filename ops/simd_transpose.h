// 8x8 float transposes in AVX2 registers, shared by the GEMM's packers (ops/gemm_packed.cpp) and
// layout changes of feature maps (roi_align's channel-last copies). Callers check for AVX2
// (cpu_has_avx2_fma) before calling.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace mrcnn::cpu {

// out[i] = column i of the 8 x 8 block whose rows are in[0..7].
__attribute__((target("avx2"), always_inline)) inline void transpose8x8(const __m256 in[8], __m256 out[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(in[i], in[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(in[i], in[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    out[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    out[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

// dst[j * ld_dst + i] = src[i * ld_src + j] for i, j < 8.
__attribute__((target("avx2"), always_inline)) inline void transpose8x8_block(const float* src, int64_t ld_src, float* dst,
                                                                              int64_t ld_dst) {
  __m256 rows[8], cols[8];
  for (int i = 0; i < 8; ++i) rows[i] = _mm256_loadu_ps(src + i * ld_src);
  transpose8x8(rows, cols);
  for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + i * ld_dst, cols[i]);
}

}  // namespace mrcnn::cpu
