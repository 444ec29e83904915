// Storage allocation: aligned host memory or CUDA device memory.
#include "tensor/storage.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
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

class HostCache {
 public:
  void* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = free_.find(bytes);
    if (it == free_.end()) {
      ++stats_.misses;
      return nullptr;
    }
    void* p = it->second;
    free_.erase(it);
    stats_.cached_bytes -= bytes;
    ++stats_.hits;
    return p;
  }
  // False when the cache is full: the caller frees the block.
  bool give(void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stats_.cached_bytes + bytes > cache_limit_bytes()) return false;
    free_.emplace(bytes, p);
    stats_.cached_bytes += bytes;
    return true;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [bytes, p] : free_) std::free(p);
    free_.clear();
    stats_.cached_bytes = 0;
  }
  HostCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

 private:
  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  HostCacheStats stats_;
};

// Never destroyed: Storages freed during static destruction still find it.
HostCache& host_cache() {
  static HostCache* cache = new HostCache();
  return *cache;
}

std::atomic<size_t> host_in_use{0}, host_peak{0};

void count_host_allocation(size_t nbytes) {
  const size_t now = host_in_use.fetch_add(nbytes, std::memory_order_relaxed) + nbytes;
  size_t peak = host_peak.load(std::memory_order_relaxed);
  while (now > peak && !host_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

}  // namespace

HostMemoryStats host_memory_stats() { return {host_in_use.load(), host_peak.load()}; }
void reset_host_peak_memory() { host_peak.store(host_in_use.load()); }

HostCacheStats host_cache_stats() { return host_cache().stats(); }
void empty_host_cache() { host_cache().clear(); }

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_cuda()) {
    data_ = nbytes ? cuda::device_malloc(nbytes) : nullptr;
    return;
  }
  // 64-byte alignment for AVX loads.
  const size_t bytes = host_block_bytes(nbytes);
  if (bytes >= kCachedMinBytes) data_ = host_cache().take(bytes);
  if (!data_) data_ = std::aligned_alloc(64, bytes);
  if (!data_) throw Error(str_cat("out of host memory allocating ", nbytes, " bytes"));
  count_host_allocation(nbytes);
}

Storage::~Storage() {
  if (device_.is_cuda()) {
    cuda::device_free(data_);
    return;
  }
  host_in_use.fetch_sub(nbytes_, std::memory_order_relaxed);
  if (const size_t bytes = host_block_bytes(nbytes_); bytes < kCachedMinBytes || !host_cache().give(data_, bytes))
    std::free(data_);
}

}  // namespace mrcnn
