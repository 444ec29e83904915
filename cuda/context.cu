// Device query, the stream, library handles, device memory and copies.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/allocator.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/staging_ring.h"

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

// Host<->device copies go through one pinned ring (cuda/staging_ring.h): pageable memory cannot be
// copied asynchronously (the driver stages it synchronously), pinned memory can. An upload returns
// once its bytes are in the ring; a download waits for its own bytes only. Copies larger than half
// the ring go in half-ring chunks, so a large upload streams: the host fills one half while the GPU
// reads the other.
constexpr size_t kStagingBytes = size_t(16) << 20;
constexpr size_t kStagingChunk = kStagingBytes / 2;
constexpr size_t kStagingRegions = 256;
constexpr size_t kStagingAlignment = 256;  // regions start on 256-byte boundaries, as cudaMalloc's do

// MRCNN_STAGING_TWO_SLOTS=1 (for side-by-side benchmarks only): every copy takes half the ring, the
// behaviour before the ring: the third upload of a burst waits for the GPU to reach the first.
size_t staging_region_bytes(size_t chunk) {
  static const bool two_slots = [] {
    const char* value = std::getenv("MRCNN_STAGING_TWO_SLOTS");
    return value && std::string(value) == "1";
  }();
  return two_slots ? kStagingChunk : (chunk + kStagingAlignment - 1) / kStagingAlignment * kStagingAlignment;
}

// Events for the ring's regions, reused: creating one per copy would cost a driver call each.
struct StreamEvents {
  using Event = cudaEvent_t;
  std::vector<cudaEvent_t> spare;
  cudaEvent_t record() {
    cudaEvent_t event = nullptr;
    if (spare.empty()) {
      MRCNN_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    } else {
      event = spare.back();
      spare.pop_back();
    }
    MRCNN_CUDA_CHECK(cudaEventRecord(event, stream()));
    return event;
  }
  void wait(cudaEvent_t event) { MRCNN_CUDA_CHECK(cudaEventSynchronize(event)); }
  void recycle(cudaEvent_t event) { spare.push_back(event); }
};

struct Staging {
  char* buffer = nullptr;
  StagingRing<StreamEvents> ring{kStagingBytes, kStagingRegions, StreamEvents{}};
  std::mutex mutex;
  Staging() {
    void* pinned = nullptr;
    MRCNN_CUDA_CHECK(cudaHostAlloc(&pinned, kStagingBytes, cudaHostAllocDefault));
    buffer = static_cast<char*>(pinned);
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
std::atomic<int64_t> downloads{0}, download_bytes{0}, uploads{0}, upload_bytes{0}, download_wait_ns{0}, upload_wait_ns{0};

int64_t nanoseconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

TransferStats transfer_stats() {
  return {downloads.load(), download_bytes.load(), uploads.load(), upload_bytes.load(), download_wait_ns.load(), upload_wait_ns.load()};
}

void reset_transfer_stats() {
  downloads = 0, download_bytes = 0, uploads = 0, upload_bytes = 0, download_wait_ns = 0, upload_wait_ns = 0;
}

void copy_host_to_device(void* dst, const void* src, size_t nbytes) {
  Staging& s = staging();
  std::lock_guard<std::mutex> lock(s.mutex);
  ++uploads, upload_bytes += static_cast<int64_t>(nbytes);
  for (size_t offset = 0; offset < nbytes; offset += kStagingChunk) {
    const size_t chunk = std::min(kStagingChunk, nbytes - offset);
    const auto start = std::chrono::steady_clock::now();
    const size_t region = staging_region_bytes(chunk);
    const size_t at = s.ring.acquire(region);  // waits only if the GPU still reads that part of the ring
    upload_wait_ns += nanoseconds_since(start);
    std::memcpy(s.buffer + at, static_cast<const char*>(src) + offset, chunk);
    MRCNN_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + offset, s.buffer + at, chunk, cudaMemcpyHostToDevice, stream()));
    s.ring.submitted(at, region);
  }
}

void copy_device_to_host(void* dst, const void* src, size_t nbytes) {
  Staging& s = staging();
  std::lock_guard<std::mutex> lock(s.mutex);
  ++downloads, download_bytes += static_cast<int64_t>(nbytes);
  // Chunk by chunk: each chunk's bytes are read out of the ring before the next chunk may reuse
  // that part of it (downloads are the host's waits for results; their size is rarely above a chunk).
  for (size_t offset = 0; offset < nbytes; offset += kStagingChunk) {
    const size_t chunk = std::min(kStagingChunk, nbytes - offset);
    const auto start = std::chrono::steady_clock::now();
    const size_t region = staging_region_bytes(chunk);
    const size_t at = s.ring.acquire(region);
    MRCNN_CUDA_CHECK(cudaMemcpyAsync(s.buffer + at, static_cast<const char*>(src) + offset, chunk, cudaMemcpyDeviceToHost, stream()));
    s.ring.submitted(at, region);
    s.ring.wait_for_newest();
    download_wait_ns += nanoseconds_since(start);
    std::memcpy(static_cast<char*>(dst) + offset, s.buffer + at, chunk);
  }
}

void copy_device_to_device(void* dst, const void* src, size_t nbytes) {
  MRCNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, stream()));
}

void memset_zero(void* dst, size_t nbytes) { MRCNN_CUDA_CHECK(cudaMemsetAsync(dst, 0, nbytes, stream())); }

void synchronize() {
  if (is_available()) MRCNN_CUDA_CHECK(cudaStreamSynchronize(stream()));  // nothing queued without a device
}

}  // namespace mrcnn::cuda
