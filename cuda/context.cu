// Device query, the stream, library handles, device memory and copies.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>

#include "cuda/allocator.h"
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
    MRCNN_CUBLAS_CHECK(cublas().create(&created));
    MRCNN_CUBLAS_CHECK(cublas().set_stream(created, stream()));
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

namespace {

// Never destroyed: tensors freed during static destruction still find it (and the driver may already
// be shutting down then, so nothing is handed back at exit).
CachingAllocator& allocator() {
  static CachingAllocator* instance = new CachingAllocator(
      [](size_t nbytes) -> void* {
        void* ptr = nullptr;
        if (cudaMalloc(&ptr, nbytes) != cudaSuccess) {
          cudaGetLastError();  // out of memory is reported by the allocator, not left sticky
          return nullptr;
        }
        return ptr;
      },
      [](void* ptr) { cudaFree(ptr); });
  return *instance;
}

// Host<->device copies go through two pinned buffers: pageable memory cannot be copied
// asynchronously (the driver stages it synchronously), pinned memory can. A host-to-device copy
// returns once its bytes are in a staging buffer; each buffer's event says when the GPU has read it.
constexpr size_t kStagingBytes = size_t(8) << 20;

struct Staging {
  void* buffer[2] = {nullptr, nullptr};
  cudaEvent_t done[2] = {nullptr, nullptr};
  int next = 0;
  std::mutex mutex;
  Staging() {
    for (int i = 0; i < 2; ++i) {
      MRCNN_CUDA_CHECK(cudaHostAlloc(&buffer[i], kStagingBytes, cudaHostAllocDefault));
      MRCNN_CUDA_CHECK(cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming));
    }
  }
};

Staging& staging() {
  static Staging* instance = new Staging();
  return *instance;
}

}  // namespace

bool fill_uninitialized = false;

void set_fill_uninitialized(bool fill) { fill_uninitialized = fill; }

void* device_malloc(size_t nbytes) {
  check(is_available(), "CUDA tensor requested but ", unavailable_reason());
  void* ptr = allocator().allocate(nbytes);
  if (fill_uninitialized && ptr) MRCNN_CUDA_CHECK(cudaMemsetAsync(ptr, 0xFF, nbytes, stream()));
  return ptr;
}

void device_free(void* ptr) noexcept {
  if (ptr) allocator().release(ptr);
}

MemoryStats memory_stats() { return is_available() ? allocator().stats() : MemoryStats{}; }
void empty_cache() {
  if (!is_available()) return;
  synchronize();  // blocks handed back must not be in use by queued kernels
  allocator().empty_cache();
}
void reset_peak_memory() {
  if (is_available()) allocator().reset_peak();
}

namespace {
std::atomic<int64_t> downloads{0}, download_bytes{0}, uploads{0}, upload_bytes{0};
}  // namespace

TransferStats transfer_stats() { return {downloads.load(), download_bytes.load(), uploads.load(), upload_bytes.load()}; }

void reset_transfer_stats() { downloads = 0, download_bytes = 0, uploads = 0, upload_bytes = 0; }

void copy_host_to_device(void* dst, const void* src, size_t nbytes) {
  Staging& s = staging();
  std::lock_guard<std::mutex> lock(s.mutex);
  ++uploads, upload_bytes += static_cast<int64_t>(nbytes);
  for (size_t offset = 0; offset < nbytes; offset += kStagingBytes) {
    const size_t chunk = std::min(kStagingBytes, nbytes - offset);
    const int b = s.next;
    s.next = 1 - b;
    MRCNN_CUDA_CHECK(cudaEventSynchronize(s.done[b]));  // the GPU has finished reading this buffer
    std::memcpy(s.buffer[b], static_cast<const char*>(src) + offset, chunk);
    MRCNN_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + offset, s.buffer[b], chunk, cudaMemcpyHostToDevice, stream()));
    MRCNN_CUDA_CHECK(cudaEventRecord(s.done[b], stream()));
  }
}

void copy_device_to_host(void* dst, const void* src, size_t nbytes) {
  Staging& s = staging();
  std::lock_guard<std::mutex> lock(s.mutex);
  ++downloads, download_bytes += static_cast<int64_t>(nbytes);
  // Two chunks in flight: the GPU fills one buffer while the host empties the other.
  auto start = [&](size_t offset, int b) {
    const size_t chunk = std::min(kStagingBytes, nbytes - offset);
    MRCNN_CUDA_CHECK(cudaEventSynchronize(s.done[b]));
    MRCNN_CUDA_CHECK(cudaMemcpyAsync(s.buffer[b], static_cast<const char*>(src) + offset, chunk, cudaMemcpyDeviceToHost, stream()));
    MRCNN_CUDA_CHECK(cudaEventRecord(s.done[b], stream()));
  };
  if (nbytes == 0) return;
  int b = s.next;
  start(0, b);
  for (size_t offset = 0; offset < nbytes; offset += kStagingBytes) {
    if (offset + kStagingBytes < nbytes) start(offset + kStagingBytes, 1 - b);
    MRCNN_CUDA_CHECK(cudaEventSynchronize(s.done[b]));
    std::memcpy(static_cast<char*>(dst) + offset, s.buffer[b], std::min(kStagingBytes, nbytes - offset));
    b = 1 - b;
  }
  s.next = b;
}

void copy_device_to_device(void* dst, const void* src, size_t nbytes) {
  MRCNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, stream()));
}

void memset_zero(void* dst, size_t nbytes) { MRCNN_CUDA_CHECK(cudaMemsetAsync(dst, 0, nbytes, stream())); }

void synchronize() {
  if (is_available()) MRCNN_CUDA_CHECK(cudaStreamSynchronize(stream()));  // nothing queued without a device
}

}  // namespace mrcnn::cuda
