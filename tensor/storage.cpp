// Storage allocation: aligned host memory or CUDA device memory.
#include "tensor/storage.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <iterator>
#include <list>
#include <map>
#include <mutex>
#include <new>

#include <unistd.h>

#include "cuda/context.h"
#include "tensor/error.h"

namespace mrcnn {

namespace {

constexpr size_t kCachedMinBytes = size_t{1} << 20;  // below this malloc reuses memory well by itself
// At most this much is kept: 1 GB, or 1/16 of the machine's memory if that is less;
// MRCNN_HOST_CACHE_MB overrides it (0 turns the cache off).
size_t cache_limit_bytes() {
  static const size_t limit = [] {
    if (const char* env = std::getenv("MRCNN_HOST_CACHE_MB")) return static_cast<size_t>(std::strtoull(env, nullptr, 10)) << 20;
    const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
    const size_t physical = pages > 0 && page_size > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page_size) : 0;
    return physical ? std::min(size_t{1} << 30, physical / 16) : size_t{1} << 30;
  }();
  return limit;
}

// Sizes >= 1 MB round up to a multiple of 1/8 of their power of two, so blocks of nearby sizes (the
// detector's shapes vary a little from step to step) share a class; at most 12.5% is wasted.
size_t host_block_bytes(size_t nbytes) {
  const size_t bytes = (std::max<size_t>(nbytes, 1) + 63) / 64 * 64;  // aligned_alloc wants a multiple
  if (bytes < kCachedMinBytes) return bytes;
  size_t power = kCachedMinBytes;
  while (power * 2 <= bytes) power *= 2;
  const size_t step = power / 8;
  return (bytes + step - 1) / step * step;
}

// Live host memory: bytes as requested (the statistics), and in allocated blocks with their
// never-reset high-water mark (the cache's bound).
std::atomic<size_t> host_in_use{0}, host_peak{0}, blocks_in_use{0}, blocks_high_water{0};

void raise_to(std::atomic<size_t>& mark, size_t value) {
  size_t seen = mark.load(std::memory_order_relaxed);
  while (value > seen && !mark.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

void count_host_allocation(size_t nbytes, size_t block_bytes) {
  raise_to(host_peak, host_in_use.fetch_add(nbytes, std::memory_order_relaxed) + nbytes);
  raise_to(blocks_high_water, blocks_in_use.fetch_add(block_bytes, std::memory_order_relaxed) + block_bytes);
}

void count_host_free(size_t nbytes, size_t block_bytes) {
  host_in_use.fetch_sub(nbytes, std::memory_order_relaxed);
  blocks_in_use.fetch_sub(block_bytes, std::memory_order_relaxed);
}

// Free blocks by size class, oldest first. The cache never lets live blocks plus cached ones exceed
// the most the process has ever had live, plus 1/8 (so a peak that creeps up does not flush it): on
// a miss that would, the oldest cached blocks (sizes the work stopped asking for, e.g. training's
// after a switch to inference) are freed first. So the cache costs little memory beyond the peak
// working set, and in a steady loop its blocks are reused.
size_t cache_ceiling() {
  const size_t high_water = blocks_high_water.load(std::memory_order_relaxed);
  return high_water + high_water / 8;
}

class HostCache {
 public:
  // The most recently freed cached block of at least `bytes` and at most 1/4 more (its size in
  // *block_bytes), or null after making room for a fresh one of `bytes`.
  void* take(size_t bytes, size_t* block_bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto fit = by_size_.lower_bound(bytes);
    if (fit == by_size_.end() || fit->first > bytes + bytes / 4) {
      ++stats_.misses;
      const size_t ceiling = cache_ceiling();
      while (!age_.empty() && blocks_in_use.load(std::memory_order_relaxed) + stats_.cached_bytes + bytes > ceiling)
        release_oldest();
      return nullptr;
    }
    fit = std::prev(by_size_.upper_bound(fit->first));
    const auto entry = fit->second;
    void* p = entry->p;
    *block_bytes = entry->bytes;
    by_size_.erase(fit);
    age_.erase(entry);
    stats_.cached_bytes -= *block_bytes;
    ++stats_.hits;
    return p;
  }
  // False when the cache is full: the caller frees the block.
  bool give(void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stats_.cached_bytes + bytes > cache_limit_bytes()) return false;
    age_.push_back({bytes, p});
    by_size_.emplace(bytes, std::prev(age_.end()));
    stats_.cached_bytes += bytes;
    return true;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    while (!age_.empty()) release_oldest();
  }
  HostCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    HostCacheStats s = stats_;
    s.ceiling_bytes = cache_ceiling();
    return s;
  }

 private:
  struct Block {
    size_t bytes;
    void* p;
  };
  void release_oldest() {
    const Block oldest = age_.front();
    auto [first, last] = by_size_.equal_range(oldest.bytes);
    while (first->second != age_.begin()) ++first;
    by_size_.erase(first);
    age_.pop_front();
    std::free(oldest.p);
    stats_.cached_bytes -= oldest.bytes;
  }

  std::mutex mutex_;
  std::list<Block> age_;                                       // oldest first
  std::multimap<size_t, std::list<Block>::iterator> by_size_;  // equal sizes in the order freed
  HostCacheStats stats_;
};

// Never destroyed: Storages freed during static destruction still find it.
HostCache& host_cache() {
  static HostCache* cache = new HostCache();
  return *cache;
}

}  // namespace

namespace {
std::atomic<HostAllocationObserver> host_observer{nullptr};
}  // namespace

void set_host_allocation_observer(HostAllocationObserver observer) { host_observer.store(observer); }

HostMemoryStats host_memory_stats() { return {host_in_use.load(), host_peak.load()}; }
void reset_host_peak_memory() { host_peak.store(host_in_use.load()); }

HostCacheStats host_cache_stats() { return host_cache().stats(); }
void empty_host_cache() { host_cache().clear(); }

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_cuda()) {
    data_ = nbytes ? cuda::device_malloc(nbytes) : nullptr;
    return;
  }
  // More than the machine's RAM cannot be used even where overcommit would grant it (and ASan aborts
  // on such a request instead of returning null), so it is refused here, with both sizes.
  static const size_t physical_bytes = static_cast<size_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<size_t>(sysconf(_SC_PAGE_SIZE));
  if (nbytes > physical_bytes)
    throw Error(str_cat("out of host memory allocating ", nbytes, " bytes (this machine has ", physical_bytes, ")"));
  // 64-byte alignment for AVX loads.
  block_bytes_ = host_block_bytes(nbytes);
  if (block_bytes_ >= kCachedMinBytes) data_ = host_cache().take(block_bytes_, &block_bytes_);
  if (!data_) data_ = std::aligned_alloc(64, block_bytes_);
  if (!data_) throw Error(str_cat("out of host memory allocating ", nbytes, " bytes"));
  count_host_allocation(nbytes, block_bytes_);
  if (const HostAllocationObserver observe = host_observer.load(std::memory_order_relaxed)) observe(this, nbytes, true);
}

Storage::~Storage() {
  if (device_.is_cuda()) {
    cuda::device_free(data_);
    return;
  }
  count_host_free(nbytes_, block_bytes_);
  if (const HostAllocationObserver observe = host_observer.load(std::memory_order_relaxed)) observe(this, nbytes_, false);
  if (block_bytes_ < kCachedMinBytes || !host_cache().give(data_, block_bytes_)) std::free(data_);
}

}  // namespace mrcnn
