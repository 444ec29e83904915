// A reference-counted block of memory on one device; Tensors are views into a Storage.
// CPU blocks are 64-byte aligned for AVX; CUDA blocks come from cuda::device_malloc.
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
  Device device_;
};

}  // namespace mrcnn
