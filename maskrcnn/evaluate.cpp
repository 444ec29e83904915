// Per-image and per-patient segmentation metrics and lesion-level detection counts.
#include "maskrcnn/evaluate.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "maskrcnn/mask_rcnn.h"
#include "maskrcnn/rle.h"
#include "ops/ops.h"

namespace mrcnn::detection {

ImagePrediction predict_image(MaskRCNN& model, const Tensor& image, int64_t image_id,
                              const std::vector<int64_t>& category_ids) {
  autograd::NoGradGuard no_grad;
  const auto out = model.forward({image});
  const Detections& d = out.detections[0];
  const int64_t h = image.size(1), w = image.size(2);
  const auto scores = to_vector<float>(d.scores);
  const auto labels = to_vector<int64_t>(d.labels);
  const auto boxes = to_vector<float>(d.boxes);
  // Thresholded where the masks are: on a GPU, a quarter of the bytes cross to the host.
  const Tensor masks = ops::to(ops::ge(d.masks, 0.5), kCPU);
  const uint8_t* m = masks.data<uint8_t>();
  ImagePrediction prediction;
  for (size_t k = 0; k < scores.size(); ++k) {
    const uint8_t* mk = m + static_cast<int64_t>(k) * h * w;
    std::vector<uint8_t> binary(mk, mk + h * w);
    const float* b = &boxes[k * 4];
    EvalDetection det;
    det.image_id = image_id;
    det.category_id = category_ids.at(static_cast<size_t>(labels[k] - 1));
    det.bbox = {b[0], b[1], b[2] - b[0], b[3] - b[1]};
    det.score = scores[k];
    det.segmentation = rle_encode(binary.data(), h, w);
    prediction.detections.push_back(std::move(det));
    prediction.masks.push_back(std::move(binary));
  }
  return prediction;
}

namespace {

double mask_iou(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  int64_t inter = 0, uni = 0;
  for (size_t i = 0; i < a.size(); ++i) inter += a[i] && b[i], uni += a[i] || b[i];
  return uni ? static_cast<double>(inter) / static_cast<double>(uni) : 0.0;
}

// Greedy lesion matching (see the header): returns (detected lesions, false positives).
std::pair<int64_t, int64_t> match_lesions(const std::vector<std::vector<uint8_t>>& lesions, const ImagePrediction& p,
                                          double score_thresh, double lesion_iou) {
  std::vector<size_t> order;
  for (size_t k = 0; k < p.detections.size(); ++k)
    if (p.detections[k].score >= score_thresh) order.push_back(k);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return p.detections[a].score > p.detections[b].score; });
  std::vector<bool> claimed(lesions.size(), false);
  int64_t detected = 0, false_positives = 0;
  for (size_t k : order) {
    double best = lesion_iou;
    int64_t best_lesion = -1;
    for (size_t l = 0; l < lesions.size(); ++l) {
      if (claimed[l]) continue;
      const double iou = mask_iou(p.masks[k], lesions[l]);
      if (iou >= best) best = iou, best_lesion = static_cast<int64_t>(l);
    }
    if (best_lesion >= 0) {
      claimed[static_cast<size_t>(best_lesion)] = true;
      ++detected;
    } else {
      ++false_positives;
    }
  }
  return {detected, false_positives};
}

// An image's truth decoded once, for every threshold it is scored at: its lesions (the non-crowd
// annotations) and their union. Decoding per summary was most of the operating-point table's time.
struct TruthMasks {
  std::vector<std::vector<uint8_t>> lesions;
  std::vector<uint8_t> merged;
};

TruthMasks decode_truth(const CocoImage& image) {
  TruthMasks t;
  t.merged.assign(static_cast<size_t>(image.height * image.width), 0);
  for (const auto& a : image.annotations) {
    if (a.iscrowd) continue;
    t.lesions.push_back(annotation_mask(a, image.height, image.width));
    for (size_t i = 0; i < t.merged.size(); ++i) t.merged[i] |= t.lesions.back()[i];
  }
  return t;
}

std::vector<TruthMasks> decode_truth(const CocoDataset& truth) {
  std::vector<TruthMasks> decoded;
  for (const auto& image : truth.images) decoded.push_back(decode_truth(image));
  return decoded;
}

void check_counts(const CocoDataset& truth, const std::vector<ImagePrediction>& predictions,
                  const std::vector<std::string>& patients, const char* caller) {
  check(predictions.size() == truth.images.size() && patients.size() == truth.images.size(), caller, ": ",
        predictions.size(), " predictions and ", patients.size(), " patients for ", truth.images.size(), " images");
}

SegmentationSummary summarize(const CocoDataset& truth, const std::vector<TruthMasks>& decoded,
                              const std::vector<ImagePrediction>& predictions, const std::vector<std::string>& patients,
                              double score_thresh, double lesion_iou) {
  SegmentationSummary summary;
  struct Pool {
    int64_t images = 0, intersection = 0, truth = 0, predicted = 0, hd95_count = 0;
    double hd95_sum = 0;
  };
  std::map<std::string, Pool> pools;
  std::vector<std::string> patient_order;
  double hd95_sum = 0;
  for (size_t i = 0; i < truth.images.size(); ++i) {
    const CocoImage& image = truth.images[i];
    const ImagePrediction& p = predictions[i];
    const auto& truth_mask = decoded[i].merged;
    std::vector<uint8_t> predicted(truth_mask.size(), 0);
    for (size_t k = 0; k < p.detections.size(); ++k)
      if (p.detections[k].score >= score_thresh)
        for (size_t j = 0; j < predicted.size(); ++j) predicted[j] |= p.masks[k][j];
    ImageScore score;
    score.file_name = image.file_name;
    score.patient = patients[i];
    score.image_id = image.id;
    score.overlap = overlap_metrics(truth_mask, predicted, image.height, image.width);
    const auto& lesions = decoded[i].lesions;
    score.lesions = static_cast<int64_t>(lesions.size());
    std::tie(score.detected, score.false_positives) = match_lesions(lesions, p, score_thresh, lesion_iou);
    summary.lesions += score.lesions;
    summary.detected += score.detected;
    summary.false_positives += score.false_positives;
    summary.mean_dice += score.overlap.dice;
    summary.mean_iou += score.overlap.iou;
    if (std::isnan(score.overlap.hd95)) {
      ++summary.hd95_undefined;
    } else {
      hd95_sum += score.overlap.hd95;
    }
    if (!pools.count(score.patient)) patient_order.push_back(score.patient);
    Pool& pool = pools[score.patient];
    ++pool.images;
    for (size_t j = 0; j < predicted.size(); ++j) pool.intersection += truth_mask[j] && predicted[j];
    pool.truth += score.overlap.truth_pixels;
    pool.predicted += score.overlap.predicted_pixels;
    if (!std::isnan(score.overlap.hd95)) pool.hd95_sum += score.overlap.hd95, ++pool.hd95_count;
    summary.images.push_back(std::move(score));
  }
  const double n = static_cast<double>(truth.images.size());
  if (n > 0) summary.mean_dice /= n, summary.mean_iou /= n, summary.false_positives_per_image = summary.false_positives / n;
  const int64_t defined = static_cast<int64_t>(truth.images.size()) - summary.hd95_undefined;
  summary.mean_hd95 = defined > 0 ? hd95_sum / static_cast<double>(defined) : std::nan("");
  summary.sensitivity = summary.lesions ? static_cast<double>(summary.detected) / static_cast<double>(summary.lesions) : std::nan("");
  for (const std::string& name : patient_order) {
    const Pool& pool = pools[name];
    PatientScore ps;
    ps.patient = name;
    ps.images = pool.images;
    const int64_t sum = pool.truth + pool.predicted;
    ps.dice = sum ? 2.0 * static_cast<double>(pool.intersection) / static_cast<double>(sum) : 1.0;
    const int64_t uni = sum - pool.intersection;
    ps.iou = uni ? static_cast<double>(pool.intersection) / static_cast<double>(uni) : 1.0;
    ps.hd95 = pool.hd95_count ? pool.hd95_sum / static_cast<double>(pool.hd95_count) : std::nan("");
    ps.truth_pixels = pool.truth, ps.predicted_pixels = pool.predicted;
    summary.patients.push_back(ps);
  }
  std::vector<double> differences;
  for (const PatientScore& ps : summary.patients)
    if (ps.truth_pixels > 0) differences.push_back(std::abs(ps.area_difference()));
  std::sort(differences.begin(), differences.end());
  summary.median_area_difference = differences.empty() ? std::nan("") : percentile_of_sorted(differences, 0.5);
  return summary;
}

}  // namespace

double PatientScore::area_difference() const {
  return truth_pixels > 0 ? static_cast<double>(predicted_pixels - truth_pixels) / static_cast<double>(truth_pixels) : std::nan("");
}

std::vector<uint8_t> truth_union(const CocoImage& image) { return decode_truth(image).merged; }

SegmentationSummary summarize_segmentation(const CocoDataset& truth, const std::vector<ImagePrediction>& predictions,
                                           const std::vector<std::string>& patients, double score_thresh,
                                           double lesion_iou) {
  check_counts(truth, predictions, patients, "summarize_segmentation");
  return summarize(truth, decode_truth(truth), predictions, patients, score_thresh, lesion_iou);
}

std::vector<CategorySummary> summarize_by_category(const CocoDataset& truth, const std::vector<ImagePrediction>& predictions,
                                                   const std::vector<std::string>& patients, double score_thresh,
                                                   double lesion_iou) {
  check_counts(truth, predictions, patients, "summarize_by_category");
  std::vector<CategorySummary> result;
  for (const CocoCategory& category : truth.categories) {
    CocoDataset one = truth;
    for (CocoImage& image : one.images)
      image.annotations.erase(std::remove_if(image.annotations.begin(), image.annotations.end(),
                                             [&](const CocoAnnotation& a) { return a.category_id != category.id; }),
                              image.annotations.end());
    std::vector<ImagePrediction> mine(predictions.size());
    for (size_t i = 0; i < predictions.size(); ++i)
      for (size_t k = 0; k < predictions[i].detections.size(); ++k)
        if (predictions[i].detections[k].category_id == category.id) {
          mine[i].detections.push_back(predictions[i].detections[k]);
          mine[i].masks.push_back(predictions[i].masks[k]);
        }
    result.push_back({category, summarize(one, decode_truth(one), mine, patients, score_thresh, lesion_iou)});
  }
  return result;
}

std::vector<OperatingPoint> operating_points(const CocoDataset& truth, const std::vector<ImagePrediction>& predictions,
                                             const std::vector<std::string>& patients, const std::vector<double>& thresholds,
                                             double lesion_iou) {
  for (size_t i = 0; i < thresholds.size(); ++i) {
    const double t = thresholds[i];
    check(t >= 0 && t <= 1 && (i == 0 || t > thresholds[i - 1]), "operating_points: thresholds must ascend within [0, 1], got ",
          t, i > 0 ? str_cat(" after ", thresholds[i - 1]) : std::string());
  }
  check_counts(truth, predictions, patients, "operating_points");
  const std::vector<TruthMasks> decoded = decode_truth(truth);
  std::vector<OperatingPoint> rows;
  for (const double t : thresholds) {
    const SegmentationSummary s = summarize(truth, decoded, predictions, patients, t, lesion_iou);
    rows.push_back({t, s.mean_dice, s.mean_iou, s.mean_hd95, s.sensitivity, s.false_positives_per_image, s.detected,
                    s.false_positives});
  }
  return rows;
}

DatasetEvaluation evaluate_dataset(MaskRCNN& model, const CocoDataset& truth, const std::vector<Sample>& samples,
                                   const std::vector<std::string>& patients, double score_thresh, double lesion_iou,
                                   const std::function<void(size_t, size_t)>& progress) {
  check(samples.size() == truth.images.size(), "evaluate_dataset: ", samples.size(), " samples for ",
        truth.images.size(), " images");
  std::vector<int64_t> category_ids;
  for (const auto& c : truth.categories) category_ids.push_back(c.id);
  const bool was_training = model.is_training();
  model.eval();
  DatasetEvaluation result;
  std::vector<EvalDetection> all;
  for (size_t i = 0; i < samples.size(); ++i) {
    result.predictions.push_back(predict_image(model, samples[i].image, samples[i].info.id, category_ids));
    const auto& d = result.predictions.back().detections;
    all.insert(all.end(), d.begin(), d.end());
    if (progress) progress(i + 1, samples.size());
  }
  if (was_training) model.train();
  result.bbox = coco_evaluate(truth, all, IouType::Bbox);
  result.segm = coco_evaluate(truth, all, IouType::Segm);
  result.segmentation = summarize_segmentation(truth, result.predictions, patients, score_thresh, lesion_iou);
  return result;
}

DatasetEvaluation evaluate_detections(const CocoDataset& truth, const std::vector<EvalDetection>& detections,
                                      const std::vector<std::string>& patients, double score_thresh, double lesion_iou) {
  std::map<int64_t, size_t> index_of;
  for (size_t i = 0; i < truth.images.size(); ++i) index_of[truth.images[i].id] = i;
  DatasetEvaluation result;
  result.predictions.resize(truth.images.size());
  for (size_t k = 0; k < detections.size(); ++k) {
    const EvalDetection& d = detections[k];
    const auto it = index_of.find(d.image_id);
    check(it != index_of.end(), "evaluate_detections: detection ", k, ": image_id ", d.image_id, " is not in the ground truth");
    const CocoImage& image = truth.images[it->second];
    check(d.segmentation.height == image.height && d.segmentation.width == image.width, "evaluate_detections: detection ",
          k, " (image ", image.file_name, "): no mask at the image's size ", image.height, "x", image.width,
          "; the pixel metrics need each detection's segmentation");
    ImagePrediction& p = result.predictions[it->second];
    p.detections.push_back(d);
    p.masks.push_back(rle_decode(d.segmentation));
  }
  result.bbox = coco_evaluate(truth, detections, IouType::Bbox);
  result.segm = coco_evaluate(truth, detections, IouType::Segm);
  result.segmentation = summarize_segmentation(truth, result.predictions, patients, score_thresh, lesion_iou);
  return result;
}

}  // namespace mrcnn::detection
