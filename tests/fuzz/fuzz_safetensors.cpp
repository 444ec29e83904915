// libFuzzer target: the safetensors reader on arbitrary bytes (hostile checkpoints), then the
// checkpoint metadata reader on what it accepts. Must load or throw mrcnn::Error.
#include <cstddef>
#include <cstdint>
#include <string>

#include "tensor/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    const auto file = mrcnn::safetensors::parse(bytes, "fuzz.safetensors");
    for (const auto& [name, tensor] : file.tensors) (void)tensor.numel();
  } catch (const mrcnn::Error&) {
  }
  return 0;
}
