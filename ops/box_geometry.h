// Box area and overlap, per pair of boxes: the one body the CPU loops (ops/boxes.cpp) and the CUDA
// kernels (cuda/boxes.cu) share, so CPU tests exercise the arithmetic the GPU runs. Boxes are
// (x1, y1, x2, y2); torchvision's formulas (no +1), so borderline IoUs resolve as there.
#pragma once
#include "cuda/host_device.h"

namespace mrcnn {

template <typename T>
MRCNN_HD inline T box_area_of(const T* b) {
  return (b[2] - b[0]) * (b[3] - b[1]);
}

// std::min/max's comparisons (min(a, b) = b < a ? b : a, max(a, b) = a < b ? b : a), written out so device code can use them.
template <typename T>
MRCNN_HD inline T box_intersection_of(const T* p, const T* q) {
  const T right = q[2] < p[2] ? q[2] : p[2], left = p[0] < q[0] ? q[0] : p[0];
  const T bottom = q[3] < p[3] ? q[3] : p[3], top = p[1] < q[1] ? q[1] : p[1];
  const T w = T(0) < right - left ? right - left : T(0);
  const T h = T(0) < bottom - top ? bottom - top : T(0);
  return w * h;
}

template <typename T>
MRCNN_HD inline T box_iou_of(const T* p, const T* q) {
  const T inter = box_intersection_of(p, q);
  return inter / (box_area_of(p) + box_area_of(q) - inter);
}

}  // namespace mrcnn
