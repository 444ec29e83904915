// RoIHeads (torchvision.models.detection.roi_heads) for Mask R-CNN. Training: proposals plus the gt
// boxes are matched (IoU 0.5) and sampled, then fastrcnn_loss (cross entropy + smooth L1 on the
// true class's deltas) and maskrcnn_loss (BCE against the gt mask roi_aligned into each positive
// box). Inference: softmax scores, per-class decoded boxes, score threshold, per-class NMS, top 100,
// then 28x28 mask probabilities of each detection's class.
#pragma once
#include "maskrcnn/box_coder.h"
#include "maskrcnn/config.h"
#include "maskrcnn/heads.h"
#include "maskrcnn/image_list.h"
#include "maskrcnn/matcher.h"
#include "maskrcnn/poolers.h"

namespace mrcnn::detection {

struct RoIHeadsOutput {
  std::vector<Detections> detections;  // inference only
  std::vector<Tensor> proposals;       // the boxes the box head saw (sampled ones in training)
  Tensor class_logits, box_regression, mask_logits;
  Tensor loss_classifier, loss_box_reg, loss_mask;  // training only
};

struct TrainingSamples {
  std::vector<Tensor> proposals;           // per image: sampled proposals (gt boxes appended first)
  std::vector<Tensor> matched_idxs;        // per image: index of the matched gt (0 for background)
  std::vector<Tensor> labels;              // per image: int64 class, 0 background
  std::vector<Tensor> regression_targets;  // per image: [R, 4]
};

class RoIHeads : public nn::Module {
 public:
  explicit RoIHeads(const Config& config);
  // features: FPN levels "0".."3" (the pool level is not used by the RoI heads).
  RoIHeadsOutput forward(const std::vector<Tensor>& features, const std::vector<Tensor>& proposals,
                         const std::vector<ImageSize>& image_sizes, const std::vector<Target>* targets);
  TrainingSamples select_training_samples(const std::vector<Tensor>& proposals, const std::vector<Target>& targets);
  std::vector<Detections> postprocess_detections(const Tensor& class_logits, const Tensor& box_regression,
                                                 const std::vector<Tensor>& proposals,
                                                 const std::vector<ImageSize>& image_sizes) const;
  // Inference in its two halves, which forward runs in eval mode one after the other; a caller
  // combining several views of an image (flip test-time augmentation) runs them separately.
  // Detections per image (boxes, scores, labels in the resized images' pixels; masks undefined):
  std::vector<Detections> detect(const std::vector<Tensor>& features, const std::vector<Tensor>& proposals,
                                 const std::vector<ImageSize>& image_sizes);
  // [D, 1, 28, 28] mask probabilities of each detection's class, per image:
  std::vector<Tensor> mask_probabilities(const std::vector<Tensor>& features, const std::vector<Detections>& detections,
                                         const std::vector<ImageSize>& image_sizes);
  Generator& generator() { return generator_; }
  // The box head's class logits [R, K] and box regression [R, 4K] for `proposals` (per image, in
  // the resized images' pixels), differentiable in `features` while grad mode is on (Grad-CAM).
  std::pair<Tensor, Tensor> box_predictions(const std::vector<Tensor>& features, const std::vector<Tensor>& proposals,
                                            const std::vector<ImageSize>& image_sizes);

  std::shared_ptr<TwoMLPHead> box_head;
  std::shared_ptr<FastRCNNPredictor> box_predictor;
  std::shared_ptr<nn::Sequential> mask_head;
  std::shared_ptr<MaskRCNNPredictor> mask_predictor;

 private:
  // The mask head's logits for `boxes`.
  Tensor mask_logits_of(const std::vector<Tensor>& features, const std::vector<Tensor>& boxes,
                        const std::vector<ImageSize>& image_sizes);

  Config config_;
  MultiScaleRoIAlign box_roi_pool_, mask_roi_pool_;
  BoxCoder box_coder_;
  Matcher matcher_;
  BalancedPositiveNegativeSampler sampler_;
  Generator generator_;
};

// (loss_classifier, loss_box_reg) over all images' sampled proposals.
std::pair<Tensor, Tensor> fastrcnn_loss(const Tensor& class_logits, const Tensor& box_regression,
                                        const std::vector<Tensor>& labels, const std::vector<Tensor>& regression_targets);
// BCE of each positive's logits for its class against the gt mask resampled into its box.
Tensor maskrcnn_loss(const Tensor& mask_logits, const std::vector<Tensor>& proposals, const std::vector<Target>& targets,
                     const std::vector<Tensor>& matched_idxs);
// Each row's probabilities for its label: [R, K, M, M] logits -> [R, 1, M, M] per image.
std::vector<Tensor> maskrcnn_inference(const Tensor& mask_logits, const std::vector<Tensor>& labels);

}  // namespace mrcnn::detection
