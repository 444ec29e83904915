// Flip test-time augmentation (MaskRCNN::set_flip_test): how the two views' detections combine.
#pragma once
#include "maskrcnn/config.h"
#include "maskrcnn/image_list.h"

namespace mrcnn::detection {

// One image's detections from its two views (`mirrored_back`: the mirrored view's, boxes already
// mapped back to the original): their union, thinned by per-class NMS at box_nms_thresh; each
// survivor then scores the mean of its own score and that of the other view's best-overlapping
// same-class detection (IoU >= box_nms_thresh; 0 where there is none), so a detection only one view
// makes counts half; sorted by that score, at most box_detections_per_img. Masks are not touched.
Detections merge_flip_views(const Detections& original, const Detections& mirrored_back, const Config& config);

}  // namespace mrcnn::detection
