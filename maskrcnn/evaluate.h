// Evaluating a model on a labelled set the way its users report results: COCO AP (bbox and segm,
// coco_eval.h) plus segmentation overlap per image and per patient, and lesion-level detection.
//
// Rules (also in the README):
// - Per image, the prediction is the union of the masks of detections scoring >= score_thresh and
//   the truth is the union of the image's non-crowd annotations; Dice/IoU/HD95 as metrics.h (both
//   empty -> Dice 1, HD95 0; exactly one empty -> Dice 0, HD95 undefined and left out of means).
// - Per patient, Dice and IoU pool every slice's pixels (the patient as one volume); HD95 is the
//   mean of the slices' defined HD95.
// - Lesions: each non-crowd annotation is one lesion. Detections >= score_thresh, highest score
//   first, each claim the unclaimed lesion they overlap most if mask IoU >= lesion_iou; a lesion so
//   claimed is detected, a detection claiming none is a false positive. These figures pool every
//   category; summarize_by_category gives each category's own.
#pragma once
#include <string>
#include <vector>

#include "maskrcnn/coco_eval.h"
#include "maskrcnn/dataset.h"
#include "maskrcnn/metrics.h"

namespace mrcnn::detection {

class MaskRCNN;

// One image's detections in original pixels, with binary masks (>= 0.5) kept for the pixel metrics.
struct ImagePrediction {
  std::vector<EvalDetection> detections;
  std::vector<std::vector<uint8_t>> masks;  // one per detection, height * width bytes
};

// Runs the model (eval mode, no autograd) on one image. category_ids[label - 1] is the COCO id.
ImagePrediction predict_image(MaskRCNN& model, const Tensor& image, int64_t image_id,
                              const std::vector<int64_t>& category_ids);

struct ImageScore {
  std::string file_name, patient;
  int64_t image_id = 0;
  OverlapMetrics overlap;
  int64_t lesions = 0, detected = 0, false_positives = 0;
};

struct PatientScore {
  std::string patient;
  int64_t images = 0;
  double dice = 0, iou = 0, hd95 = 0;  // hd95 NaN when no slice has one
  // Labelled and predicted pixels summed over the slices: the tumour burden a reader would take
  // from each (times the slice spacing, a volume).
  int64_t truth_pixels = 0, predicted_pixels = 0;
  // (predicted - truth) / truth; NaN when nothing is labelled.
  double area_difference() const;
};

struct SegmentationSummary {
  std::vector<ImageScore> images;      // in the dataset's order
  std::vector<PatientScore> patients;  // in order of first appearance
  double mean_dice = 0, mean_iou = 0, mean_hd95 = 0;  // over images (HD95: where defined)
  double median_area_difference = 0;  // median |area_difference| over patients with a labelled area; NaN if none
  int64_t hd95_undefined = 0;
  int64_t lesions = 0, detected = 0, false_positives = 0;
  double sensitivity = 0, false_positives_per_image = 0;
};

// predictions[i] belongs to truth.images[i]; patients[i] is that image's patient (file_groups).
SegmentationSummary summarize_segmentation(const CocoDataset& truth, const std::vector<ImagePrediction>& predictions,
                                           const std::vector<std::string>& patients, double score_thresh,
                                           double lesion_iou = 0.5);

// The same figures for each category on its own: its annotations are the truth, its detections the
// prediction (the summary above pools every category, so a mask of one structure can cover or
// claim another's). In truth.categories order; EvalDetection::category_id selects the detections.
struct CategorySummary {
  CocoCategory category;
  SegmentationSummary summary;
};
std::vector<CategorySummary> summarize_by_category(const CocoDataset& truth, const std::vector<ImagePrediction>& predictions,
                                                   const std::vector<std::string>& patients, double score_thresh,
                                                   double lesion_iou = 0.5);

// One row of an operating-point table: the image-level figures at one score threshold. A reader
// choosing a threshold needs the trade-off (sensitivity against false positives per image, Dice),
// and should choose it on data other than the data a result is reported on.
struct OperatingPoint {
  double score_thresh = 0, mean_dice = 0, mean_iou = 0, mean_hd95 = 0, sensitivity = 0, false_positives_per_image = 0;
  int64_t detected = 0, false_positives = 0;
};
// thresholds ascending in [0, 1]; each row is summarize_segmentation at that threshold.
std::vector<OperatingPoint> operating_points(const CocoDataset& truth, const std::vector<ImagePrediction>& predictions,
                                             const std::vector<std::string>& patients, const std::vector<double>& thresholds,
                                             double lesion_iou = 0.5);

// Everything `mrcnn eval` and training's validation report, for one model on one labelled set.
struct DatasetEvaluation {
  CocoEvalResult bbox, segm;
  SegmentationSummary segmentation;
  std::vector<ImagePrediction> predictions;  // per image, in the dataset's order
};
// samples[i] must be truth.images[i]; progress(done, total) per image.
DatasetEvaluation evaluate_dataset(MaskRCNN& model, const CocoDataset& truth, const std::vector<Sample>& samples,
                                   const std::vector<std::string>& patients, double score_thresh,
                                   double lesion_iou = 0.5, const std::function<void(size_t, size_t)>& progress = {});

// The same figures for detections made elsewhere (a COCO results file from another tool, or from
// `mrcnn predict`): detections must carry masks (segmentation) at their image's size; each is
// assigned to its truth image by image_id. predictions keep the detections in the given order.
DatasetEvaluation evaluate_detections(const CocoDataset& truth, const std::vector<EvalDetection>& detections,
                                      const std::vector<std::string>& patients, double score_thresh, double lesion_iou = 0.5);

// The union of the image's non-crowd truth masks.
std::vector<uint8_t> truth_union(const CocoImage& image);

}  // namespace mrcnn::detection
