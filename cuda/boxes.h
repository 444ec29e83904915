// CUDA box kernels for ops/boxes.cpp. Plain C++: implemented in boxes.cu, or by stubs.cpp.
#pragma once
#include <cstdint>
#include <vector>

#include "ops/box_coding.h"
#include "tensor/tensor.h"

namespace mrcnn::cuda {

void box_area(const Tensor& boxes, const Tensor& out);                      // [N, 4] -> [N]
void box_iou(const Tensor& boxes1, const Tensor& boxes2, const Tensor& out);  // -> [N, M]
// Greedy NMS over independent segments at once. Segment s visits the boxes order[offsets[s]] ..
// order[offsets[s + 1] - 1] (int64 indices into boxes [N, 4], descending score); a box suppresses
// only later boxes of its own segment. The IoU bitmasks and their reduction stay on the GPU. Writes
// segment s's kept box indices, in visiting order, to keep[offsets[s] ...] (int64, order's size) and
// returns the kept count per segment: the one wait for the GPU.
// `order` undefined visits each segment's boxes in row order; `valid` (bool [N], optional) marks the
// boxes that take part: the others start out removed, so they neither survive nor suppress.
std::vector<int64_t> nms_segments(const Tensor& boxes, const Tensor& order, const std::vector<int64_t>& offsets,
                                  double iou_threshold, const Tensor& keep, const Tensor& valid = Tensor());
// ops::decode_proposals's kernel: proposal_candidate (ops/box_coding.h) for each of logits' N x P
// candidates. Inputs contiguous on the device, image_sizes float32 [N, 2]; outputs preallocated.
void decode_proposals(const Tensor& anchors, const Tensor& deltas, const Tensor& logits, const Tensor& within,
                      const ProposalColumns& levels, const Tensor& image_sizes, const ProposalRule& rule, const Tensor& boxes,
                      const Tensor& scores, const Tensor& valid);

}  // namespace mrcnn::cuda
