// Box kernels. NMS follows torchvision's CUDA design: blocks of 64 x 64 box pairs write one 64-bit
// word of "i suppresses j" bits per (i, column block); then one thread block walks the boxes in score
// order, 64 boxes at a time, keeping a removed-bitset in shared memory, so the N x N/64 mask never
// leaves the GPU (ops/nms_kernels.h has the per-thread bodies and a CPU test replays them). Boxes
// come in independent segments (categories of batched_nms, images of the RPN): each has its own
// bitmask and its own reducing block, so their sequential walks run side by side.
#include "cuda/boxes.h"

#include <algorithm>
#include <vector>

#include "cuda/context.h"
#include "cuda/launch.cuh"
#include "ops/box_geometry.h"
#include "ops/nms_kernels.h"
#include "tensor/dispatch.h"

namespace mrcnn::cuda {

namespace {

constexpr int kBlockBoxes = kNmsBlock;

// Segment s visits positions [offsets[s], offsets[s + 1]) of `order`; its bitmask starts at word
// mask_base[s] and has one row of nms_column_blocks(n) words per box. Blocks are (column block, row
// block, segment); those outside a segment's upper triangle return at once.
struct Segments {
  const int64_t* offsets;    // [S + 1]
  const int64_t* mask_base;  // [S]
};

// The box at visiting position p: order[p], or p itself when there is no order (rows in order).
__device__ inline int64_t visited(const int64_t* order, int64_t p) { return order ? order[p] : p; }

// This file is compiled without FMA contraction, so IoUs (and so suppressions) equal the CPU's.
template <typename T>
__global__ void nms_mask_kernel(const T* boxes, const int64_t* order, Segments segments, double threshold, uint64_t* mask) {
  const int64_t segment = blockIdx.z, first = segments.offsets[segment];
  const int64_t n = segments.offsets[segment + 1] - first, col_blocks = nms_column_blocks(n);
  const int64_t row_block = blockIdx.y, col_block = blockIdx.x;
  if (row_block > col_block || col_block >= col_blocks) return;  // i suppresses only later boxes
  const int64_t rows_left = n - row_block * kBlockBoxes, cols_left = n - col_block * kBlockBoxes;
  const int64_t row_size = rows_left < kBlockBoxes ? rows_left : kBlockBoxes;
  const int64_t col_size = cols_left < kBlockBoxes ? cols_left : kBlockBoxes;
  __shared__ T block_boxes[kBlockBoxes * 4];
  if (threadIdx.x < col_size) {
    const int64_t box = visited(order, first + col_block * kBlockBoxes + threadIdx.x);
    for (int k = 0; k < 4; ++k) block_boxes[threadIdx.x * 4 + k] = boxes[box * 4 + k];
  }
  __syncthreads();
  if (threadIdx.x >= row_size) return;
  const int64_t i = row_block * kBlockBoxes + threadIdx.x;
  const int64_t first_j = row_block == col_block ? threadIdx.x + 1 : 0;
  mask[segments.mask_base[segment] + i * col_blocks + col_block] =
      nms_suppressed_bits(boxes + visited(order, first + i) * 4, block_boxes, first_j, col_size, threshold);
}

// One thread block per segment, walking its 64-box blocks in order (see ops/nms_kernels.h): the
// block's diagonal words come to shared memory, one thread resolves the block and lists its kept
// boxes, then all threads write the kept indices and spread the removal pairs among themselves. Every
// thread carries the same running count. Segment s writes its kept box indices to keep[offsets[s] ...]
// and their number to counts[s]. Boxes with valid[box] == 0 (when valid is given) start out removed.
// Needs blockDim.x >= 64.
__global__ void nms_reduce_kernel(const uint64_t* mask, const int64_t* order, const uint8_t* valid, Segments segments,
                                  int64_t* keep, int64_t* counts) {
  extern __shared__ unsigned long long removed[];  // atomicOr's 64-bit type (uint64_t is unsigned long)
  __shared__ uint64_t diagonal[kBlockBoxes];
  __shared__ int kept_rows[kBlockBoxes];
  __shared__ int kept_count;
  const int64_t segment = blockIdx.x, first = segments.offsets[segment];
  const int64_t n = segments.offsets[segment + 1] - first, col_blocks = nms_column_blocks(n);
  const uint64_t* rows = mask + segments.mask_base[segment];
  for (int64_t w = threadIdx.x; w < col_blocks; w += blockDim.x) removed[w] = nms_excluded_bits(valid, order, first, n, w);
  int64_t count = 0;
  __syncthreads();
  for (int64_t block = 0; block < col_blocks; ++block) {
    const int64_t base = block * kBlockBoxes, size = n - base < kBlockBoxes ? n - base : kBlockBoxes;
    if (threadIdx.x < size) diagonal[threadIdx.x] = rows[(base + threadIdx.x) * col_blocks + block];
    __syncthreads();
    if (threadIdx.x == 0)
      kept_count = nms_kept_rows(nms_resolve_block(diagonal, ~removed[block] & nms_low_bits(size)), kept_rows);
    __syncthreads();
    const int kept = kept_count, words = static_cast<int>(col_blocks - block - 1);
    if (static_cast<int>(threadIdx.x) < kept) keep[first + count + threadIdx.x] = visited(order, first + base + kept_rows[threadIdx.x]);
    count += kept;
    for (int p = static_cast<int>(threadIdx.x); p < kept * words; p += static_cast<int>(blockDim.x)) {
      const NmsRemoval r = nms_removal_of(p, words, block + 1);
      atomicOr(&removed[r.word], static_cast<unsigned long long>(rows[(base + kept_rows[r.kept_index]) * col_blocks + r.word]));
    }
    __syncthreads();  // the removed set is complete, and kept_rows read, before the next block
  }
  if (threadIdx.x == 0) counts[segment] = count;
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

std::vector<int64_t> nms_segments(const Tensor& boxes, const Tensor& order, const std::vector<int64_t>& offsets,
                                  double iou_threshold, const Tensor& keep, const Tensor& valid) {
  const int64_t segment_count = static_cast<int64_t>(offsets.size()) - 1;
  const int64_t visits = order.defined() ? order.numel() : boxes.size(0);
  check(segment_count >= 1 && offsets.front() == 0 && offsets.back() == visits, "nms: segment offsets must run from 0 to ", visits);
  check(segment_count <= 65535, "nms: ", segment_count, " segments exceed the CUDA grid's limit of 65535");
  // Per segment: offsets, then where its bitmask starts; one upload.
  std::vector<int64_t> table(offsets);
  int64_t mask_words = 0, widest = 0;
  for (int64_t s = 0; s < segment_count; ++s) {
    const int64_t n = offsets[s + 1] - offsets[s];
    check(n >= 0, "nms: segment offsets must not decrease");
    table.push_back(mask_words);
    mask_words += n * nms_column_blocks(n);
    widest = std::max(widest, nms_column_blocks(n));
  }
  std::vector<int64_t> counts(static_cast<size_t>(segment_count), 0);
  if (visits == 0) return counts;
  // The removed set takes one shared word per column block, beside the kernel's 1 KB of fixed shared memory.
  constexpr int64_t kSharedWords = 47 * 1024 / 8;
  check(widest <= kSharedWords, "nms: ", widest * kBlockBoxes, " boxes to compare with each other exceed the CUDA kernel's limit of ",
        kSharedWords * kBlockBoxes);
  const Tensor device_table = from_vector(table, {static_cast<int64_t>(table.size())}, boxes.device());
  const int64_t* table_data = static_cast<const int64_t*>(device_table.raw_data());
  const Segments segments{table_data, table_data + segment_count + 1};
  const Tensor mask = empty({mask_words}, kInt64, boxes.device());
  const Tensor device_counts = empty({segment_count}, kInt64, boxes.device());
  const int64_t* visit = order.defined() ? static_cast<const int64_t*>(order.raw_data()) : nullptr;
  const uint8_t* take_part = valid.defined() ? static_cast<const uint8_t*>(valid.raw_data()) : nullptr;
  dispatch_floating(boxes.dtype(), "nms", [&](auto tag) {
    using T = decltype(tag);
    const dim3 grid(static_cast<unsigned>(widest), static_cast<unsigned>(widest), static_cast<unsigned>(segment_count));
    nms_mask_kernel<T><<<grid, kBlockBoxes, 0, stream()>>>(static_cast<const T*>(boxes.raw_data()), visit, segments,
                                                            iou_threshold, static_cast<uint64_t*>(mask.raw_data()));
    MRCNN_CUDA_CHECK_LAUNCH();
  });
  nms_reduce_kernel<<<static_cast<unsigned>(segment_count), 256, static_cast<size_t>(widest) * 8, stream()>>>(
      static_cast<const uint64_t*>(mask.raw_data()), visit, take_part, segments, static_cast<int64_t*>(keep.raw_data()),
      static_cast<int64_t*>(device_counts.raw_data()));
  MRCNN_CUDA_CHECK_LAUNCH();
  copy_device_to_host(counts.data(), device_counts.raw_data(), counts.size() * sizeof(int64_t));
  return counts;
}

void decode_proposals(const Tensor& anchors, const Tensor& deltas, const Tensor& logits, const Tensor& within,
                      const ProposalColumns& levels, const Tensor& image_sizes, const ProposalRule& rule, const Tensor& boxes,
                      const Tensor& scores, const Tensor& valid) {
  const int64_t columns = logits.size(1), anchor_count = anchors.size(0);
  const float* a = static_cast<const float*>(anchors.raw_data());
  const float* d = static_cast<const float*>(deltas.raw_data());
  const float* l = static_cast<const float*>(logits.raw_data());
  const int64_t* w = static_cast<const int64_t*>(within.raw_data());
  const float* sizes = static_cast<const float*>(image_sizes.raw_data());
  float* b = static_cast<float*>(boxes.raw_data());
  float* s = static_cast<float*>(scores.raw_data());
  uint8_t* v = static_cast<uint8_t*>(valid.raw_data());
  for_each_index(logits.numel(), [=] __device__(int64_t r) {
    proposal_candidate(r, columns, anchor_count, levels, a, d, l, w, sizes, rule, b, s, v);
  });
}

}  // namespace mrcnn::cuda
