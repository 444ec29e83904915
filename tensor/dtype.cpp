// DType sizes and names, Device names.
#include "tensor/dtype.h"

#include "tensor/error.h"

namespace mrcnn {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case kFloat32: return 4;
    case kFloat64: return 8;
    case kInt64: return 8;
    case kBool: return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case kFloat32: return "float32";
    case kFloat64: return "float64";
    case kInt64: return "int64";
    case kBool: return "bool";
  }
  return "unknown";
}

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index);
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return kCPU;
  if (name == "cuda") return kCUDA;
  if (name.rfind("cuda:", 0) == 0 && name.size() > 5 &&
      name.find_first_not_of("0123456789", 5) == std::string::npos && name.size() < 9)
    return Device{DeviceType::CUDA, std::stoi(name.substr(5))};
  throw Error("unknown device '" + name + "': expected cpu, cuda or cuda:N");
}

}  // namespace mrcnn
