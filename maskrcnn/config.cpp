// Config <-> JSON with torchvision's keys; every key is type-checked and validated.
#include "maskrcnn/config.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "maskrcnn/json_fields.h"
#include "tensor/error.h"

namespace mrcnn::detection {

namespace {

// Every key once: name, and a reader/writer pair over the Config field.
template <typename Fn>
void for_each_field(Config& c, Fn&& fn) {
  fn("num_classes", c.num_classes);
  fn("min_size", c.min_size);
  fn("max_size", c.max_size);
  fn("image_mean", c.image_mean);
  fn("image_std", c.image_std);
  fn("size_divisible", c.size_divisible);
  fn("rpn_pre_nms_top_n_train", c.rpn_pre_nms_top_n_train);
  fn("rpn_pre_nms_top_n_test", c.rpn_pre_nms_top_n_test);
  fn("rpn_post_nms_top_n_train", c.rpn_post_nms_top_n_train);
  fn("rpn_post_nms_top_n_test", c.rpn_post_nms_top_n_test);
  fn("rpn_nms_thresh", c.rpn_nms_thresh);
  fn("rpn_fg_iou_thresh", c.rpn_fg_iou_thresh);
  fn("rpn_bg_iou_thresh", c.rpn_bg_iou_thresh);
  fn("rpn_batch_size_per_image", c.rpn_batch_size_per_image);
  fn("rpn_positive_fraction", c.rpn_positive_fraction);
  fn("rpn_score_thresh", c.rpn_score_thresh);
  fn("box_score_thresh", c.box_score_thresh);
  fn("box_nms_thresh", c.box_nms_thresh);
  fn("box_detections_per_img", c.box_detections_per_img);
  fn("box_fg_iou_thresh", c.box_fg_iou_thresh);
  fn("box_bg_iou_thresh", c.box_bg_iou_thresh);
  fn("box_batch_size_per_image", c.box_batch_size_per_image);
  fn("box_positive_fraction", c.box_positive_fraction);
  fn("bbox_reg_weights", c.bbox_reg_weights);
  fn("depth", c.depth);
  fn("block", c.block);
  fn("layers", c.layers);
  fn("norm", c.norm);
  fn("gn_groups", c.gn_groups);
  fn("trainable_layers", c.trainable_layers);
  fn("in_channels", c.in_channels);
  fn("fpn_out_channels", c.fpn_out_channels);
  fn("anchor_sizes", c.anchor_sizes);
  fn("aspect_ratios", c.aspect_ratios);
  fn("representation_size", c.representation_size);
  fn("mask_layers", c.mask_layers);
  fn("mask_dilation", c.mask_dilation);
  fn("mask_dim_reduced", c.mask_dim_reduced);
  fn("seed", c.seed);
  fn("flip_test", c.flip_test);
}

}  // namespace

std::string Config::block_kind() const {
  if (!block.empty()) return block;
  return depth <= 34 ? "basic" : "bottleneck";
}

std::vector<int64_t> Config::stage_blocks() const {
  if (!layers.empty()) return layers;
  switch (depth) {
    case 18: return {2, 2, 2, 2};
    case 34: return {3, 4, 6, 3};
    case 50: return {3, 4, 6, 3};
    case 101: return {3, 4, 23, 3};
    case 152: return {3, 8, 36, 3};
  }
  throw Error(str_cat("config: depth ", depth, " is not one of 18, 34, 50, 101, 152 (or give block and layers)"));
}

std::vector<double> Config::aspect_ratios_for_level(size_t level) const {
  return aspect_ratios.size() == 1 ? aspect_ratios[0] : aspect_ratios.at(level);
}

void Config::validate() const {
  auto need = [](bool ok, const char* key, const std::string& why) { check(ok, "config: ", key, " ", why); };
  need(num_classes >= 2, "num_classes", "must be >= 2 (background + at least one class)");
  // Beyond these a config cannot run anywhere: it fails deep inside a run or exhausts memory while
  // the model is built (100 million blocks were killed by the OS, not refused), so it is refused here.
  // A 16384-pixel side already needs 17 GB for one 256-channel stride-4 feature map in float32.
  constexpr int64_t kMaxImageSide = 16384;
  const std::string side_range = str_cat("must be in 1..", kMaxImageSide, " (pixels)");
  need(!min_size.empty(), "min_size", "must list at least one size");
  for (auto s : min_size) need(s > 0 && s <= kMaxImageSide, "min_size", "values " + side_range);
  need(max_size > 0 && max_size <= kMaxImageSide, "max_size", side_range);
  need(static_cast<int64_t>(image_mean.size()) == in_channels, "image_mean", "needs one value per input channel");
  need(static_cast<int64_t>(image_std.size()) == in_channels, "image_std", "needs one value per input channel");
  for (double s : image_std) need(s > 0, "image_std", "values must be positive");
  need(size_divisible > 0 && size_divisible <= kMaxImageSide, "size_divisible", side_range);
  need(in_channels > 0, "in_channels", "must be positive");
  need(block_kind() == "basic" || block_kind() == "bottleneck", "block", "must be \"basic\" or \"bottleneck\"");
  need(stage_blocks().size() == 4, "layers", "must list 4 stages");
  // ResNet-152 has 36 blocks in its deepest stage.
  for (auto b : stage_blocks()) need(b >= 1 && b <= 64, "layers", "needs 1..64 blocks per stage");
  need(!block.empty() || layers.empty(), "layers", "needs block too");
  need(norm == "frozen_bn" || norm == "bn" || norm == "gn", "norm", "must be \"frozen_bn\", \"bn\" or \"gn\"");
  need(trainable_layers >= 0 && trainable_layers <= 5, "trainable_layers", "must be in 0..5");
  need(fpn_out_channels > 0, "fpn_out_channels", "must be positive");
  if (norm == "gn") {
    need(gn_groups > 0 && 64 % gn_groups == 0, "gn_groups", "must divide 64 (the narrowest backbone width)");
  }
  need(anchor_sizes.size() == 5, "anchor_sizes", "needs 5 levels (P2..P6)");
  need(aspect_ratios.size() == 1 || aspect_ratios.size() == anchor_sizes.size(), "aspect_ratios",
       "needs one list or one per level");
  for (size_t l = 0; l < anchor_sizes.size(); ++l) {
    const auto& ratios = aspect_ratios_for_level(l);
    need(!anchor_sizes[l].empty(), "anchor_sizes", "levels must not be empty");
    need(!ratios.empty(), "aspect_ratios", "levels must not be empty");
    for (double s : anchor_sizes[l]) need(s > 0, "anchor_sizes", "values must be positive");
    for (double r : ratios) need(r > 0, "aspect_ratios", "values must be positive");
    need(anchor_sizes[l].size() * ratios.size() == anchor_sizes[0].size() * aspect_ratios_for_level(0).size(),
         "anchor_sizes", "needs the same number of anchors per location on every level (one RPN head)");
  }
  // A zero weight divides the decoded box offsets by zero (inf boxes); negative ones mirror them.
  need(bbox_reg_weights.size() == 4, "bbox_reg_weights", "needs 4 values");
  for (double w : bbox_reg_weights) need(w > 0, "bbox_reg_weights", "values must be positive");
  // Zero proposals or detections would train and predict nothing without saying why.
  need(rpn_pre_nms_top_n_train > 0 && rpn_pre_nms_top_n_test > 0, "rpn_pre_nms_top_n", "must be positive");
  need(rpn_post_nms_top_n_train > 0 && rpn_post_nms_top_n_test > 0, "rpn_post_nms_top_n", "must be positive");
  need(box_detections_per_img > 0, "box_detections_per_img", "must be positive");
  auto unit = [&](double v, const char* key) { need(v >= 0 && v <= 1, key, "must be in [0, 1]"); };
  unit(rpn_nms_thresh, "rpn_nms_thresh");
  unit(box_nms_thresh, "box_nms_thresh");
  unit(rpn_score_thresh, "rpn_score_thresh");
  unit(box_score_thresh, "box_score_thresh");
  unit(rpn_fg_iou_thresh, "rpn_fg_iou_thresh");
  unit(rpn_bg_iou_thresh, "rpn_bg_iou_thresh");
  unit(box_fg_iou_thresh, "box_fg_iou_thresh");
  unit(box_bg_iou_thresh, "box_bg_iou_thresh");
  // torchvision's Matcher asserts the same: between the two thresholds lies "ignore".
  need(rpn_bg_iou_thresh <= rpn_fg_iou_thresh, "rpn_bg_iou_thresh", "must not exceed rpn_fg_iou_thresh");
  need(box_bg_iou_thresh <= box_fg_iou_thresh, "box_bg_iou_thresh", "must not exceed box_fg_iou_thresh");
  need(representation_size > 0, "representation_size", "must be positive");
  need(!mask_layers.empty(), "mask_layers", "must list at least one layer");
  for (auto width : mask_layers) need(width > 0, "mask_layers", "widths must be positive");
  // The mask head's 3x3 convs run on 14 x 14 RoIs padded by the dilation: from 14 on, every tap but
  // the centre reads only padding.
  need(mask_dilation >= 1 && mask_dilation <= 13, "mask_dilation", "must be in 1..13 (the mask head's RoIs are 14 x 14)");
  need(mask_dim_reduced > 0, "mask_dim_reduced", "must be positive");
  need(rpn_batch_size_per_image > 0 && box_batch_size_per_image > 0, "batch_size_per_image", "must be positive");
  unit(rpn_positive_fraction, "rpn_positive_fraction");
  unit(box_positive_fraction, "box_positive_fraction");
}

Config config_from_json(const nlohmann::json& json) {
  check(json.is_object(), "config: expected a JSON object, got ", json.type_name());
  Config config;
  // "train" holds a recipe's training settings (read by `mrcnn train`), so one file serves train,
  // predict and eval.
  read_json_fields(json, config, [](Config& c, auto&& fn) { for_each_field(c, fn); }, "", {"train"});
  config.validate();
  return config;
}

Config load_config(const std::string& path) {
  const nlohmann::json json = read_json_file(path, "config");
  try {
    return config_from_json(json);
  } catch (const Error& e) {
    throw Error(str_cat(path, ": ", e.what()));
  }
}

nlohmann::json config_to_json(const Config& config) {
  nlohmann::json json = nlohmann::json::object();
  Config copy = config;
  for_each_field(copy, [&](const char* key, auto& field) { json[key] = field; });
  return json;
}

}  // namespace mrcnn::detection
