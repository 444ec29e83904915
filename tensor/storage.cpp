// Storage allocation: aligned host memory or CUDA device memory.
#include "tensor/storage.h"

#include <cstdlib>
#include <new>

#include "cuda/context.h"
#include "tensor/error.h"

namespace mrcnn {

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_cuda()) {
    data_ = nbytes ? cuda::device_malloc(nbytes) : nullptr;
    return;
  }
  // 64-byte alignment for AVX loads; aligned_alloc needs a size that is a multiple of it.
  const size_t rounded = (std::max<size_t>(nbytes, 1) + 63) / 64 * 64;
  data_ = std::aligned_alloc(64, rounded);
  if (!data_) throw Error(str_cat("out of host memory allocating ", nbytes, " bytes"));
}

Storage::~Storage() {
  if (device_.is_cuda()) cuda::device_free(data_);
  else std::free(data_);
}

}  // namespace mrcnn
