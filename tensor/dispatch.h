// Runs a generic lambda with a value of the C++ type matching a DType, so kernels are written once
// as templates: dispatch_floating(x.dtype(), "exp", [&](auto tag) { using T = decltype(tag); ... }).
#pragma once
#include <cstdint>

#include "tensor/dtype.h"
#include "tensor/error.h"

namespace mrcnn {

template <typename F>
decltype(auto) dispatch_floating(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case kFloat32: return f(float{});
    case kFloat64: return f(double{});
    default: break;
  }
  throw Error(str_cat(op, ": expected a float32 or float64 tensor, got ", dtype_name(dtype)));
}

template <typename F>
decltype(auto) dispatch_all(DType dtype, F&& f) {
  switch (dtype) {
    case kFloat32: return f(float{});
    case kFloat64: return f(double{});
    case kInt64: return f(int64_t{});
    case kBool: return f(uint8_t{});
  }
  throw Error("dispatch: unknown dtype");
}

}  // namespace mrcnn
