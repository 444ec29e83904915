// The model configuration. JSON keys are torchvision's MaskRCNN and resnet_fpn_backbone keyword
// arguments with the same defaults (those of maskrcnn_resnet50_fpn), plus the choices torchvision
// makes through objects rather than numbers: backbone depth/block/layers, norm, input channels,
// FPN width, anchors, head widths. Unknown keys are errors (a typo must not silently train the default).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace mrcnn::detection {

struct Config {
  // --- MaskRCNN / GeneralizedRCNNTransform
  int64_t num_classes = 91;  // including background
  std::vector<int64_t> min_size = {800};  // training picks one at random per image; eval uses the last
  int64_t max_size = 1333;
  std::vector<double> image_mean = {0.485, 0.456, 0.406};
  std::vector<double> image_std = {0.229, 0.224, 0.225};
  int64_t size_divisible = 32;
  // --- RPN
  int64_t rpn_pre_nms_top_n_train = 2000, rpn_pre_nms_top_n_test = 1000;
  int64_t rpn_post_nms_top_n_train = 2000, rpn_post_nms_top_n_test = 1000;
  double rpn_nms_thresh = 0.7, rpn_fg_iou_thresh = 0.7, rpn_bg_iou_thresh = 0.3;
  int64_t rpn_batch_size_per_image = 256;
  double rpn_positive_fraction = 0.5, rpn_score_thresh = 0.0;
  // --- RoI heads
  double box_score_thresh = 0.05, box_nms_thresh = 0.5;
  int64_t box_detections_per_img = 100;
  double box_fg_iou_thresh = 0.5, box_bg_iou_thresh = 0.5;
  int64_t box_batch_size_per_image = 512;
  double box_positive_fraction = 0.25;
  std::vector<double> bbox_reg_weights = {10.0, 10.0, 5.0, 5.0};
  // --- backbone (resnet_fpn_backbone)
  int64_t depth = 50;                    // 18/34 basic blocks, 50/101/152 bottlenecks
  std::string block;                     // "basic"/"bottleneck": overrides depth together with layers
  std::vector<int64_t> layers;           // blocks per stage, e.g. [1, 1, 1, 1]
  std::string norm = "frozen_bn";        // "frozen_bn", "bn", "gn"
  int64_t gn_groups = 32;
  int64_t trainable_layers = 3;          // 0..5, counted from layer4 down to conv1
  int64_t in_channels = 3;               // 1 for grayscale slices
  int64_t fpn_out_channels = 256;
  std::vector<std::vector<double>> anchor_sizes = {{32}, {64}, {128}, {256}, {512}};
  std::vector<std::vector<double>> aspect_ratios = {{0.5, 1.0, 2.0}};  // one entry: same for every level
  int64_t representation_size = 1024;    // TwoMLPHead width
  std::vector<int64_t> mask_layers = {256, 256, 256, 256};
  int64_t mask_dilation = 1;
  int64_t mask_dim_reduced = 256;
  uint64_t seed = 0;                     // sampler (BalancedPositiveNegativeSampler) and init
  // --- not torchvision's: inference (eval mode) also runs each image mirrored left-right and
  // combines the two views (maskrcnn/flip_test.cpp). Read by predict, eval and training's validation.
  bool flip_test = false;

  std::string block_kind() const;        // resolved from block or depth
  std::vector<int64_t> stage_blocks() const;
  std::vector<double> aspect_ratios_for_level(size_t level) const;
  void validate() const;                 // throws naming the offending key
};

Config config_from_json(const nlohmann::json& json);  // validates
Config load_config(const std::string& path);          // errors name the file
nlohmann::json config_to_json(const Config& config);

}  // namespace mrcnn::detection
