// Box kernels. NMS follows torchvision's CUDA design: blocks of 64 x 64 box pairs write one 64-bit
// word of "i suppresses j" bits per (i, column block); then one thread block walks the boxes in score
// order keeping a removed-bitset in shared memory, so the N x N/64 mask never leaves the GPU.
#include "cuda/boxes.h"
#include "cuda/context.h"
#include "cuda/launch.cuh"
#include "ops/box_geometry.h"
#include "tensor/dispatch.h"

namespace mrcnn::cuda {

namespace {

constexpr int kBlockBoxes = 64;

template <typename T>
__global__ void nms_mask_kernel(const T* boxes, const int64_t* order, int64_t n, T threshold, uint64_t* mask, int64_t col_blocks) {
  const int64_t row_block = blockIdx.y, col_block = blockIdx.x;
  if (row_block > col_block) return;  // i suppresses only later boxes
  const int64_t rows_left = n - row_block * kBlockBoxes, cols_left = n - col_block * kBlockBoxes;
  const int64_t row_size = rows_left < kBlockBoxes ? rows_left : kBlockBoxes;
  const int64_t col_size = cols_left < kBlockBoxes ? cols_left : kBlockBoxes;
  __shared__ T block_boxes[kBlockBoxes * 4];
  if (threadIdx.x < col_size)
    for (int k = 0; k < 4; ++k) block_boxes[threadIdx.x * 4 + k] = boxes[order[col_block * kBlockBoxes + threadIdx.x] * 4 + k];
  __syncthreads();
  if (threadIdx.x >= row_size) return;
  const int64_t i = row_block * kBlockBoxes + threadIdx.x;
  const T* p = boxes + order[i] * 4;
  uint64_t bits = 0;
  for (int64_t j = row_block == col_block ? threadIdx.x + 1 : 0; j < col_size; ++j)
    if (box_iou_of(p, block_boxes + j * 4) > threshold) bits |= uint64_t(1) << j;
  mask[i * col_blocks + col_block] = bits;
}

// One block: box i (in score order) is kept unless an earlier kept box removed it; then its mask row
// is OR-ed into the removed set by all threads.
__global__ void nms_reduce_kernel(const uint64_t* mask, const int64_t* order, int64_t n, int64_t col_blocks, int64_t* keep,
                                  int64_t* kept_count) {
  extern __shared__ uint64_t removed[];
  for (int64_t w = threadIdx.x; w < col_blocks; w += blockDim.x) removed[w] = 0;
  __shared__ int64_t count;
  if (threadIdx.x == 0) count = 0;
  __syncthreads();
  for (int64_t i = 0; i < n; ++i) {
    const bool is_removed = (removed[i / kBlockBoxes] >> (i % kBlockBoxes)) & 1;
    __syncthreads();  // every thread has read the bit before any thread updates the set
    if (is_removed) continue;
    if (threadIdx.x == 0) keep[count++] = order[i];
    for (int64_t w = i / kBlockBoxes + threadIdx.x; w < col_blocks; w += blockDim.x) removed[w] |= mask[i * col_blocks + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) *kept_count = count;
}

// Kernel bodies live in function templates: device lambdas may not sit inside dispatch's generic lambdas.
template <typename T>
void areas(const T* b, T* o, int64_t n) {
  for_each_index(n, [=] __device__(int64_t i) { o[i] = box_area_of(b + 4 * i); });
}

template <typename T>
void ious(const T* a, const T* b, T* o, int64_t n, int64_t m) {
  for_each_index(n * m, [=] __device__(int64_t e) { o[e] = box_iou_of(a + 4 * (e / m), b + 4 * (e % m)); });
}

}  // namespace

void box_area(const Tensor& boxes, const Tensor& out) {
  dispatch_floating(boxes.dtype(), "box_area", [&](auto tag) {
    using T = decltype(tag);
    areas<T>(static_cast<const T*>(boxes.raw_data()), static_cast<T*>(out.raw_data()), out.numel());
  });
}

void box_iou(const Tensor& boxes1, const Tensor& boxes2, const Tensor& out) {
  dispatch_floating(boxes1.dtype(), "box_iou", [&](auto tag) {
    using T = decltype(tag);
    ious<T>(static_cast<const T*>(boxes1.raw_data()), static_cast<const T*>(boxes2.raw_data()), static_cast<T*>(out.raw_data()),
            boxes1.size(0), boxes2.size(0));
  });
}

int64_t nms_sorted(const Tensor& boxes, const Tensor& order, double iou_threshold, const Tensor& keep) {
  const int64_t n = boxes.size(0);
  if (n == 0) return 0;
  const int64_t col_blocks = (n + kBlockBoxes - 1) / kBlockBoxes;
  check(col_blocks * 8 <= 48 * 1024, "nms: ", n, " boxes exceed the CUDA kernel's limit of ", 48 * 1024 / 8 * kBlockBoxes);
  const Tensor mask = empty({n * col_blocks}, kInt64, boxes.device());
  const Tensor count = empty({1}, kInt64, boxes.device());
  dispatch_floating(boxes.dtype(), "nms", [&](auto tag) {
    using T = decltype(tag);
    const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(col_blocks));
    nms_mask_kernel<T><<<grid, kBlockBoxes, 0, stream()>>>(static_cast<const T*>(boxes.raw_data()),
                                                            static_cast<const int64_t*>(order.raw_data()), n,
                                                            static_cast<T>(iou_threshold),
                                                            static_cast<uint64_t*>(mask.raw_data()), col_blocks);
    MRCNN_CUDA_CHECK_LAUNCH();
  });
  nms_reduce_kernel<<<1, 256, static_cast<size_t>(col_blocks) * 8, stream()>>>(
      static_cast<const uint64_t*>(mask.raw_data()), static_cast<const int64_t*>(order.raw_data()), n, col_blocks,
      static_cast<int64_t*>(keep.raw_data()), static_cast<int64_t*>(count.raw_data()));
  MRCNN_CUDA_CHECK_LAUNCH();
  int64_t kept = 0;
  copy_device_to_host(&kept, count.raw_data(), sizeof(kept));
  return kept;
}

}  // namespace mrcnn::cuda
