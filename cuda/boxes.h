// CUDA box kernels for ops/boxes.cpp. Plain C++: implemented in boxes.cu, or by stubs.cpp.
#pragma once
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace mrcnn::cuda {

void box_area(const Tensor& boxes, const Tensor& out);                      // [N, 4] -> [N]
void box_iou(const Tensor& boxes1, const Tensor& boxes2, const Tensor& out);  // -> [N, M]
// Greedy NMS over independent segments at once. Segment s visits the boxes order[offsets[s]] ..
// order[offsets[s + 1] - 1] (int64 indices into boxes [N, 4], descending score); a box suppresses
// only later boxes of its own segment. The IoU bitmasks and their reduction stay on the GPU. Writes
// segment s's kept box indices, in visiting order, to keep[offsets[s] ...] (int64, order's size) and
// returns the kept count per segment: the one wait for the GPU.
std::vector<int64_t> nms_segments(const Tensor& boxes, const Tensor& order, const std::vector<int64_t>& offsets,
                                  double iou_threshold, const Tensor& keep);

}  // namespace mrcnn::cuda
