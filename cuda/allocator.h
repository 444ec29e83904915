// The caching allocator behind every CUDA tensor: device memory is taken from the driver once and
// reused, so a training step allocates nothing from the driver after the first. Plain C++ over two
// raw functions (the driver's malloc/free), so its bookkeeping is tested on machines without a GPU
// (tests/test_tensor_basics.cpp) with host memory standing in.
//
// Two pools, as PyTorch's allocator has. Small requests (< 1 MiB: biases, per-RoI data) round up to
// 512 B and are reused through exact-size free lists. Large requests (feature maps, workspaces) round
// up to 512 B and are cut from driver segments (20 MiB, or the request rounded up to 2 MiB when it is
// over 10 MiB): the smallest free block that fits is taken and split, and a released block merges
// with its free neighbours in the segment. A tensor so holds what it asked for, within 512 B, and a
// freed 6 MiB feature map serves a 4 MiB and a 2 MiB request after it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

namespace mrcnn::cuda {

struct MemoryStats {
  size_t in_use = 0;        // bytes (512 B rounded) held by live blocks
  size_t cached = 0;        // bytes of free blocks, reusable without the driver
  size_t peak_in_use = 0;   // high-water mark of in_use since the last reset_peak()
  // The same two counts in bytes as requested (before rounding): what PyTorch's
  // max_memory_allocated reports; in_use minus this is what the rounding costs.
  size_t requested_in_use = 0;
  size_t peak_requested = 0;
  size_t reserved = 0;      // in_use + cached: what the driver has given us
  size_t peak_reserved = 0; // high-water mark of reserved since the last reset_peak()
  int64_t requests = 0;     // allocate() calls with nbytes > 0
  int64_t cache_hits = 0;   // of those, served from cached memory
  int64_t driver_allocs = 0;
  int64_t segments = 0;     // driver allocations held now
};

class CachingAllocator {
 public:
  using RawAlloc = std::function<void*(size_t)>;  // returns nullptr when out of memory
  using RawFree = std::function<void(void*)>;
  CachingAllocator(RawAlloc raw_alloc, RawFree raw_free);
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // nullptr for nbytes == 0. When the driver is out of memory, the cached memory that can be handed
  // back is, and the allocation retried once; then it throws an Error naming the size and the state.
  void* allocate(size_t nbytes);
  void release(void* ptr);  // ptr from allocate()
  void empty_cache();       // hands every wholly free driver allocation back to the driver
  MemoryStats stats() const;
  void reset_peak();

  static size_t rounded_size(size_t nbytes);     // what a request of nbytes holds: 512 B multiples
  static size_t segment_size(size_t rounded);    // the driver allocation a large request starts
  static constexpr size_t kSmallLimit = size_t(1) << 20;  // requests below it use the small pool

 private:
  // A large block: a piece of one driver segment; prev/next are its neighbours in that segment.
  struct Block {
    char* ptr;
    size_t size;
    size_t requested = 0;  // 0 while free
    Block* prev = nullptr;
    Block* next = nullptr;
  };
  struct BySizeThenAddress {
    bool operator()(const Block* a, const Block* b) const { return a->size != b->size ? a->size < b->size : a->ptr < b->ptr; }
  };

  void* allocate_large(size_t size, size_t nbytes);
  void release_large(Block* block);
  void* from_driver(size_t& bytes, size_t fallback);
  void free_cached_memory();  // the body of empty_cache, with the mutex held
  void count_in_use(size_t size, size_t nbytes);

  RawAlloc raw_alloc_;
  RawFree raw_free_;
  mutable std::mutex mutex_;
  std::map<size_t, std::vector<void*>> small_free_;  // size -> free small blocks
  struct SmallBlock {
    size_t size, requested;
  };
  std::unordered_map<void*, SmallBlock> small_live_;
  std::set<Block*, BySizeThenAddress> large_free_;
  std::unordered_map<void*, Block*> large_live_;
  MemoryStats stats_;
};

// The process's allocator for CUDA memory (in context.cu; stubs report zeros without CUDA).
MemoryStats memory_stats();
void empty_cache();
void reset_peak_memory();

}  // namespace mrcnn::cuda
