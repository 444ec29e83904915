// Row-wise stable sort with CUB: keys are the values, payloads the positions 0..n-1. Radix order
// puts NaN above +inf, so NaN sorts as the largest value, as on the CPU and in PyTorch.
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include "cuda/context.h"
#include "cuda/launch.cuh"
#include "cuda/sort.h"
#include "tensor/dispatch.h"

namespace mrcnn::cuda {

namespace {
struct DeviceBuffer {
  void* ptr = nullptr;
  explicit DeviceBuffer(size_t n) : ptr(n ? device_malloc(n) : nullptr) {}
  ~DeviceBuffer() { device_free(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// pos = 0..n-1 in every row; off = the rows' start offsets 0, n, 2n, ..., lanes * n.
void fill_positions(int64_t* pos, int64_t* off, int64_t total, int64_t lanes, int64_t n) {
  for_each_index(total, [=] __device__(int64_t i) { pos[i] = i % n; });
  for_each_index(lanes + 1, [=] __device__(int64_t i) { off[i] = i * n; });
}
}  // namespace

void sort_rows(const Tensor& x, int64_t lanes, int64_t n, bool descending, const Tensor& values, const Tensor& indices) {
  const int64_t total = lanes * n;
  if (total == 0) return;
  check(total < (int64_t(1) << 31), "sort: CUDA sorts up to 2^31 elements, got ", total);
  DeviceBuffer positions(static_cast<size_t>(total) * sizeof(int64_t)), offsets(static_cast<size_t>(lanes + 1) * sizeof(int64_t));
  int64_t* pos = static_cast<int64_t*>(positions.ptr);
  int64_t* off = static_cast<int64_t*>(offsets.ptr);
  fill_positions(pos, off, total, lanes, n);
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* keys_in = static_cast<const T*>(x.raw_data());
    T* keys_out = static_cast<T*>(values.raw_data());
    int64_t* pos_out = static_cast<int64_t*>(indices.raw_data());
    const int items = static_cast<int>(total), segments = static_cast<int>(lanes);
    size_t bytes = 0;
    auto run = [&](void* temp) {
      if (lanes == 1) {
        if (descending)
          MRCNN_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(temp, bytes, keys_in, keys_out, pos, pos_out, items, 0,
                                                                     sizeof(T) * 8, stream()));
        else
          MRCNN_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, bytes, keys_in, keys_out, pos, pos_out, items, 0, sizeof(T) * 8,
                                                           stream()));
      } else if (descending) {
        MRCNN_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(temp, bytes, keys_in, keys_out, pos, pos_out, items,
                                                                            segments, off, off + 1, 0, sizeof(T) * 8, stream()));
      } else {
        MRCNN_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(temp, bytes, keys_in, keys_out, pos, pos_out, items, segments,
                                                                  off, off + 1, 0, sizeof(T) * 8, stream()));
      }
    };
    run(nullptr);  // asks for the temporary storage size
    DeviceBuffer temp(bytes);
    run(temp.ptr);
  });
}

}  // namespace mrcnn::cuda
