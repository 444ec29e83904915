// CUDA box kernels for ops/boxes.cpp. Plain C++: implemented in boxes.cu, or by stubs.cpp.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace mrcnn::cuda {

void box_area(const Tensor& boxes, const Tensor& out);                      // [N, 4] -> [N]
void box_iou(const Tensor& boxes1, const Tensor& boxes2, const Tensor& out);  // -> [N, M]
// Greedy NMS of boxes [N, 4] visited in `order` (int64 [N], descending score). The IoU bitmask and
// its reduction stay on the GPU; only the kept count comes back (the output's size needs it).
// Writes the kept box indices, in visiting order, to the front of keep (int64 [N]) and returns their count.
int64_t nms_sorted(const Tensor& boxes, const Tensor& order, double iou_threshold, const Tensor& keep);

}  // namespace mrcnn::cuda
