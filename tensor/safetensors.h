// Reading and writing the safetensors format (8-byte little-endian header length, JSON header,
// raw little-endian data), interchangeable with Python's `safetensors`. Reading validates every
// field, so a hostile file gives an Error naming the file and the problem, never a crash.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "tensor/tensor.h"

namespace mrcnn::safetensors {

struct File {
  std::map<std::string, Tensor> tensors;           // CPU tensors, contiguous
  std::map<std::string, std::string> metadata;     // the __metadata__ object (strings only)
};

// How floating tensors are stored on disk; F16/BF16 round to nearest even.
enum class FloatStorage { Native, F16, BF16 };

// The largest header accepted; Python's safetensors uses the same 100 MB cap.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// Which tensors to read into memory, by name; an empty filter keeps all. The header entries of the
// others are still validated (dtype, shape, offsets, overlaps), but their bytes are not read.
using TensorFilter = std::function<bool(const std::string& name)>;

File load(const std::string& path, const TensorFilter& keep = {});
// `name` is used in error messages.
File parse(std::string_view bytes, const std::string& name, const TensorFilter& keep = {});
std::string serialize(const File& file, FloatStorage storage = FloatStorage::Native);
// Written to a temporary file in the same directory, then renamed: a crash never leaves half a file.
void save(const std::string& path, const File& file, FloatStorage storage = FloatStorage::Native);

// IEEE binary16 and bfloat16 conversions (round to nearest even; NaN and infinities kept).
uint16_t float_to_half(float value);
float half_to_float(uint16_t bits);
uint16_t float_to_bfloat16(float value);
float bfloat16_to_float(uint16_t bits);

}  // namespace mrcnn::safetensors
