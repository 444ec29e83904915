// Box utilities with torchvision.ops semantics. Boxes are [N, 4] rows (x1, y1, x2, y2), widths
// x2 - x1 without the old "+1". None of these is differentiable: they are index work (like
// torchvision's use under no_grad) and return detached tensors.
#pragma once
#include "tensor/tensor.h"

namespace mrcnn::ops {

Tensor box_area(const Tensor& boxes);                            // [N]
Tensor box_iou(const Tensor& boxes1, const Tensor& boxes2);      // [N, M]: inter / union
// Indices (int64) of the boxes kept by greedy NMS, in decreasing score order (ties: lower index
// first). A box is suppressed when its IoU with a kept, higher-scoring box is > iou_threshold.
Tensor nms(const Tensor& boxes, const Tensor& scores, double iou_threshold);
// NMS within each category idxs[i] (int64): no box suppresses one of another category. Like
// torchvision 0.14: up to 1000 boxes by offsetting each category's boxes by idx * (max + 1) and
// running one NMS; above that, one NMS per category, the kept indices then sorted by score.
Tensor batched_nms(const Tensor& boxes, const Tensor& scores, const Tensor& idxs, double iou_threshold);

}  // namespace mrcnn::ops
