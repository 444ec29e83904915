// Box utilities with torchvision.ops semantics. Boxes are [N, 4] rows (x1, y1, x2, y2), widths
// x2 - x1 without the old "+1". None of these is differentiable: they are index work (like
// torchvision's use under no_grad) and return detached tensors.
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace mrcnn::ops {

Tensor box_area(const Tensor& boxes);                            // [N]
Tensor box_iou(const Tensor& boxes1, const Tensor& boxes2);      // [N, M]: inter / union
// Indices (int64) of the boxes kept by greedy NMS, in decreasing score order (ties: lower index
// first). A box is suppressed when its IoU with a kept, higher-scoring box is > iou_threshold.
Tensor nms(const Tensor& boxes, const Tensor& scores, double iou_threshold);
// NMS within each category idxs[i] (int64): no box suppresses one of another category. Like
// torchvision 0.14 on the CPU, on either device: up to 1000 boxes by offsetting each category's
// boxes by idx * (max + 1) and running one NMS; above that, one NMS per category, the kept indices
// then sorted by score. (torchvision's CUDA path moves that limit to 5000 boxes; ours keeps the CPU's,
// so a model keeps the same boxes on both devices.) The host plans the categories' order (GPU inputs
// are downloaded for it); the suppression runs on the boxes' device.
Tensor batched_nms(const Tensor& boxes, const Tensor& scores, const Tensor& idxs, double iou_threshold);

// Several independent batched_nms calls at once: result p (int64, on the host) equals
// batched_nms(problems[p]...). The quadratic part runs on `device` (inputs may be on either), every
// category of every problem side by side: on a GPU one launch and one wait for all of them (the
// RPN's per-image NMS at any batch size); on the CPU the categories are spread over the threads.
struct NmsProblem {
  Tensor boxes, scores, idxs;
};
std::vector<Tensor> batched_nms_each(const std::vector<NmsProblem>& problems, double iou_threshold, Device device);
}  // namespace mrcnn::ops
