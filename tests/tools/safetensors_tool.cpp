// Test helper for the Python interop check: `dump FILE` prints a file as JSON (names, dtypes, shapes,
// values as doubles, metadata); `write FILE` writes the fixed set of tensors the script expects.
#include <iostream>
#include <nlohmann/json.hpp>

#include "tensor/safetensors.h"

using namespace mrcnn;

// The values written for dtype d are i * 0.25 - 3 for i in [0, numel): exact in F16 and BF16 too.
static Tensor ramp(const Shape& shape, DType dtype) {
  std::vector<double> values(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<double>(i) * 0.25 - 3;
  return copy_as(from_vector<double>(values, shape), dtype, kCPU);
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: safetensors_tool dump|write FILE\n";
    return 2;
  }
  const std::string mode = argv[1], path = argv[2];
  try {
    if (mode == "dump") {
      const auto file = safetensors::load(path);
      nlohmann::json out;
      out["__metadata__"] = file.metadata;
      for (const auto& [name, t] : file.tensors)
        out[name] = {{"dtype", dtype_name(t.dtype())}, {"shape", t.sizes()}, {"values", to_vector<double>(t)}};
      std::cout << out.dump() << "\n";
    } else if (mode == "write") {
      safetensors::File f32;
      f32.metadata = {{"writer", "mrcnn"}, {"note", "d\xc3\xa9j\xc3\xa0 vu"}};
      f32.tensors["f32"] = ramp({2, 3}, kFloat32);
      f32.tensors["f64"] = ramp({4}, kFloat64);
      f32.tensors["i64"] = from_vector<int64_t>({-5, 0, 7, int64_t(1) << 40}, {2, 2});
      f32.tensors["mask"] = from_vector<uint8_t>({1, 0, 1}, {3});
      f32.tensors["scalar"] = ramp({}, kFloat32);
      f32.tensors["empty"] = ramp({0, 3}, kFloat32);
      safetensors::save(path, f32);
      safetensors::File halves;
      halves.tensors["f16"] = ramp({5}, kFloat32);
      safetensors::save(path + ".f16", halves, safetensors::FloatStorage::F16);
      safetensors::save(path + ".bf16", halves, safetensors::FloatStorage::BF16);
    } else {
      std::cerr << "unknown mode " << mode << "\n";
      return 2;
    }
  } catch (const std::exception& e) {
    std::cerr << "safetensors_tool: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
