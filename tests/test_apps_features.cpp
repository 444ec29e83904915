// `mrcnn features` end to end: every stage of one image, the chosen layers' outputs (--layers) and
// the top detections' class activation maps, each equal to what the library computes.
#include <algorithm>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "autograd/node.h"
#include "maskrcnn/hires_cam.h"
#include "maskrcnn/image_io.h"
#include "maskrcnn/mask_rcnn.h"
#include "maskrcnn/model_io.h"
#include "maskrcnn/transform.h"
#include "ops/ops.h"
#include "tensor/safetensors.h"
#include "tests/helpers.h"

using namespace mrcnn;
using namespace mrcnn::detection;
namespace fs = std::filesystem;

TEST_CASE("mrcnn features: every stage of one image, from the input to the detections, as the library computes them") {
  const fs::path dir = test::scratch_dir("mrcnn_cli_features");
  const std::string weights = test::save_tiny_detector(dir, 19);
  std::vector<uint8_t> rgb(70 * 90 * 3);
  for (int y = 0; y < 70; ++y)
    for (int x = 0; x < 90; ++x)
      for (int k = 0; k < 3; ++k) rgb[(y * 90 + x) * 3 + k] = static_cast<uint8_t>((x * 7 + y * 3) % 200 + (k == 0 ? 40 : 0));
  const std::string image = (dir / "p1_a.png").string();
  write_png(image, rgb, 70, 90);
  const test::Run run = test::run_mrcnn("features --weights " + weights + " " + image + " --out " + (dir / "out").string());
  INFO(run.output);
  REQUIRE(run.status == 0);
  const auto file = safetensors::load((dir / "out" / "features.safetensors").string());
  // The same tensors as the library's own forward (eval mode, one view).
  auto model = load_model(weights);
  model->eval();
  std::optional<autograd::NoGradGuard> no_grad(std::in_place);
  const MaskRCNNOutput out = model->forward({load_image(image, 1)});
  const int64_t found = out.detections[0].boxes.size(0);
  std::set<std::string> expected = {"input", "backbone.body.layer1", "backbone.body.layer2", "backbone.body.layer3",
                                    "backbone.body.layer4", "backbone.fpn.0", "backbone.fpn.1", "backbone.fpn.2",
                                    "backbone.fpn.3", "backbone.fpn.pool", "rpn.proposals", "rpn.proposal_scores",
                                    "roi_heads.box_predictor.cls_score", "roi_heads.box_predictor.bbox_pred",
                                    "roi_heads.mask_predictor", "detections.boxes", "detections.scores", "detections.labels"};
  for (int level = 0; level < 5; ++level)
    for (const char* head : {"rpn.head.cls_logits.", "rpn.head.bbox_pred."}) expected.insert(head + std::to_string(level));
  if (found > 0) expected.insert("roi_heads.mask_predictor.own_class");
  for (int64_t d = 0; d < std::min<int64_t>(found, 4); ++d) expected.insert("cam." + std::to_string(d));  // --cams 4
  std::set<std::string> names;
  for (const auto& [name, t] : file.tensors) names.insert(name);
  CHECK(names == expected);
  CHECK(file.metadata.at("image") == image);
  CHECK(test::bitwise_equal(file.tensors.at("input"), out.images.tensors));
  CHECK(file.tensors.at("input").sizes() == Shape{1, 1, 64, 96});  // 70x90 scaled to 64 high, padded to 32s
  const std::vector<Tensor> body = model->backbone->body->forward(out.images.tensors);
  for (size_t k = 0; k < 4; ++k) CHECK(test::bitwise_equal(file.tensors.at("backbone.body.layer" + std::to_string(k + 1)), body[k]));
  const char* levels[] = {"0", "1", "2", "3", "pool"};
  for (size_t k = 0; k < 5; ++k) {
    CHECK(test::bitwise_equal(file.tensors.at(std::string("backbone.fpn.") + levels[k]), out.features[k]));
    CHECK(test::bitwise_equal(file.tensors.at("rpn.head.cls_logits." + std::to_string(k)), out.rpn.objectness[k]));
    CHECK(test::bitwise_equal(file.tensors.at("rpn.head.bbox_pred." + std::to_string(k)), out.rpn.pred_bbox_deltas[k]));
  }
  CHECK(test::bitwise_equal(file.tensors.at("rpn.proposals"), out.rpn.boxes[0]));
  CHECK(test::bitwise_equal(file.tensors.at("rpn.proposal_scores"), out.rpn.scores[0]));
  CHECK(test::bitwise_equal(file.tensors.at("roi_heads.box_predictor.cls_score"), out.roi.class_logits));
  CHECK(test::bitwise_equal(file.tensors.at("roi_heads.box_predictor.bbox_pred"), out.roi.box_regression));
  CHECK(test::bitwise_equal(file.tensors.at("roi_heads.mask_predictor"), out.roi.mask_logits));
  CHECK(test::bitwise_equal(file.tensors.at("detections.boxes"), out.detections[0].boxes));
  CHECK(test::bitwise_equal(file.tensors.at("detections.scores"), out.detections[0].scores));
  CHECK(test::bitwise_equal(file.tensors.at("detections.labels"), out.detections[0].labels));
  CHECK(file.tensors.at("rpn.proposal_scores").size(0) == file.tensors.at("roi_heads.box_predictor.cls_score").size(0));
  if (found > 0) {
    // Each detection's logits for its own class, in detection order.
    const Tensor own = file.tensors.at("roi_heads.mask_predictor.own_class");
    REQUIRE(own.sizes() == Shape{1, found, 28, 28});
    const auto labels = to_vector<int64_t>(out.detections[0].labels);
    for (int64_t d = 0; d < found; ++d)
      CHECK(test::bitwise_equal(ops::select(ops::select(own, 0, 0), 0, d), ops::select(ops::select(out.roi.mask_logits, 0, d), 0, labels[d])));
  }
  // A PNG per image-like stage: the first 16 channels in a 4 x 4 grid with 2-pixel gutters, maps
  // enlarged by a whole factor until their short side reaches 64 pixels (the input's one channel as is).
  const Tensor fpn0 = load_image((dir / "out" / "backbone.fpn.0.png").string(), 1);
  CHECK(fpn0.sizes() == Shape{1, 4 * 64 + 6, 4 * 96 + 6});  // 16 x 24 maps, 4x
  const Tensor pool = load_image((dir / "out" / "backbone.fpn.pool.png").string(), 1);
  CHECK(pool.sizes() == Shape{1, 4 * 64 + 6, 4 * 128 + 6});  // 1 x 2 maps, 64x
  CHECK(load_image((dir / "out" / "input.png").string(), 1).sizes() == Shape{1, 64, 96});
  // Objectness as probabilities: one tile per anchor shape (3 aspect ratios).
  CHECK(load_image((dir / "out" / "rpn.head.cls_logits.0.png").string(), 1).sizes() == Shape{1, 64, 3 * 96 + 4});
  CHECK(!fs::exists(dir / "out" / "rpn.head.bbox_pred.0.png"));
  CHECK(fs::exists(dir / "out" / "roi_heads.mask_predictor.own_class.png") == (found > 0));
  if (found > 0) {
    // The top detection's class activation map, as hires_cam computes it, over the resized image.
    const Tensor box = resize_boxes(ops::narrow(out.detections[0].boxes, 0, 0, 1), {70, 90}, out.images.image_sizes[0]);
    const int64_t label = to_vector<int64_t>(out.detections[0].labels)[0];
    no_grad.reset();  // the map differentiates the box head
    const HiResCam cam = hires_cam(*model, out.images, ops::select(box, 0, 0), label);
    no_grad.emplace();
    CHECK(test::bitwise_equal(file.tensors.at("cam.0"), ops::unsqueeze(ops::unsqueeze(cam.map, 0), 0)));
    CHECK(file.metadata.at("cam.0").find("detection 0 (score ") == 0);
    const auto [resized_h, resized_w] = out.images.image_sizes[0];
    CHECK(load_image((dir / "out" / "cam.0.png").string(), 3).sizes() == Shape{3, resized_h, resized_w});
  }
  CHECK(run.output.find("backbone.fpn.0                       [1, 32, 16, 24]") != std::string::npos);
  // --layers: any layer's output by its dotted name, as a forward hook on torchvision's module sees it.
  const test::Run chosen = test::run_mrcnn("features --weights " + weights + " " + image + " --out " + (dir / "layers").string() +
                                           " --layers 'backbone\\.body\\.(conv1|bn1|layer1)|rpn\\.head\\.conv|roi_heads\\.mask_predictor\\.conv5_mask'");
  INFO(chosen.output);
  REQUIRE(chosen.status == 0);
  const auto layers = safetensors::load((dir / "layers" / "features.safetensors").string());
  std::set<std::string> with_layers = expected;  // backbone.body.layer1 is a default stage: written once
  for (const char* name : {"backbone.body.conv1", "backbone.body.bn1"}) with_layers.insert(name);
  for (int level = 0; level < 5; ++level) with_layers.insert("rpn.head.conv#" + std::to_string(level));  // once per level
  std::set<std::string> layer_names;
  int64_t upsampled = 0;
  for (const auto& [name, t] : layers.tensors) {
    if (name.rfind("roi_heads.mask_predictor.conv5_mask", 0) == 0) {
      // Recorded as it left the layer: the relu inference then applies in place does not reach it.
      CHECK(ops::min(t).item<float>() < 0);
      upsampled += t.size(0);
      continue;
    }
    layer_names.insert(name);
  }
  CHECK(layer_names == with_layers);
  CHECK(upsampled == found);  // one row per detection, over the calls (one per FPN level's boxes)
  const auto state = model->state_dict();
  const Tensor conv1 = layers.tensors.at("backbone.body.conv1"), bn1 = layers.tensors.at("backbone.body.bn1");
  ops::Conv2dOptions stem;
  stem.stride = 2, stem.padding = 3;
  CHECK(test::bitwise_equal(conv1, ops::conv2d(out.images.tensors, state.at("backbone.body.conv1.weight"), Tensor(), stem)));
  // The norm's own output, before the relu it is fused with in a plain forward.
  CHECK(test::bitwise_equal(bn1, ops::group_norm(conv1, model->config().gn_groups, state.at("backbone.body.bn1.weight"),
                                                 state.at("backbone.body.bn1.bias"))));
  CHECK(ops::min(bn1).item<float>() < 0);
  for (size_t k = 0; k < 5; ++k) {
    const Tensor conv = layers.tensors.at("rpn.head.conv#" + std::to_string(k));
    CHECK(conv.sizes() == out.features[k].sizes());
    CHECK(ops::min(conv).item<float>() >= 0);  // the head's conv and its relu
  }
  CHECK(fs::exists(dir / "layers" / "backbone.body.bn1.png"));
  CHECK(test::bitwise_equal(layers.tensors.at("backbone.fpn.0"), out.features[0]));  // the default stages unchanged
  const test::Run none = test::run_mrcnn("features --weights " + weights + " " + image + " --out " + (dir / "layers2").string() +
                                         " --layers 'body'");
  CHECK(none.status == 1);
  CHECK(none.output.find("mrcnn: error: features: --layers 'body' matches none of the model's ") == 0);
  CHECK(none.output.find(" layers (whole dotted names, such as backbone.body.conv1 or ") != std::string::npos);
  // A missing image is one error line naming it.
  const test::Run missing = test::run_mrcnn("features --weights " + weights + " " + (dir / "none.png").string() + " --out " +
                                            (dir / "out2").string());
  CHECK(missing.status == 1);
  CHECK(missing.output.find("mrcnn: error: " + (dir / "none.png").string()) == 0);
  fs::remove_all(dir);
}
