// Class activation maps drawn for readers: `mrcnn features` (every top detection of one image),
// `mrcnn predict --cams` and `mrcnn eval --cams` (each slice's best detection) share these.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "maskrcnn/coco_eval.h"
#include "maskrcnn/mask_rcnn.h"

namespace mrcnn::apps {

// A map [H, W] in 0..1 as heat (black, red, yellow, white) blended over the top-left H x W of
// `grey` [>= H, >= W] (stretched to its own range there): RGB bytes, H x W.
std::vector<uint8_t> heat_over_grey(const Tensor& heat, const Tensor& grey);

// HiResCAM (maskrcnn/hires_cam.h) of one detection on `image` [C, H, W] (0..1, as load_image gives;
// the model in eval mode, one view whatever its flip test): box [4] = x1, y1, x2, y2 in the image's
// pixels, label the model's class index (1..). Returns [H, W] in 0..1. Grad mode must be on.
Tensor detection_cam(detection::MaskRCNN& model, const Tensor& image, const Tensor& box, int64_t label);

// The reports' column heading and glossary entry for these maps (predict --cams, eval --cams).
extern const char* const kCamColumn;
extern const char* const kCamGlossary;

// The slice's class activation map for its best detection scoring >= score_thresh, drawn over the
// slice (RGB bytes, the image's size); nothing when no detection scores that high.
// category_ids[label - 1] is a label's COCO id.
std::optional<std::vector<uint8_t>> best_detection_cam(detection::MaskRCNN& model, const Tensor& image,
                                                       const std::vector<detection::EvalDetection>& detections,
                                                       double score_thresh, const std::vector<int64_t>& category_ids);

}  // namespace mrcnn::apps
