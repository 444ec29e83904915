// The caching allocator behind every CUDA tensor: device memory is taken from the driver once and
// reused through free lists keyed by size class, so a training step allocates nothing from the driver
// after the first. Plain C++ over two raw functions (the driver's malloc/free), so its bookkeeping is
// tested on machines without a GPU (tests/test_tensor_basics.cpp) with host memory standing in.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace mrcnn::cuda {

struct MemoryStats {
  size_t in_use = 0;        // bytes (size-class rounded) held by live blocks
  size_t cached = 0;        // bytes in free lists, reusable without the driver
  size_t peak_in_use = 0;   // high-water mark of in_use since the last reset_peak()
  // The same two counts in bytes as requested (before size-class rounding): what PyTorch's
  // max_memory_allocated reports; in_use minus this is what the rounding costs.
  size_t requested_in_use = 0;
  size_t peak_requested = 0;
  size_t reserved = 0;      // in_use + cached: what the driver has given us
  int64_t requests = 0;     // allocate() calls with nbytes > 0
  int64_t cache_hits = 0;   // of those, served from a free list
  int64_t driver_allocs = 0;
};

class CachingAllocator {
 public:
  using RawAlloc = std::function<void*(size_t)>;  // returns nullptr when out of memory
  using RawFree = std::function<void(void*)>;
  CachingAllocator(RawAlloc raw_alloc, RawFree raw_free);
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // nullptr for nbytes == 0. When the driver is out of memory, the cache is returned to it and the
  // allocation retried once; then it throws an Error naming the size and the allocator's state.
  void* allocate(size_t nbytes);
  void release(void* ptr);  // ptr from allocate(); the block goes back to its size class's free list
  void empty_cache();       // hands every cached block back to the driver
  MemoryStats stats() const;
  void reset_peak();

  // Size classes: multiples of 512 B below 1 MiB (small tensors: biases, per-RoI data), multiples of
  // 2 MiB above (feature maps), so a block serves every request that rounds to the same class.
  static size_t size_class(size_t nbytes);

 private:
  RawAlloc raw_alloc_;
  RawFree raw_free_;
  mutable std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_lists_;
  struct LiveBlock {
    size_t size_class, requested;
  };
  std::unordered_map<void*, LiveBlock> live_;
  MemoryStats stats_;
};

// The process's allocator for CUDA memory (in context.cu; stubs report zeros without CUDA).
MemoryStats memory_stats();
void empty_cache();
void reset_peak_memory();

}  // namespace mrcnn::cuda
