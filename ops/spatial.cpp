// Argument checks shared by the 2-D spatial ops.
#include "ops/spatial.h"

namespace mrcnn::ops {

void check_spatial_input(const Tensor& x, int64_t dims, const char* layout, const char* op) {
  check(x.defined(), op, ": input is an undefined tensor");
  check(x.dim() == dims, op, ": expected a ", dims, "-D input ", layout, ", got shape ", shape_str(x.sizes()));
  check_float_input(x, op);
}

void check_float_input(const Tensor& x, const char* op) {
  check(x.dtype() == kFloat32 || x.dtype() == kFloat64, op, ": expected a float32 or float64 input, got ",
        dtype_name(x.dtype()));
}

}  // namespace mrcnn::ops
