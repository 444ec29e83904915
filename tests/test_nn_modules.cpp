// Modules: torchvision parameter names, initialisation statistics, train/eval, freezing; the model
// config's JSON keys and its error messages.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "maskrcnn/config.h"
#include "maskrcnn/mask_rcnn.h"
#include "maskrcnn/model_io.h"
#include "nn/checkpoint.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "tests/helpers.h"

using namespace mrcnn;

namespace {
double mean_of(const Tensor& t) { return ops::mean(ops::to(t, kFloat64)).item<double>(); }
double std_of(const Tensor& t) {
  const Tensor x = ops::to(t, kFloat64);
  const Tensor centred = ops::sub(x, ops::mean(x));
  return std::sqrt(ops::mean(ops::mul(centred, centred)).item<double>());
}
}  // namespace

TEST_CASE("init: torch.nn.init distributions") {
  const Tensor w = empty({256, 128, 3, 3});
  CHECK(nn::init::fan_in(w) == 128 * 9);
  CHECK(nn::init::fan_out(w) == 256 * 9);
  nn::init::kaiming_normal_fan_out_(w);
  // std sqrt(2 / fan_out); 295k samples put the estimate within 1%.
  CHECK(std_of(w) == doctest::Approx(std::sqrt(2.0 / (256 * 9))).epsilon(0.01));
  CHECK(std::abs(mean_of(w)) < 1e-3);
  nn::init::kaiming_uniform_(w, 1.0);
  const double bound = std::sqrt(3.0 / (128 * 9));
  CHECK(ops::max(w).item<double>() <= bound);
  CHECK(ops::min(w).item<double>() >= -bound);
  CHECK(std_of(w) == doctest::Approx(bound / std::sqrt(3.0)).epsilon(0.01));
}

TEST_CASE("init: under SkipInit the fills leave tensors as they are and draw no random numbers") {
  Generator drawn(5), untouched(5);
  const Tensor w = full({4, 3}, 7.0), b = full({4}, 7.0);
  {
    const nn::init::SkipInit skip;
    const nn::init::SkipInit nested;
    nn::init::kaiming_uniform_(w, std::sqrt(5.0), &drawn);
    nn::init::kaiming_normal_fan_out_(w, &drawn);
    nn::init::default_bias_(b, w, &drawn);
    nn::init::constant_(b, 0.0);
  }
  CHECK(test::bitwise_equal(w, full({4, 3}, 7.0)));
  CHECK(test::bitwise_equal(b, full({4}, 7.0)));
  CHECK(drawn.offset() == untouched.offset());
  CHECK(!nn::init::skipping_init());
  nn::init::kaiming_uniform_(w, std::sqrt(5.0), &drawn);
  CHECK(ops::max(ops::abs(w)).item<double>() <= 1.0 / std::sqrt(3.0));  // bound sqrt(2 / (1 + 5)) * sqrt(3 / fan_in), fan_in 3
  CHECK(drawn.offset() > untouched.offset());
}

TEST_CASE("load_model: the model it builds without initialising holds the checkpoint's tensors, bit for bit") {
  const auto dir = test::scratch_dir("mrcnn_test_load_model");
  const std::string path = (dir / "model.safetensors").string();
  const detection::Config config = test::small_maskrcnn_config();
  detection::MaskRCNN saved(config);
  nn::save_checkpoint(path, nn::make_checkpoint(saved, nullptr, detection::config_to_json(config).dump(), 0));
  const auto loaded = detection::load_model(path);
  const auto want = saved.state_dict(), got = loaded->state_dict();
  REQUIRE(got.size() == want.size());
  for (const auto& [name, t] : want) {
    INFO(name);
    CHECK(test::bitwise_equal(got.at(name), t));
  }
  CHECK(!loaded->is_training());
  std::filesystem::remove_all(dir);
}

TEST_CASE("modules: names, buffers, train/eval, load_state_dict") {
  nn::BatchNorm2d bn(4);
  const auto params = bn.named_parameters();
  REQUIRE(params.size() == 2);
  CHECK(params[0].first == "weight");
  CHECK(params[1].first == "bias");
  const auto buffers = bn.named_buffers();
  REQUIRE(buffers.size() == 3);
  CHECK(buffers[2].first == "num_batches_tracked");
  // Training updates running statistics; eval does not.
  const Tensor x = test::leaf({2, 4, 3, 3}, 1, 2.0, 1.0).detach();
  const Tensor x32 = ops::to(x, kFloat32);
  bn.forward(x32);
  CHECK(bn.num_batches_tracked.item<int64_t>() == 1);
  const double moved = ops::sum(ops::abs(bn.running_mean)).item<double>();
  CHECK(moved > 0.01);
  bn.eval();
  CHECK(!bn.is_training());
  bn.forward(x32);
  CHECK(bn.num_batches_tracked.item<int64_t>() == 1);
  CHECK(ops::sum(ops::abs(bn.running_mean)).item<double>() == moved);

  nn::Sequential seq;
  seq.push_back(std::make_shared<nn::Conv2d>(nn::Conv2dSpec{3, 8, 3, {}, true}));
  seq.push_back(std::make_shared<nn::ReLU>());
  seq.push_back(std::make_shared<nn::FrozenBatchNorm2d>(8));
  const auto names = seq.state_dict();
  CHECK(names.count("0.weight") == 1);
  CHECK(names.count("2.running_var") == 1);
  CHECK(seq.named_parameters().size() == 2);  // FrozenBatchNorm2d has buffers only
  seq.set_requires_grad(false);
  CHECK(seq.trainable_parameters().empty());
}

TEST_CASE("output capture: chosen layers' outputs in call order, a norm's own output apart from its fused relu") {
  nn::Sequential outer;
  auto inner = std::make_shared<nn::Sequential>();
  auto conv = std::make_shared<nn::Conv2d>(nn::Conv2dSpec{2, 8, 3, {}, true});
  auto norm = std::make_shared<nn::GroupNorm>(2, 8);
  inner->push_back(conv);
  outer.push_back(inner);
  outer.push_back(std::make_shared<nn::ReLU>());
  std::vector<std::string> names;
  for (const auto& [name, module] : outer.named_modules()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"0", "0.0", "1"});
  const Tensor x = ops::to(test::leaf({1, 2, 5, 5}, 3, 1.0, 0.0).detach(), kFloat32);
  const Tensor plain = outer(x), fused = norm->relu_of(plain);
  {
    nn::OutputCapture capture({{conv.get(), "0.0"}, {norm.get(), "norm"}});
    CHECK(nn::OutputCapture::active() == &capture);
    const Tensor y = outer(x);
    (void)outer(x);
    const Tensor relu = norm->relu_of(y);
    {
      nn::OutputCapture nested({{inner.get(), "0"}});
      (void)outer(x);
      REQUIRE(nested.outputs().size() == 1);  // only the innermost capture records
      CHECK(nested.outputs()[0].first == "0");
    }
    CHECK(nn::OutputCapture::active() == &capture);
    REQUIRE(capture.outputs().size() == 3);
    CHECK(capture.outputs()[0].first == "0.0");
    CHECK(capture.outputs()[1].first == "0.0");  // called twice: two records
    CHECK(test::bitwise_equal(capture.outputs()[0].second, conv->forward(x)));
    CHECK(capture.outputs()[2].first == "norm");
    // The norm's own output (with negatives), and the relu of it as the fused pass gives.
    CHECK(test::bitwise_equal(capture.outputs()[2].second, norm->forward(y)));
    CHECK(ops::min(capture.outputs()[2].second).item<float>() < 0);
    CHECK(test::max_abs_diff(relu, fused) <= 1e-6);
    CHECK(test::bitwise_equal(y, plain));
  }
  CHECK(nn::OutputCapture::active() == nullptr);
}

TEST_CASE("maskrcnn: torchvision state_dict names and trainable layers") {
  detection::Config c;
  c.block = "basic";
  c.layers = {1, 1, 1, 1};
  c.num_classes = 2;
  c.fpn_out_channels = 32;
  c.representation_size = 64;
  c.mask_layers = {32, 32};
  c.mask_dim_reduced = 32;
  detection::MaskRCNN net(c);
  const auto state = net.state_dict();
  for (const char* name : {"backbone.body.conv1.weight", "backbone.body.bn1.running_var", "backbone.body.layer2.0.downsample.0.weight",
                           "backbone.body.layer2.0.downsample.1.weight", "backbone.fpn.inner_blocks.3.0.bias",
                           "backbone.fpn.layer_blocks.0.0.weight", "rpn.head.conv.0.0.weight", "rpn.head.cls_logits.bias",
                           "rpn.head.bbox_pred.weight", "roi_heads.box_head.fc6.weight", "roi_heads.box_head.fc7.bias",
                           "roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.bbox_pred.bias",
                           "roi_heads.mask_head.1.0.weight", "roi_heads.mask_predictor.conv5_mask.weight",
                           "roi_heads.mask_predictor.mask_fcn_logits.bias"})
    CHECK_MESSAGE(state.count(name) == 1, name);
  CHECK(state.at("roi_heads.box_predictor.bbox_pred.weight").sizes() == Shape{8, 64});
  CHECK(state.at("roi_heads.mask_predictor.conv5_mask.weight").sizes() == Shape{32, 32, 2, 2});
  // trainable_layers 3: conv1 and layer1 frozen, layer2..4 train.
  for (const auto& [name, p] : net.named_parameters()) {
    const bool frozen = name.rfind("backbone.body.conv1", 0) == 0 || name.rfind("backbone.body.layer1", 0) == 0;
    CHECK_MESSAGE(p.requires_grad() == !frozen, name);
  }
  // RPN head init: normal(0, 0.01) weights, zero bias.
  CHECK(std_of(state.at("rpn.head.conv.0.0.weight")) == doctest::Approx(0.01).epsilon(0.05));
  CHECK(ops::sum(ops::abs(state.at("rpn.head.cls_logits.bias"))).item<double>() == 0.0);
}

TEST_CASE("config: torchvision keys and defaults, clear errors") {
  const auto c = detection::config_from_json(nlohmann::json::parse(R"({"num_classes": 2, "min_size": [640, 672]})"));
  CHECK(c.num_classes == 2);
  CHECK(c.min_size == std::vector<int64_t>{640, 672});
  CHECK(c.max_size == 1333);
  CHECK(c.rpn_pre_nms_top_n_test == 1000);
  CHECK(c.box_batch_size_per_image == 512);
  CHECK(c.bbox_reg_weights == std::vector<double>{10, 10, 5, 5});
  CHECK(c.stage_blocks() == std::vector<int64_t>{3, 4, 6, 3});
  CHECK(c.block_kind() == "bottleneck");
  // Round trip.
  const auto again = detection::config_from_json(detection::config_to_json(c));
  CHECK(detection::config_to_json(again) == detection::config_to_json(c));
  auto error = [](const char* text) {
    return test::error_of([&] { detection::config_from_json(nlohmann::json::parse(text)); });
  };
  CHECK(error(R"({"num_clases": 2})") == "config: unknown key \"num_clases\"");
  CHECK(error(R"({"max_size": "big"})") == "config: max_size has the wrong type (string)");
  CHECK(error(R"({"flip_test": 1})") == "config: flip_test has the wrong type (number)");
  CHECK(!c.flip_test);  // torchvision's behaviour unless a config asks for the flip test
  CHECK(detection::config_from_json(nlohmann::json::parse(R"({"flip_test": true})")).flip_test);
  CHECK(error(R"({"norm": "ln"})") == "config: norm must be \"frozen_bn\", \"bn\" or \"gn\"");
  CHECK(error(R"({"depth": 20})") == "config: depth 20 is not one of 18, 34, 50, 101, 152 (or give block and layers)");
  CHECK(error(R"({"in_channels": 1})") == "config: image_mean needs one value per input channel");
  CHECK(error(R"({"num_classes": 1})") == "config: num_classes must be >= 2 (background + at least one class)");
  CHECK(error("[1]") == "config: expected a JSON object, got array");
  // Values no model can use are named at load, not found as a shape error deep in construction
  // or as a model that silently proposes nothing.
  CHECK(error(R"({"aspect_ratios": [[]]})") == "config: aspect_ratios levels must not be empty");
  CHECK(error(R"({"aspect_ratios": [[0.5, 0.0]]})") == "config: aspect_ratios values must be positive");
  CHECK(error(R"({"anchor_sizes": [[32], [-64], [128], [256], [512]]})") == "config: anchor_sizes values must be positive");
  CHECK(error(R"({"bbox_reg_weights": [10, 10, 0, 5]})") == "config: bbox_reg_weights values must be positive");
  CHECK(error(R"({"rpn_post_nms_top_n_test": 0})") == "config: rpn_post_nms_top_n must be positive");
  CHECK(error(R"({"rpn_pre_nms_top_n_train": -1})") == "config: rpn_pre_nms_top_n must be positive");
  CHECK(error(R"({"box_detections_per_img": 0})") == "config: box_detections_per_img must be positive");
  CHECK(error(R"({"box_nms_thresh": 1.5})") == "config: box_nms_thresh must be in [0, 1]");
  CHECK(error(R"({"rpn_score_thresh": -0.1})") == "config: rpn_score_thresh must be in [0, 1]");
  CHECK(error(R"({"rpn_fg_iou_thresh": 0.2})") == "config: rpn_bg_iou_thresh must not exceed rpn_fg_iou_thresh");
  CHECK(error(R"({"box_bg_iou_thresh": 0.6})") == "config: box_bg_iou_thresh must not exceed box_fg_iou_thresh");
  CHECK(error(R"({"mask_layers": [256, 0]})") == "config: mask_layers widths must be positive");
  // Sizes no machine can run are refused at load: the model would be killed for memory while built,
  // or the run would fail deep inside a kernel.
  CHECK(error(R"({"min_size": [800, 20000]})") == "config: min_size values must be in 1..16384 (pixels)");
  CHECK(error(R"({"max_size": 0})") == "config: max_size must be in 1..16384 (pixels)");
  CHECK(error(R"({"size_divisible": 1000000000})") == "config: size_divisible must be in 1..16384 (pixels)");
  CHECK(error(R"({"block": "basic", "layers": [100000000, 1, 1, 1]})") == "config: layers needs 1..64 blocks per stage");
  CHECK(error(R"({"block": "basic", "layers": [2, 0, 2, 2]})") == "config: layers needs 1..64 blocks per stage");
  CHECK(error(R"({"mask_dilation": 14})") == "config: mask_dilation must be in 1..13 (the mask head's RoIs are 14 x 14)");
  CHECK(detection::config_from_json(nlohmann::json::parse(R"({"block": "basic", "layers": [64, 1, 1, 1], "mask_dilation": 13})"))
            .stage_blocks()[0] == 64);
  // Numbers the field's type cannot hold are errors, not casts (1e30 -> int64 is undefined behaviour).
  CHECK(error(R"({"max_size": 1e30})") == "config: max_size has a number out of range (1e+30)");
  CHECK(error(R"({"min_size": [800, 2.5]})") == "config: min_size has a number out of range ([800,2.5])");
  CHECK(detection::config_from_json(nlohmann::json::parse(R"({"max_size": 1000.0})")).max_size == 1000);
}

TEST_CASE("load_pretrained: RGB conv1 summed for 1 channel, class-specific layers re-initialised") {
  detection::Config gray = test::small_maskrcnn_config();
  detection::Config rgb = gray;
  rgb.in_channels = 3;
  rgb.image_mean = {0.485, 0.456, 0.406};
  rgb.image_std = {0.229, 0.224, 0.225};
  rgb.num_classes = 91;
  detection::MaskRCNN source(rgb), target(gray);
  const Tensor before = ops::clone(target.roi_heads->box_predictor->cls_score->weight);
  const auto notes = detection::load_pretrained(target, source.state_dict());
  const Tensor summed = ops::sum(source.backbone->body->named_parameters()[0].second, {1}, true);
  CHECK(target.state_dict().at("backbone.body.conv1.weight").sizes() == Shape{64, 1, 7, 7});
  CHECK(test::max_abs_diff(target.state_dict().at("backbone.body.conv1.weight"), summed) == 0.0);
  CHECK(test::bitwise_equal(target.state_dict().at("backbone.fpn.layer_blocks.0.0.weight"),
                            source.state_dict().at("backbone.fpn.layer_blocks.0.0.weight")));
  CHECK(test::bitwise_equal(target.roi_heads->box_predictor->cls_score->weight, before));
  CHECK(std::count_if(notes.begin(), notes.end(), [](const std::string& n) { return n.rfind("re-initialised", 0) == 0; }) == 6);
  CHECK(std::find(notes.begin(), notes.end(),
                  "summed the RGB filters of backbone.body.conv1.weight for 1-channel input") != notes.end());
}
