// A reference-counted block of memory on one device; Tensors are views into a Storage.
// CPU blocks are 64-byte aligned for AVX; blocks of 1 MB and more are recycled through a host cache
// (see storage.cpp); CUDA blocks come from cuda::device_malloc.
#pragma once
#include <cstddef>
#include <memory>

#include "tensor/dtype.h"

namespace mrcnn {

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  size_t block_bytes_ = 0;  // host: the allocated block (a cached block may be up to 1/4 larger)
  Device device_;
};

// The host block cache: freed CPU blocks of >= 1 MB are kept and reused by later allocations of
// about the same size, instead of going back to the kernel and coming back as fresh pages it must
// zero (that page clearing was ~7% of a training step). Live plus cached blocks stay within
// ceiling_bytes, 9/8 of the most ever live (the oldest cached blocks are freed first to keep it),
// and the cache within 1 GB or 1/16 of the machine's memory ($MRCNN_HOST_CACHE_MB; 0 turns it off).
struct HostCacheStats {
  size_t cached_bytes = 0, hits = 0, misses = 0, ceiling_bytes = 0;
};
HostCacheStats host_cache_stats();
void empty_host_cache();  // frees every cached block

// Bytes of live CPU tensors (as requested), now and at the peak since the last reset: what the work
// itself holds, without the host cache's reserve (the GPU's counterpart is cuda::memory_stats).
struct HostMemoryStats {
  size_t in_use = 0, peak_in_use = 0;
};
HostMemoryStats host_memory_stats();
void reset_host_peak_memory();  // the peak restarts from what is in use now

// Called for every CPU Storage made (made = true) and freed, with its bytes as requested; none by
// default (then a Storage pays one relaxed load). `mrcnn bench --allocation-trace` records the model's
// allocations with it, and bench/allocator_replay plays them through the CUDA allocator's rules.
using HostAllocationObserver = void (*)(const void* storage, size_t nbytes, bool made);
void set_host_allocation_observer(HostAllocationObserver observer);

}  // namespace mrcnn
