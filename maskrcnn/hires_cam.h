// Where a detection's class score came from: HiResCAM (Draelos & Carin, 2020), the variant of
// Grad-CAM (Selvaraju et al., 2017) that multiplies gradient and activation position by position
// instead of weighing each channel by its mean gradient. The class logit of the detection's box (the
// box head's cls_score output, before the softmax) is run back through the box head, RoIAlign and
// the FPN to ResNet's stage C_k whose FPN level P_k the box is pooled from (post-relu features);
// contribution(y, x) = sum over channels of gradient * activation there, a first-order share of the
// logit; the map is its positive part, bilinearly resized to the input and divided by its maximum.
// Grad-CAM's channel means gave an all-zero map on a val slice (every channel-weighted sum
// negative), while these maps follow the tumour's rim.
#pragma once
#include <cstdint>
#include <vector>

#include "maskrcnn/mask_rcnn.h"

namespace mrcnn::detection {

struct HiResCam {
  Tensor map;           // [H, W] float32 in 0..1 over the resized image (images.image_sizes[0]); all 0
                        // where nothing raised the logit
  Tensor contribution;  // [h, w]: sum over channels of gradient * activation on the stage, signed
  int64_t stage = 0;    // ResNet's stage: 0 = layer1 (C2, FPN level "0") ... 3 = layer4 (C5)
  double logit = 0;     // the class logit explained
};

// The class logit of `label` for one box [4] (x1, y1, x2, y2 in the resized image's pixels) on
// FPN levels `features` (batch of one), as the box head computes it.
Tensor box_class_logit(MaskRCNN& model, const std::vector<Tensor>& features, const Tensor& box, int64_t label,
                       ImageSize image_size);

// HiResCAM of the box and label on one image as the eval transform made it (MaskRCNNOutput::images
// of an eval-mode forward, or model.transform().forward without a generator); grad mode must be on.
HiResCam hires_cam(MaskRCNN& model, const ImageList& images, const Tensor& box, int64_t label);

// The same for several boxes [N, 4] and their labels on one image: ResNet's body runs once for all of
// them (each box still runs the FPN and the box head, since every backward needs its own graph).
// Each map equals what hires_cam gives for its box alone.
std::vector<HiResCam> hires_cams(MaskRCNN& model, const ImageList& images, const Tensor& boxes,
                                 const std::vector<int64_t>& labels);

}  // namespace mrcnn::detection
