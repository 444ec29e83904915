// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3") and the tensor
// factories on top of it. Numbers are generated on the host and copied to the device, so a seed gives
// the same tensor on CPU and CUDA.
#include "tensor/random.h"

#include <cmath>

#include "tensor/dispatch.h"
#include "tensor/parallel.h"

namespace mrcnn {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * c[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k[0] += kWeyl0;
    k[1] += kWeyl1;
  }
  return c;
}

Generator& default_generator() {
  static Generator generator(0);
  return generator;
}

void manual_seed(uint64_t seed) { default_generator().set_state(seed, 0); }

namespace {

std::array<uint32_t, 4> block(uint64_t seed, uint64_t counter) {
  return philox4x32({static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0, 0},
                    {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
}

// [0, 1) with 24 (float) or 53 (double) random bits.
double uniform24(uint32_t u) { return (u >> 8) * (1.0 / 16777216.0); }
double uniform53(uint32_t a, uint32_t b) {
  return ((a >> 5) * 67108864.0 + (b >> 6)) * (1.0 / 9007199254740992.0);
}
// Box-Muller: two uniforms give two independent normals; 1-u avoids log(0).
void box_muller(double u, double v, double& n0, double& n1) {
  const double r = std::sqrt(-2.0 * std::log(1.0 - u));
  const double theta = 6.283185307179586 * v;
  n0 = r * std::cos(theta);
  n1 = r * std::sin(theta);
}

// Fills a host tensor: each Philox block yields `per_block` elements through `make(words, values)`.
template <typename T, typename Make>
Tensor generate(const Shape& sizes, DType dtype, Device device, Generator* generator, int per_block,
                const Make& make) {
  Generator& gen = generator ? *generator : default_generator();
  Tensor host = empty(sizes, dtype, kCPU);
  const int64_t n = host.numel();
  const int64_t blocks = (n + per_block - 1) / per_block;
  const uint64_t first = gen.reserve(static_cast<uint64_t>(blocks));
  const uint64_t seed = gen.seed();
  T* out = host.data<T>();
  parallel_for(0, blocks, 4096, [&](int64_t b, int64_t e) {
    double values[4] = {0, 0, 0, 0};
    for (int64_t j = b; j < e; ++j) {
      make(block(seed, first + static_cast<uint64_t>(j)), values);
      for (int k = 0; k < per_block && j * per_block + k < n; ++k) out[j * per_block + k] = static_cast<T>(values[k]);
    }
  });
  return device.is_cuda() ? copy_as(host, dtype, device) : host;
}

}  // namespace

Tensor rand(const Shape& sizes, DType dtype, Device device, Generator* generator) {
  return dispatch_floating(dtype, "rand", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float>) {
      return generate<T>(sizes, dtype, device, generator, rand_values_per_block(kFloat32), [](const std::array<uint32_t, 4>& w, double* v) {
        for (int k = 0; k < 4; ++k) v[k] = uniform24(w[k]);
      });
    } else {
      return generate<T>(sizes, dtype, device, generator, rand_values_per_block(kFloat64), [](const std::array<uint32_t, 4>& w, double* v) {
        v[0] = uniform53(w[0], w[1]);
        v[1] = uniform53(w[2], w[3]);
      });
    }
  });
}

Tensor randn(const Shape& sizes, DType dtype, Device device, Generator* generator) {
  return dispatch_floating(dtype, "randn", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float>) {
      return generate<T>(sizes, dtype, device, generator, rand_values_per_block(kFloat32), [](const std::array<uint32_t, 4>& w, double* v) {
        box_muller(uniform24(w[0]), uniform24(w[1]), v[0], v[1]);
        box_muller(uniform24(w[2]), uniform24(w[3]), v[2], v[3]);
      });
    } else {
      return generate<T>(sizes, dtype, device, generator, rand_values_per_block(kFloat64), [](const std::array<uint32_t, 4>& w, double* v) {
        box_muller(uniform53(w[0], w[1]), uniform53(w[2], w[3]), v[0], v[1]);
      });
    }
  });
}

Tensor randint(int64_t low, int64_t high, const Shape& sizes, Device device, Generator* generator) {
  check(high > low && high - low <= (int64_t(1) << 32), "randint: need low < high with a range of at most 2^32, got [",
        low, ", ", high, ")");
  const uint64_t range = static_cast<uint64_t>(high - low);
  return generate<int64_t>(sizes, kInt64, device, generator, 4, [&](const std::array<uint32_t, 4>& w, double* v) {
    for (int k = 0; k < 4; ++k) v[k] = static_cast<double>(low + static_cast<int64_t>(w[k] % range));
  });
}

}  // namespace mrcnn
