// The CUDA API when the project is built without CUDA (MRCNN_CUDA=OFF or no nvcc/cuDNN): queries
// report no device and anything that would touch one throws a clear error.
#include "cuda/context.h"
#include "cuda/elementwise.h"

namespace mrcnn::cuda {

namespace {
[[noreturn]] void unavailable(const char* what) {
  throw Error(str_cat(what, ": this build has no CUDA support (configure with -DMRCNN_CUDA=ON on a machine with nvcc and cuDNN)"));
}
}  // namespace

bool built_with_cuda() { return false; }
int device_count() { return 0; }
bool is_available() { return false; }
std::string device_name(int) { unavailable("device_name"); }
std::string unavailable_reason() { return "built without CUDA"; }
void* device_malloc(size_t) { unavailable("device_malloc"); }
void device_free(void*) noexcept {}
void copy_host_to_device(void*, const void*, size_t) { unavailable("copy_host_to_device"); }
void copy_device_to_host(void*, const void*, size_t) { unavailable("copy_device_to_host"); }
void copy_device_to_device(void*, const void*, size_t) { unavailable("copy_device_to_device"); }
void memset_zero(void*, size_t) { unavailable("memset_zero"); }
void synchronize() {}

void fill(const Tensor&, double) { unavailable("fill"); }
void copy_strided(const Tensor&, const Tensor&) { unavailable("copy"); }
void unary_forward(UnaryOp, double, double, const Tensor&, const Tensor&) { unavailable("unary op"); }
void binary_forward(BinaryOp, double, const Tensor&, const Tensor&, const Tensor&) { unavailable("binary op"); }
void compare_forward(CompareOp, const Tensor&, const Tensor&, const Tensor&) { unavailable("compare op"); }
void where_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&) { unavailable("where"); }
void sum_reduce(const Tensor&, int64_t, int64_t, int64_t, const Tensor&) { unavailable("sum"); }

}  // namespace mrcnn::cuda
