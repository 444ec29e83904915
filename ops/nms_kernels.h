// The bitmask NMS of cuda/boxes.cu, as per-thread bodies a CPU test also runs (tests/test_ops_boxes.cpp
// rebuilds the GPU's bitmask and reduction with them and compares with the CPU's greedy NMS).
//
// Boxes are visited in score order and cut into blocks of 64. The mask word of (box i, column
// block c) has bit j set when box i suppresses box c * 64 + j: IoU above the threshold, and only
// for boxes after i. The reduction walks the blocks in order: a block's boxes not removed by kept
// boxes of earlier blocks are resolved among themselves with its diagonal words (one thread, bit
// operations on 64 words), then every box kept there removes its later blocks' boxes: the (kept box,
// later word) pairs are spread over all threads, each ORing one mask word into the removed set, so
// no thread waits on a chain of memory reads (OR needs no order between them).
#pragma once
#include <cstdint>

#include "cuda/host_device.h"
#include "ops/box_geometry.h"

namespace mrcnn {

constexpr int kNmsBlock = 64;

MRCNN_HD inline int64_t nms_column_blocks(int64_t n) { return (n + kNmsBlock - 1) / kNmsBlock; }

// Bits j in [first_j, count) of `column` (count boxes, 4 values each) that box p suppresses. The IoU
// is compared in double against the double threshold, as the CPU's greedy NMS does.
template <typename T>
MRCNN_HD inline uint64_t nms_suppressed_bits(const T* p, const T* column, int64_t first_j, int64_t count, double threshold) {
  uint64_t bits = 0;
  for (int64_t j = first_j; j < count; ++j)
    if (static_cast<double>(box_iou_of(p, column + 4 * j)) > threshold) bits |= uint64_t(1) << j;
  return bits;
}

// Index of the lowest set bit of a non-zero word.
MRCNN_HD inline int nms_lowest_bit(uint64_t bits) {
#ifdef __CUDA_ARCH__
  return __ffsll(static_cast<long long>(bits)) - 1;
#else
  return __builtin_ctzll(bits);
#endif
}

// The boxes a block keeps among themselves: alive has bit j for each of its boxes no earlier kept
// box removed (no bits past the block's last box); diagonal[j] is box j's mask word for its own
// block, with bits only for later boxes. The lowest alive box is kept and removes what it
// suppresses, so the walk visits kept boxes only, not all 64 (one thread does it on the GPU).
MRCNN_HD inline uint64_t nms_resolve_block(const uint64_t* diagonal, uint64_t alive) {
  uint64_t kept = 0;
  while (alive) {
    const int j = nms_lowest_bit(alive);
    kept |= uint64_t(1) << j;
    alive &= ~diagonal[j] & ~(uint64_t(1) << j);
  }
  return kept;
}

// The positions of kept's set bits, lowest first, into rows[]; returns how many.
MRCNN_HD inline int nms_kept_rows(uint64_t kept, int* rows) {
  int count = 0;
  for (int j = 0; j < kNmsBlock; ++j)
    if ((kept >> j) & 1) rows[count++] = j;
  return count;
}

// Pair p of a block's removal work, with `words` later words per kept box: kept box p / words ORs
// its word first_word + p % words into the removed set. Consecutive pairs read consecutive words of
// one mask row (coalesced). 32-bit: at most 64 kept boxes times the removed set's words.
struct NmsRemoval {
  int kept_index;
  int64_t word;
};
MRCNN_HD inline NmsRemoval nms_removal_of(int p, int words, int64_t first_word) { return {p / words, first_word + p % words}; }

// Word `word` of a segment's initial removed set: a bit for each of that column block's boxes that
// takes no part (valid[box] == 0; no valid array: all take part). The segment's boxes are
// order[first ..] (no order: rows first ..), n of them; no bits past the last.
MRCNN_HD inline uint64_t nms_excluded_bits(const uint8_t* valid, const int64_t* order, int64_t first, int64_t n, int64_t word) {
  if (!valid) return 0;
  uint64_t bits = 0;
  const int64_t base = word * kNmsBlock, size = n - base < kNmsBlock ? n - base : kNmsBlock;
  for (int64_t j = 0; j < size; ++j) {
    const int64_t position = first + base + j;
    if (!valid[order ? order[position] : position]) bits |= uint64_t(1) << j;
  }
  return bits;
}

// Bits 0 .. size - 1.
MRCNN_HD inline uint64_t nms_low_bits(int64_t size) { return size >= 64 ? ~uint64_t(0) : (uint64_t(1) << size) - 1; }

}  // namespace mrcnn
