// RoIAlign exactly as torchvision.ops.roi_align: average of bilinear samples on a regular grid in
// each output bin. Used by MultiScaleRoIAlign (box and mask heads) and for mask targets.
#pragma once
#include "ops/spatial.h"
#include "tensor/tensor.h"

namespace mrcnn::ops {

// x [N, C, H, W]; rois [R, 5] rows (batch_index, x1, y1, x2, y2) in image coordinates, same dtype as x
// (on x's device, or on the host for GPU input: checked there and uploaded without a wait);
// box coordinates are multiplied by spatial_scale to reach x's grid. sampling_ratio > 0 samples that
// many points per bin side, <= 0 adapts: ceil(roi_size / output_size). aligned=true shifts boxes by
// -0.5 pixel (pixel centres); aligned=false also forces RoIs to at least 1x1, as torchvision does.
// -> [R, C, output_size.h, output_size.w]. Differentiable in x; the boxes get no gradient.
Tensor roi_align(const Tensor& x, const Tensor& rois, Size2 output_size, double spatial_scale,
                 int64_t sampling_ratio = -1, bool aligned = false);

}  // namespace mrcnn::ops

namespace mrcnn::cpu {
// Whether the CPU kernels run on a channel-last copy of the map (vector loops over channels) rather
// than on its planes: with >= 16 channels and about as many samples (4 per bin) as the map has
// pixels. Both give the same bits. For tests and benchmarks, as is the switch (on by default).
bool roi_align_channel_last(int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t rois,
                            ops::Size2 output_size);
void allow_roi_align_channel_last(bool allowed);
}  // namespace mrcnn::cpu
