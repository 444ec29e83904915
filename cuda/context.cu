// Device query, the stream, library handles, device memory and copies.
#include <mutex>

#include "cuda/check.h"
#include "cuda/context.h"

namespace mrcnn::cuda {

namespace {
int query_device_count(std::string* reason) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    if (reason) *reason = str_cat("no CUDA device: ", cudaGetErrorString(status));
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return 0;
  }
  if (count == 0 && reason) *reason = "no CUDA device found";
  return count;
}
}  // namespace

bool built_with_cuda() { return true; }

int device_count() {
  static const int count = query_device_count(nullptr);
  return count;
}

bool is_available() { return device_count() > 0; }

std::string unavailable_reason() {
  std::string reason;
  query_device_count(&reason);
  return reason.empty() ? std::string("CUDA device present") : reason;
}

std::string device_name(int index) {
  cudaDeviceProp prop{};
  MRCNN_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return prop.name;
}

cudaStream_t stream() {
  static cudaStream_t s = [] {
    cudaStream_t created = nullptr;
    MRCNN_CUDA_CHECK(cudaStreamCreateWithFlags(&created, cudaStreamNonBlocking));
    return created;
  }();
  return s;
}

cublasHandle_t cublas_handle() {
  static cublasHandle_t handle = [] {
    cublasHandle_t created = nullptr;
    MRCNN_CUBLAS_CHECK(cublasCreate(&created));
    MRCNN_CUBLAS_CHECK(cublasSetStream(created, stream()));
    return created;
  }();
  return handle;
}

cudnnHandle_t cudnn_handle() {
  static cudnnHandle_t handle = [] {
    cudnnHandle_t created = nullptr;
    MRCNN_CUDNN_CHECK(cudnnCreate(&created));
    MRCNN_CUDNN_CHECK(cudnnSetStream(created, stream()));
    return created;
  }();
  return handle;
}

void* device_malloc(size_t nbytes) {
  check(is_available(), "CUDA tensor requested but ", unavailable_reason());
  void* ptr = nullptr;
  // Stream-ordered allocation: frees and reuses follow the stream, no device-wide sync. The caching
  // allocator with statistics replaces this in the CUDA backend issue.
  MRCNN_CUDA_CHECK(cudaMallocAsync(&ptr, nbytes, stream()));
  return ptr;
}

void device_free(void* ptr) noexcept {
  if (ptr) cudaFreeAsync(ptr, stream());
}

void copy_host_to_device(void* dst, const void* src, size_t nbytes) {
  MRCNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, stream()));
  // The host buffer may be freed as soon as we return (it is pageable): wait for the copy.
  MRCNN_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void copy_device_to_host(void* dst, const void* src, size_t nbytes) {
  MRCNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, stream()));
  MRCNN_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void copy_device_to_device(void* dst, const void* src, size_t nbytes) {
  MRCNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, stream()));
}

void memset_zero(void* dst, size_t nbytes) { MRCNN_CUDA_CHECK(cudaMemsetAsync(dst, 0, nbytes, stream())); }

void synchronize() { MRCNN_CUDA_CHECK(cudaStreamSynchronize(stream())); }

}  // namespace mrcnn::cuda
