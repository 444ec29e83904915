// Counter-based random numbers (Philox4x32-10): element i of a draw depends only on the seed, the
// generator's offset and i, so one seed gives the same numbers on every machine and thread count.
#pragma once
#include <array>
#include <cstdint>

#include "tensor/tensor.h"

namespace mrcnn {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }  // Philox blocks consumed so far
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed; offset_ = offset; }
  // Reserves `blocks` consecutive Philox counters and returns the first.
  uint64_t reserve(uint64_t blocks) { uint64_t first = offset_; offset_ += blocks; return first; }

 private:
  uint64_t seed_ = 0;
  uint64_t offset_ = 0;
};

Generator& default_generator();
void manual_seed(uint64_t seed);

// Values rand and randn make from one Philox block (4 float32 or 2 float64), and so the blocks a call
// for n values reserves from its generator: a caller can skip what a call would draw, to make that
// call elsewhere from a copy of the generator.
constexpr int rand_values_per_block(DType dtype) { return dtype == kFloat32 ? 4 : 2; }
inline uint64_t rand_blocks(int64_t n, DType dtype) {
  return static_cast<uint64_t>((n + rand_values_per_block(dtype) - 1) / rand_values_per_block(dtype));
}

// U[0, 1) and N(0, 1); `generator` null means the default generator.
Tensor rand(const Shape& sizes, DType dtype = kFloat32, Device device = kCPU, Generator* generator = nullptr);
Tensor randn(const Shape& sizes, DType dtype = kFloat32, Device device = kCPU, Generator* generator = nullptr);
// Integers uniform in [low, high).
Tensor randint(int64_t low, int64_t high, const Shape& sizes, Device device = kCPU, Generator* generator = nullptr);

}  // namespace mrcnn
