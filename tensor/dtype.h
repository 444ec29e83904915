// Element types and devices a Tensor can have.
// Dimension letters used across the project: N batch, C channels, H height, W width, R RoIs,
// A anchors, K classes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace mrcnn {

// Bool is stored as one byte (uint8_t) holding 0 or 1.
enum class DType : uint8_t { Float32, Float64, Int64, Bool };
constexpr DType kFloat32 = DType::Float32;
constexpr DType kFloat64 = DType::Float64;
constexpr DType kInt64 = DType::Int64;
constexpr DType kBool = DType::Bool;

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // "float32", "float64", "int64", "bool"
inline bool is_floating(DType dtype) { return dtype == kFloat32 || dtype == kFloat64; }

template <typename T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = kFloat32; };
template <> struct DTypeOf<double> { static constexpr DType value = kFloat64; };
template <> struct DTypeOf<int64_t> { static constexpr DType value = kInt64; };
template <> struct DTypeOf<uint8_t> { static constexpr DType value = kBool; };

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& other) const { return type == other.type && index == other.index; }
  bool operator!=(const Device& other) const { return !(*this == other); }
  std::string str() const;  // "cpu", "cuda:0"
};
inline const Device kCPU{DeviceType::CPU, 0};
inline const Device kCUDA{DeviceType::CUDA, 0};
Device parse_device(const std::string& name);  // "cpu", "cuda", "cuda:1"

}  // namespace mrcnn
