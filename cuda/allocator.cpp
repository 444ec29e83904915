// Two-pool caching allocator with statistics; see allocator.h. One stream means a block released by
// the host can be handed to the next request at once: any kernel still reading it was queued earlier
// on the same stream, so the new owner's work runs after it. The same holds for a piece of a block.
#include "cuda/allocator.h"

#include <algorithm>

#include "tensor/error.h"

namespace mrcnn::cuda {

namespace {
constexpr size_t kQuantum = 512;
// Large requests up to kMediumLimit share 20 MiB segments; bigger ones get their own, rounded up to
// 2 MiB (PyTorch's figures: few driver calls, little left over at the end of a segment).
constexpr size_t kMediumLimit = size_t(10) << 20;
constexpr size_t kSharedSegment = size_t(20) << 20;
constexpr size_t kSegmentQuantum = size_t(2) << 20;

size_t round_up(size_t n, size_t quantum) { return (n + quantum - 1) / quantum * quantum; }
}  // namespace

CachingAllocator::CachingAllocator(RawAlloc raw_alloc, RawFree raw_free)
    : raw_alloc_(std::move(raw_alloc)), raw_free_(std::move(raw_free)) {}

// Blocks still live at destruction stay with the driver (the process allocator is never destroyed);
// only the bookkeeping goes.
CachingAllocator::~CachingAllocator() {
  std::vector<Block*> blocks(large_free_.begin(), large_free_.end());
  for (const auto& [ptr, block] : large_live_) blocks.push_back(block);
  for (Block* b : blocks) delete b;
}

size_t CachingAllocator::rounded_size(size_t nbytes) { return round_up(std::max<size_t>(nbytes, 1), kQuantum); }

size_t CachingAllocator::segment_size(size_t rounded) {
  return rounded <= kMediumLimit ? kSharedSegment : round_up(rounded, kSegmentQuantum);
}

void CachingAllocator::count_in_use(size_t size, size_t nbytes) {
  ++stats_.requests;
  stats_.in_use += size;
  stats_.requested_in_use += nbytes;
  stats_.peak_in_use = std::max(stats_.peak_in_use, stats_.in_use);
  stats_.peak_requested = std::max(stats_.peak_requested, stats_.requested_in_use);
}

void* CachingAllocator::allocate(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  const size_t size = rounded_size(nbytes);
  std::lock_guard<std::mutex> lock(mutex_);
  if (size >= kSmallLimit) return allocate_large(size, nbytes);
  void* block = nullptr;
  auto it = small_free_.find(size);
  if (it != small_free_.end() && !it->second.empty()) {
    block = it->second.back();
    it->second.pop_back();
    stats_.cached -= size;
    ++stats_.cache_hits;
  } else {
    size_t bytes = size;
    block = from_driver(bytes, size);
  }
  small_live_.emplace(block, SmallBlock{size, nbytes});
  count_in_use(size, nbytes);
  return block;
}

// Best fit: the smallest free block of at least `size` (the lowest address among equals, so the
// choice depends on nothing but the history of requests); a new segment when none fits.
void* CachingAllocator::allocate_large(size_t size, size_t nbytes) {
  Block key{nullptr, size};
  auto it = large_free_.lower_bound(&key);
  Block* block = nullptr;
  if (it != large_free_.end()) {
    block = *it;
    large_free_.erase(it);
    ++stats_.cache_hits;
  } else {
    // A nearly full device may still hold the request without the rest of a shared segment.
    size_t segment = segment_size(size);
    void* ptr = from_driver(segment, round_up(size, kSegmentQuantum));
    stats_.cached += segment;
    block = new Block{static_cast<char*>(ptr), segment};
  }
  // Split off what is left as a free block of its own: pieces under 1 MiB serve no large request
  // alone, but merge back when a neighbour is released.
  if (block->size > size) {
    Block* rest = new Block{block->ptr + size, block->size - size, 0, block, block->next};
    if (block->next) block->next->prev = rest;
    block->next = rest;
    block->size = size;
    large_free_.insert(rest);
  }
  block->requested = nbytes;
  stats_.cached -= size;
  large_live_.emplace(block->ptr, block);
  count_in_use(size, nbytes);
  return block->ptr;
}

// `bytes` from the driver; when it is out of memory, the cache goes back to it and the call is
// retried, then `fallback` bytes are tried if fewer; `bytes` is set to what was taken.
void* CachingAllocator::from_driver(size_t& bytes, size_t fallback) {
  void* ptr = raw_alloc_(bytes);
  if (!ptr && stats_.cached > 0) {
    free_cached_memory();
    ptr = raw_alloc_(bytes);
  }
  if (!ptr && fallback < bytes) {
    bytes = fallback;
    ptr = raw_alloc_(bytes);
  }
  if (!ptr)
    throw Error(str_cat("CUDA out of memory: could not allocate ", bytes, " bytes (", stats_.in_use, " bytes in use by tensors, ",
                        stats_.reserved, " reserved)"));
  ++stats_.driver_allocs;
  ++stats_.segments;
  stats_.reserved += bytes;
  stats_.peak_reserved = std::max(stats_.peak_reserved, stats_.reserved);
  return ptr;
}

void CachingAllocator::release(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto large = large_live_.find(ptr); large != large_live_.end()) {
    Block* block = large->second;
    large_live_.erase(large);
    return release_large(block);
  }
  auto it = small_live_.find(ptr);
  if (it == small_live_.end()) throw Error("CUDA allocator: release of a pointer it did not allocate");
  const SmallBlock block = it->second;
  small_live_.erase(it);
  small_free_[block.size].push_back(ptr);
  stats_.in_use -= block.size;
  stats_.requested_in_use -= block.requested;
  stats_.cached += block.size;
}

void CachingAllocator::release_large(Block* block) {
  stats_.in_use -= block->size;
  stats_.requested_in_use -= block->requested;
  stats_.cached += block->size;
  block->requested = 0;
  // Merge with free neighbours: each leaves the free set (its key changes) and the right one of a
  // pair is absorbed into the left.
  auto is_free = [](const Block* b) { return b && b->requested == 0; };
  auto absorb = [](Block* left, Block* right) {
    left->size += right->size;
    left->next = right->next;
    if (right->next) right->next->prev = left;
    delete right;
    return left;
  };
  if (is_free(block->prev)) {
    large_free_.erase(block->prev);
    block = absorb(block->prev, block);
  }
  if (is_free(block->next)) {
    large_free_.erase(block->next);
    absorb(block, block->next);
  }
  large_free_.insert(block);
}

void CachingAllocator::free_cached_memory() {
  for (auto& [size, blocks] : small_free_) {
    for (void* b : blocks) raw_free_(b);
    stats_.segments -= static_cast<int64_t>(blocks.size());
    stats_.reserved -= size * blocks.size();
    stats_.cached -= size * blocks.size();
  }
  small_free_.clear();
  // A free block without neighbours is a whole segment; pieces of segments still in use stay.
  for (auto it = large_free_.begin(); it != large_free_.end();) {
    Block* b = *it;
    if (b->prev || b->next) {
      ++it;
      continue;
    }
    raw_free_(b->ptr);
    --stats_.segments;
    stats_.reserved -= b->size;
    stats_.cached -= b->size;
    delete b;
    it = large_free_.erase(it);
  }
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  free_cached_memory();
}

MemoryStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_in_use = stats_.in_use;
  stats_.peak_requested = stats_.requested_in_use;
  stats_.peak_reserved = stats_.reserved;
}

}  // namespace mrcnn::cuda
