// libFuzzer target: COCO results files (`mrcnn eval --results`, crosscheck) on arbitrary bytes,
// against a fixed two-image truth. Every input must either be scored or throw mrcnn::Error (one
// clear message); crashes, hangs, leaks and sanitizer reports are bugs. Parsed detections with masks
// at their images' sizes are scored as eval scores them: COCO AP, Dice/IoU/HD95, lesions.
#include <cstddef>
#include <cstdint>
#include <string>

#include "maskrcnn/coco.h"
#include "maskrcnn/coco_eval.h"
#include "maskrcnn/evaluate.h"

namespace {

const mrcnn::detection::CocoDataset& truth() {
  static const auto dataset = mrcnn::detection::parse_coco(
      R"({"images": [{"id": 1, "file_name": "p1_a.png", "width": 16, "height": 12},
                     {"id": 7, "file_name": "p2_a.png", "width": 20, "height": 20}],
          "categories": [{"id": 1, "name": "tumor"}, {"id": 2, "name": "edema"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 6, 5], "area": 30, "iscrowd": 0,
                           "segmentation": [[2, 2, 8, 2, 8, 7, 2, 7]]},
                          {"id": 2, "image_id": 7, "category_id": 2, "bbox": [4, 4, 10, 10], "area": 100, "iscrowd": 0,
                           "segmentation": [[4, 4, 14, 4, 14, 14, 4, 14]]}]})",
      "truth.json");
  return dataset;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto detections = mrcnn::detection::parse_results(text, "fuzz.json", truth());
    bool masks = true;
    for (const auto& d : detections) masks = masks && d.segmentation.height > 0;
    if (masks) (void)mrcnn::detection::evaluate_detections(truth(), detections, {"p1", "p2"}, 0.5);
  } catch (const mrcnn::Error&) {
  }
  return 0;
}
