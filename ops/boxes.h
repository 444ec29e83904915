// Box utilities with torchvision.ops semantics. Boxes are [N, 4] rows (x1, y1, x2, y2), widths
// x2 - x1 without the old "+1". None of these is differentiable: they are index work (like
// torchvision's use under no_grad) and return detached tensors.
#pragma once
#include <vector>

#include "ops/box_coding.h"
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

// The RPN's proposal candidates where its predictions are. Image i's candidates are the columns of
// logits and within ([N, P], float32 and int64, from per-level top-k): columns are cut into levels,
// level l taking the next levels[l].columns of them and numbering its anchors from
// levels[l].first_anchor, so candidate (i, c) of level l is anchor a = first_anchor + within[i, c] of
// anchors [A, 4], with deltas row i * A + a of deltas [N * A, 4]. Each is decoded, clipped to image
// i's (height, width), scored with the logit's sigmoid and marked valid by `rule`
// (ops/box_coding.h: the same bits on both devices). Results are [N * P] rows in (image, column)
// order on the inputs' device: boxes [N * P, 4], scores [N * P] (float32), valid [N * P] (bool).
struct ProposalLevel {
  int64_t columns = 0, first_anchor = 0;
};
struct ProposalCandidates {
  Tensor boxes, scores, valid;
};
ProposalCandidates decode_proposals(const Tensor& anchors, const Tensor& deltas, const Tensor& logits, const Tensor& within,
                                    const std::vector<ProposalLevel>& levels,
                                    const std::vector<std::pair<int64_t, int64_t>>& image_sizes, const ProposalRule& rule);

// Greedy NMS over consecutive segments of rows already in visiting order (descending score, as
// per-level top-k leaves them): segment s is rows offsets[s] .. offsets[s + 1] - 1 of boxes [R, 4]
// (float32 or float64); rows whose valid (bool [R]) is 0 neither survive nor suppress. Returns each
// segment's kept rows, ascending, on the host. On a GPU: cuda/boxes.cu's bitmask NMS, all segments
// in one launch and one wait, nothing compacted or sorted on the host first.
std::vector<std::vector<int64_t>> nms_in_order(const Tensor& boxes, const Tensor& valid, const std::vector<int64_t>& offsets,
                                               double iou_threshold);
}  // namespace mrcnn::ops
