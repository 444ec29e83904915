// MultiScaleRoIAlign (torchvision.ops.poolers): each box is pooled from one FPN level chosen by the
// LevelMapper, level = floor(4 + log2(sqrt(area) / 224) + 1e-6) clamped to the levels present
// (canonical box 224 px on level 4, as in the FPN paper); roi_align with sampling_ratio 2 and
// aligned=false, as torchvision's detectors use it.
#pragma once
#include <functional>

#include "maskrcnn/image_list.h"
#include "ops/spatial.h"

namespace mrcnn::detection {

class MultiScaleRoIAlign {
 public:
  MultiScaleRoIAlign(int64_t output_size, int64_t sampling_ratio = 2)
      : output_size_(output_size), sampling_ratio_(sampling_ratio) {}
  // features: the levels to pool from (FPN "0".."3"); boxes: per image [R_i, 4] in the resized
  // image's pixels -> [sum R_i, C, S, S], rows in the order of the boxes. Differentiable in features.
  Tensor forward(const std::vector<Tensor>& features, const std::vector<Tensor>& boxes,
                 const std::vector<ImageSize>& image_sizes) const;
  // The same rows grouped by level (level 0's boxes first, each level in box order), and the host
  // int64 [sum R_i] position of each box's row: forward() is index_select(rows, 0, position). The
  // RoI heads work row by row, so they run on the grouped rows and put only their outputs back in
  // box order (12x smaller for the box head, 32x for the mask head's two classes): a copy of the
  // pooled features saved, forward and backward.
  struct Grouped {
    Tensor rows, position;
  };
  Grouped forward_grouped(const std::vector<Tensor>& features, const std::vector<Tensor>& boxes,
                          const std::vector<ImageSize>& image_sizes) const;
  // For inference: `head` (row by row, like the RoI heads) runs on one level's pooled rows at a
  // time, at most max_rows of them (0: no limit), and its outputs come back in box order. Only those
  // rows and the head's activations for them are held at once. On the CPU each row's output has the
  // bits it has when the head runs on all rows at once (the packed GEMM's and the convolutions' sums
  // do not depend on the batch); in training the heads run once on forward_grouped's rows (one
  // weight-gradient sum).
  Tensor forward_per_level(const std::vector<Tensor>& features, const std::vector<Tensor>& boxes,
                           const std::vector<ImageSize>& image_sizes, int64_t max_rows,
                           const std::function<Tensor(const Tensor&)>& head) const;
  // What the RoI heads call: `head`'s outputs for every box, in box order. With a gradient to
  // record, one pass over forward_grouped's rows; without, forward_per_level's passes.
  Tensor run_head(const std::vector<Tensor>& features, const std::vector<Tensor>& boxes,
                  const std::vector<ImageSize>& image_sizes, int64_t max_rows,
                  const std::function<Tensor(const Tensor&)>& head) const;
  // Level index (0 = first feature map) of each box, and each level's spatial scale.
  std::vector<int64_t> map_levels(const std::vector<Tensor>& boxes, int64_t k_min, int64_t k_max) const;
  static std::vector<double> infer_scales(const std::vector<Tensor>& features, const std::vector<ImageSize>& image_sizes);

 private:
  // Pools each level holding boxes, in level order, handing its rows to `visit` (max_rows at a time;
  // 0: all); returns the host int64 position of each box's row in that order.
  Tensor pool_each_level(const std::vector<Tensor>& features, const std::vector<Tensor>& boxes,
                         const std::vector<ImageSize>& image_sizes, int64_t max_rows,
                         const std::function<void(const Tensor&)>& visit) const;
  Tensor empty_rows(const std::vector<Tensor>& features) const;  // [0, C, S, S] like the features
  int64_t output_size_, sampling_ratio_;
};

}  // namespace mrcnn::detection
