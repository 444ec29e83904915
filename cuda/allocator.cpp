// Size-class free lists with statistics; see allocator.h. One stream means a block released by the
// host can be handed to the next request at once: any kernel still reading it was queued earlier on
// the same stream, so the new owner's work runs after it.
#include "cuda/allocator.h"

#include <algorithm>

#include "tensor/error.h"

namespace mrcnn::cuda {

namespace {
constexpr size_t kSmallLimit = size_t(1) << 20;
constexpr size_t kSmallQuantum = 512;
constexpr size_t kLargeQuantum = size_t(2) << 20;

size_t round_up(size_t n, size_t quantum) { return (n + quantum - 1) / quantum * quantum; }
}  // namespace

CachingAllocator::CachingAllocator(RawAlloc raw_alloc, RawFree raw_free)
    : raw_alloc_(std::move(raw_alloc)), raw_free_(std::move(raw_free)) {}

size_t CachingAllocator::size_class(size_t nbytes) {
  return nbytes < kSmallLimit ? round_up(nbytes, kSmallQuantum) : round_up(nbytes, kLargeQuantum);
}

void* CachingAllocator::allocate(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  const size_t size = size_class(nbytes);
  std::lock_guard<std::mutex> lock(mutex_);
  ++stats_.requests;
  void* block = nullptr;
  auto it = free_lists_.find(size);
  if (it != free_lists_.end() && !it->second.empty()) {
    block = it->second.back();
    it->second.pop_back();
    stats_.cached -= size;
    ++stats_.cache_hits;
  } else {
    block = raw_alloc_(size);
    if (!block && stats_.cached > 0) {
      // Out of device memory with blocks of other sizes cached: give them back and try once more.
      for (auto& [cached_size, blocks] : free_lists_)
        for (void* b : blocks) raw_free_(b);
      free_lists_.clear();
      stats_.reserved -= stats_.cached;
      stats_.cached = 0;
      block = raw_alloc_(size);
    }
    if (!block)
      throw Error(str_cat("CUDA out of memory: could not allocate ", size, " bytes (", stats_.in_use,
                          " bytes in use by tensors, ", stats_.reserved, " reserved)"));
    ++stats_.driver_allocs;
    stats_.reserved += size;
  }
  live_.emplace(block, LiveBlock{size, nbytes});
  stats_.in_use += size;
  stats_.requested_in_use += nbytes;
  stats_.peak_in_use = std::max(stats_.peak_in_use, stats_.in_use);
  stats_.peak_requested = std::max(stats_.peak_requested, stats_.requested_in_use);
  return block;
}

void CachingAllocator::release(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  if (it == live_.end()) throw Error("CUDA allocator: release of a pointer it did not allocate");
  const size_t size = it->second.size_class;
  stats_.requested_in_use -= it->second.requested;
  live_.erase(it);
  free_lists_[size].push_back(ptr);
  stats_.in_use -= size;
  stats_.cached += size;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [size, blocks] : free_lists_)
    for (void* b : blocks) raw_free_(b);
  free_lists_.clear();
  stats_.reserved -= stats_.cached;
  stats_.cached = 0;
}

MemoryStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_in_use = stats_.in_use;
  stats_.peak_requested = stats_.requested_in_use;
}

}  // namespace mrcnn::cuda
