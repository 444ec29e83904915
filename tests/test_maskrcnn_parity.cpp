// Mask R-CNN against torchvision 0.14, stage by stage, from tests/fixtures/maskrcnn_fixture.safetensors
// (written by tools/make_torchvision_fixture.py). Each stage is fed the fixture's stored inputs, so a
// failure names one stage. Tolerances (the issue's): features and logits max|diff| / max|ref| <= 1e-4;
// boxes <= 1e-3 px with the same count; scores <= 1e-4; losses <= 1e-4 relative; every parameter
// gradient <= 1e-3 relative norm. Differences come only from float32 summation order (our conv
// kernels vs oneDNN, our reductions vs ATen's), which compounds through ~12 layers.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>

#include "maskrcnn/mask_rcnn.h"
#include "tensor/safetensors.h"
#include "tests/helpers.h"

using namespace mrcnn;
using namespace mrcnn::detection;

namespace {

const safetensors::File& fixture() {
  static const safetensors::File file = test::load_fixture("tests/fixtures/maskrcnn_fixture.safetensors");
  return file;
}

Tensor stored(const std::string& name) { return test::fixture_tensor(fixture(), name); }
bool has(const std::string& name) { return fixture().tensors.count(name) > 0; }

// The worst figure of each kind over the run, printed at exit for the issue note.
std::map<std::string, double>& worst() {
  static std::map<std::string, double> figures;
  static const bool printer = [] {
    std::atexit([] {
      for (const auto& [what, value] : worst()) std::printf("parity worst %-34s %.3g\n", what.c_str(), value);
    });
    return true;
  }();
  (void)printer;
  return figures;
}
void record(const std::string& kind, double value) { worst()[kind] = std::max(worst()[kind], value); }

double relative_error(const Tensor& actual, const Tensor& expected) {
  REQUIRE(actual.sizes() == expected.sizes());
  if (expected.numel() == 0) return 0.0;
  const double scale = ops::max(ops::abs(expected)).item<double>();
  return test::max_abs_diff(actual, expected) / std::max(scale, 1e-30);
}

void expect_close(const std::string& kind, const std::string& what, const Tensor& actual, const Tensor& expected,
                  double tolerance) {
  CAPTURE(what);
  REQUIRE(actual.sizes() == expected.sizes());
  const double error = relative_error(ops::to(actual, kFloat32), ops::to(expected, kFloat32));
  record(kind, error);
  CAPTURE(error);
  CHECK(error <= tolerance);
}

void expect_boxes(const std::string& what, const Tensor& actual, const Tensor& expected) {
  CAPTURE(what);
  REQUIRE(actual.sizes() == expected.sizes());  // same detection count
  const double error = test::max_abs_diff(actual, expected);
  record("boxes (px)", error);
  CAPTURE(error);
  CHECK(error <= 1e-3);
}

// Proposals as a set: RPN objectness logits of a randomly initialised head sit near 0, so many
// sigmoid scores tie exactly in float32 and torch's unstable sort orders the tied boxes arbitrarily.
// Each row is paired with its nearest expected row (sorting both sides instead misaligns rows whose
// x1 differ by less than the rounding noise: model a's first training image showed 20 px that way).
void expect_box_set(const std::string& what, const Tensor& actual, const Tensor& expected) {
  REQUIRE(actual.sizes() == expected.sizes());
  const Tensor a = ops::to(actual, kCPU);
  const auto pairing = test::nearest_row_pairing(a, expected);
  expect_boxes(what, a, ops::index_select(expected, 0, from_vector(pairing, {static_cast<int64_t>(pairing.size())})));
}

Config fixture_config(const std::string& model) {
  return config_from_json(nlohmann::json::parse(fixture().metadata.at("config." + model)));
}

// Weights: "<model>.w.<name>" as stored, or shared "w.<name>" int8 codes times a float32 scale.
std::map<std::string, Tensor> fixture_weights(const std::string& model, const MaskRCNN& net) {
  std::map<std::string, Tensor> state;
  for (const auto& [name, tensor] : net.state_dict()) {
    if (has(model + ".w." + name)) {
      state[name] = stored(model + ".w." + name);
    } else {
      const Tensor codes = stored("w." + name);
      const float scale = stored("w." + name + ".scale").item<float>();
      const auto values = to_vector<int64_t>(codes);
      std::vector<float> weights(values.size());
      for (size_t i = 0; i < values.size(); ++i) weights[i] = static_cast<float>(values[i]) * scale;
      state[name] = from_vector(weights, codes.sizes());
    }
  }
  return state;
}

std::unique_ptr<MaskRCNN> fixture_model(const std::string& model) {
  auto net = std::make_unique<MaskRCNN>(fixture_config(model));
  net->load_state_dict(fixture_weights(model, *net));
  return net;
}

std::vector<Tensor> fixture_images() {
  std::vector<Tensor> images;
  for (int i = 0; i < 2; ++i) {
    const Tensor codes = stored("input.image." + std::to_string(i));
    const auto values = to_vector<int64_t>(codes);
    std::vector<float> gray(values.size());
    for (size_t k = 0; k < values.size(); ++k) gray[k] = static_cast<float>(values[k] + 128) / 255.0f;
    const Tensor image = from_vector(gray, {1, codes.size(0), codes.size(1)});
    images.push_back(ops::contiguous(ops::expand(image, {3, codes.size(0), codes.size(1)})));
  }
  return images;
}

std::vector<Target> fixture_targets() {
  std::vector<Target> targets;
  for (int i = 0; i < 2; ++i) {
    const std::string s = std::to_string(i);
    targets.push_back({stored("input.boxes." + s), stored("input.labels." + s), stored("input.masks." + s)});
  }
  return targets;
}

std::vector<ImageSize> fixture_image_sizes(const std::string& model) {
  const auto v = to_vector<int64_t>(stored(model + ".eval.image_sizes"));
  return {{v[0], v[1]}, {v[2], v[3]}};
}

std::vector<Tensor> stored_features(const std::string& model, bool with_pool) {
  std::vector<Tensor> f;
  for (const char* level : {"0", "1", "2", "3", "pool"})
    if (with_pool || std::string(level) != "pool") f.push_back(stored(model + ".eval.features." + level));
  return f;
}

// torchvision's RPN outputs of `what` ("objectness" or "deltas") for the model's eval run, one per
// level, on `device`.
std::vector<Tensor> stored_rpn_outputs(const std::string& model, const std::string& what, Device device = kCPU) {
  std::vector<Tensor> levels;
  for (int l = 0; l < 5; ++l) levels.push_back(ops::to(stored(model + ".eval." + what + "." + std::to_string(l)), device));
  return levels;
}

void eval_stages(const std::string& model) {
  CAPTURE(model);
  auto net = fixture_model(model);
  net->eval();
  autograd::NoGradGuard no_grad;
  const auto sizes = fixture_image_sizes(model);
  const std::string p = model + ".eval.";

  // transform: normalise, resize, pad.
  const ImageList batch = net->transform().forward(fixture_images(), nullptr);
  CHECK(batch.image_sizes == sizes);
  expect_close("transform (rel)", "images", batch.tensors, stored("eval.images"), 1e-4);

  // backbone from the stored batch.
  const auto features = net->backbone->forward(stored("eval.images"));
  const char* names[] = {"0", "1", "2", "3", "pool"};
  for (size_t l = 0; l < features.size(); ++l)
    expect_close("features (rel)", std::string("features.") + names[l], features[l], stored(p + "features." + names[l]), 1e-4);

  // RPN head, anchors and proposals from stored inputs.
  const auto stored_levels = stored_features(model, true);
  const auto [objectness, deltas] = net->rpn->head->forward(stored_levels);
  const std::vector<Tensor> stored_objectness = stored_rpn_outputs(model, "objectness"), stored_deltas = stored_rpn_outputs(model, "deltas");
  REQUIRE(objectness.size() == stored_objectness.size());
  std::vector<std::pair<int64_t, int64_t>> feature_sizes;
  for (size_t l = 0; l < objectness.size(); ++l) {
    expect_close("rpn logits (rel)", "objectness." + std::to_string(l), objectness[l], stored_objectness[l], 1e-4);
    expect_close("rpn logits (rel)", "deltas." + std::to_string(l), deltas[l], stored_deltas[l], 1e-4);
    feature_sizes.emplace_back(stored_levels[l].size(2), stored_levels[l].size(3));
  }
  const Tensor anchors = net->rpn->anchor_generator().grid_anchors({stored("eval.images").size(2), stored("eval.images").size(3)},
                                                                   feature_sizes);
  expect_boxes("anchors", anchors, stored(p + "anchors"));
  const auto [proposals, proposal_scores] = net->rpn->filter_proposals(stored_objectness, stored_deltas, stored(p + "anchors"), sizes);
  // The GPU's selection (per image and level NMS in top-k order, invalid candidates excluded), run
  // on the CPU: torchvision's proposals too.
  net->rpn->use_in_order_nms(true);
  const auto in_order_proposals = net->rpn->filter_proposals(stored_objectness, stored_deltas, stored(p + "anchors"), sizes).first;
  // Train mode (2000 per level) too: the GPU's selection equals the CPU's, which the device test relies on.
  net->rpn->train();
  const auto in_order_train = net->rpn->filter_proposals(stored_objectness, stored_deltas, stored(p + "anchors"), sizes).first;
  net->rpn->use_in_order_nms(false);
  const auto train_proposals = net->rpn->filter_proposals(stored_objectness, stored_deltas, stored(p + "anchors"), sizes).first;
  net->rpn->eval();
  for (int i = 0; i < 2; ++i) CHECK(test::bitwise_equal(in_order_train[i], train_proposals[i]));
  std::vector<Tensor> stored_proposals;
  for (int i = 0; i < 2; ++i) {
    stored_proposals.push_back(stored(p + "proposals." + std::to_string(i)));
    expect_box_set("proposals." + std::to_string(i), proposals[i], stored_proposals.back());
    expect_box_set("in-order NMS proposals." + std::to_string(i), in_order_proposals[i], stored_proposals.back());
  }

  // Box head on the stored proposals, then postprocess_detections on the stored head outputs.
  const auto roi_features = stored_features(model, false);
  MultiScaleRoIAlign box_pool(7, 2);
  const auto [class_logits, box_regression] =
      net->roi_heads->box_predictor->forward(net->roi_heads->box_head->forward(box_pool.forward(roi_features, stored_proposals, sizes)));
  expect_close("box head logits (rel)", "class_logits", class_logits, stored(p + "class_logits"), 1e-4);
  expect_close("box head logits (rel)", "box_regression", box_regression, stored(p + "box_regression"), 1e-4);
  const auto detections =
      net->roi_heads->postprocess_detections(stored(p + "class_logits"), stored(p + "box_regression"), stored_proposals, sizes);
  for (int i = 0; i < 2; ++i) {
    const std::string s = std::to_string(i);
    expect_boxes("det_boxes." + s, detections[i].boxes, stored(p + "det_boxes." + s));
    expect_close("scores (abs)", "det_scores." + s, detections[i].scores, stored(p + "det_scores." + s), 1e-4);
    CHECK(test::bitwise_equal(detections[i].labels, stored(p + "det_labels." + s)));
  }

  // Mask head on the first stored detections.
  std::vector<Tensor> mask_boxes, mask_labels;
  for (int i = 0; i < 2; ++i) {
    const std::string s = std::to_string(i);
    const int64_t n = stored(p + "mask_probs." + s).size(0);
    mask_boxes.push_back(ops::contiguous(ops::narrow(stored(p + "det_boxes." + s), 0, 0, n)));
    mask_labels.push_back(ops::contiguous(ops::narrow(stored(p + "det_labels." + s), 0, 0, n)));
  }
  MultiScaleRoIAlign mask_pool(14, 2);
  const Tensor mask_logits = net->roi_heads->mask_predictor->forward(
      net->roi_heads->mask_head->forward(mask_pool.forward(roi_features, mask_boxes, sizes)));
  const auto probs = maskrcnn_inference(mask_logits, mask_labels);
  for (int i = 0; i < 2; ++i)
    expect_close("mask probabilities (rel)", "mask_probs." + std::to_string(i), probs[i],
                 stored(p + "mask_probs." + std::to_string(i)), 1e-4);

  // postprocess: boxes back to the original size, one pasted mask per image.
  const auto images = fixture_images();
  for (int i = 0; i < 2; ++i) {
    const std::string s = std::to_string(i);
    const ImageSize original{images[i].size(1), images[i].size(2)};
    const Tensor boxes = resize_boxes(stored(p + "det_boxes." + s), sizes[i], original);
    expect_boxes("final_boxes." + s, boxes, stored(p + "final_boxes." + s));
    const Tensor pasted = paste_masks_in_image(ops::narrow(stored(p + "mask_probs." + s), 0, 0, 1),
                                               ops::narrow(stored(p + "final_boxes." + s), 0, 0, 1), original);
    expect_close("pasted masks (rel)", "final_mask0." + s, pasted, stored(p + "final_mask0." + s), 1e-4);
  }

  // End to end: images in, detections out.
  const auto out = net->forward(images);
  for (int i = 0; i < 2; ++i) {
    const std::string s = std::to_string(i);
    expect_boxes("end-to-end boxes." + s, out.detections[i].boxes, stored(p + "final_boxes." + s));
    expect_close("scores (abs)", "end-to-end scores." + s, out.detections[i].scores, stored(p + "final_scores." + s), 1e-4);
  }
}

void train_parity(const std::string& model, Device device = kCPU) {
  CAPTURE(model);
  CAPTURE(device.str());
  auto net = fixture_model(model);
  net->to(device);
  net->train();
  const auto targets = fixture_targets();
  const auto out = net->forward(fixture_images(), &targets);
  for (int i = 0; i < 2; ++i)
    expect_box_set("train proposals." + std::to_string(i), out.rpn.boxes[i], stored(model + ".train.proposals." + std::to_string(i)));
  for (const auto& [name, loss] : out.losses) {
    const double expected = stored(model + ".train." + name).item<double>();
    const double error = std::abs(loss.item<double>() - expected) / std::abs(expected);
    CAPTURE(name);
    CAPTURE(error);
    record("losses (rel)", error);
    CHECK(error <= 1e-4);
  }
  autograd::backward(total_loss(out.losses));
  int checked = 0;
  for (const auto& [name, param] : net->named_parameters()) {
    const std::string key = model + ".train.grad." + name;
    CAPTURE(name);
    CHECK(param.requires_grad() == (has(key) || has(key + ".sampled")));
    if (!param.requires_grad()) continue;
    REQUIRE(param.grad().defined());
    const Tensor grad = ops::to(ops::reshape(param.grad(), {-1}), kCPU);
    Tensor actual = grad, expected;
    if (has(key)) {
      expected = ops::reshape(stored(key), {-1});
    } else {
      // Sampled at k * numel / 2048, plus the full norm.
      expected = stored(key + ".sampled");
      const int64_t n = grad.numel(), samples = expected.numel();
      std::vector<int64_t> positions;
      for (int64_t k = 0; k < samples; ++k) positions.push_back(k * n / samples);
      actual = ops::index_select(grad, 0, from_vector(positions, {samples}));
      const double norm = std::sqrt(ops::sum(ops::mul(ops::to(grad, kFloat64), ops::to(grad, kFloat64))).item<double>());
      const double norm_error = std::abs(norm - stored(key + ".norm").item<double>()) / stored(key + ".norm").item<double>();
      record("gradient norm (rel)", norm_error);
      CHECK(norm_error <= 1e-3);
    }
    const Tensor diff = ops::sub(ops::to(actual, kFloat64), ops::to(expected, kFloat64));
    const double ref_norm = std::sqrt(ops::sum(ops::mul(ops::to(expected, kFloat64), ops::to(expected, kFloat64))).item<double>());
    const double error = std::sqrt(ops::sum(ops::mul(diff, diff)).item<double>()) / std::max(ref_norm, 1e-30);
    CAPTURE(error);
    record("gradients (rel norm)", error);
    if (std::getenv("MRCNN_FIXTURE_REPORT")) std::printf("%s %s %.3g\n", model.c_str(), name.c_str(), error);
    CHECK(error <= 1e-3);
    ++checked;
  }
  CHECK(checked > 30);
}

// The whole model on a GPU against torchvision's stored outputs: backbone features and end-to-end
// detections (the stage-by-stage checks above feed stored CPU tensors into single modules).
void eval_on_device(const std::string& model, Device device) {
  CAPTURE(model);
  auto net = fixture_model(model);
  net->to(device);
  net->eval();
  autograd::NoGradGuard no_grad;
  const std::string p = model + ".eval.";
  const auto features = net->backbone->forward(ops::to(stored("eval.images"), device));
  const char* names[] = {"0", "1", "2", "3", "pool"};
  for (size_t l = 0; l < features.size(); ++l)
    expect_close("features (rel)", std::string("features.") + names[l], ops::to(features[l], kCPU),
                 stored(p + "features." + names[l]), 1e-4);
  // Proposal selection (top-k, decode, NMS per image and level) from the same stored RPN outputs on
  // both devices: eval against torchvision's proposals; train mode (2000 per level: the finest
  // level's NMS segment has up to 2000 boxes) against the CPU's selection.
  const std::vector<Tensor> objectness = stored_rpn_outputs(model, "objectness"), deltas = stored_rpn_outputs(model, "deltas");
  const std::vector<Tensor> objectness_on_device = stored_rpn_outputs(model, "objectness", device);
  const std::vector<Tensor> deltas_on_device = stored_rpn_outputs(model, "deltas", device);
  const auto sizes = fixture_image_sizes(model);
  const auto eval_proposals = net->rpn->filter_proposals(objectness_on_device, deltas_on_device, stored(p + "anchors"), sizes).first;
  net->rpn->train();
  const auto train_proposals = net->rpn->filter_proposals(objectness_on_device, deltas_on_device, stored(p + "anchors"), sizes).first;
  auto on_cpu = fixture_model(model);
  on_cpu->rpn->train();
  const auto train_proposals_on_cpu = on_cpu->rpn->filter_proposals(objectness, deltas, stored(p + "anchors"), sizes).first;
  net->rpn->eval();
  for (int i = 0; i < 2; ++i) {
    const std::string s = std::to_string(i);
    expect_box_set("device proposals." + s, eval_proposals[i], stored(p + "proposals." + s));
    expect_box_set("device train-mode proposals." + s, train_proposals[i], train_proposals_on_cpu[i]);
  }

  const auto out = net->forward(fixture_images());
  for (int i = 0; i < 2; ++i) {
    const std::string s = std::to_string(i);
    expect_boxes("end-to-end boxes." + s, out.detections[i].boxes, stored(p + "final_boxes." + s));
    expect_close("scores (abs)", "end-to-end scores." + s, out.detections[i].scores, stored(p + "final_scores." + s), 1e-4);
  }
}

}  // namespace

TEST_CASE("maskrcnn parity: fixture and configs") {
  CHECK(fixture().metadata.at("version") == "1");
  CHECK(fixture().metadata.at("torchvision").rfind("0.14", 0) == 0);
  const Config a = fixture_config("a"), b = fixture_config("b");
  CHECK(a.norm == "frozen_bn");
  CHECK(b.norm == "gn");
  CHECK(b.trainable_layers == 5);
  // Every state_dict key of our model is in the fixture under torchvision's name, and vice versa.
  MaskRCNN net(a);
  const auto weights = fixture_weights("a", net);
  CHECK(weights.size() == net.state_dict().size());
  int64_t fixture_keys = 0;
  for (const auto& [name, t] : fixture().tensors)
    if (name.rfind("a.w.", 0) == 0 || (name.rfind("w.", 0) == 0 && name.find(".scale") == std::string::npos)) ++fixture_keys;
  CHECK(fixture_keys == static_cast<int64_t>(weights.size()));
}

TEST_CASE("maskrcnn parity: eval stages, FrozenBN model") { eval_stages("a"); }
TEST_CASE("maskrcnn parity: eval stages, GroupNorm model") { eval_stages("b"); }
TEST_CASE("maskrcnn parity: losses and gradients, FrozenBN model") { train_parity("a"); }
TEST_CASE("maskrcnn parity: losses and gradients, GroupNorm model") { train_parity("b"); }

// The same fixture and tolerances with the model on a GPU: cuDNN/cuBLAS in float32 without TF32 sum
// in other orders than torchvision's CPU kernels, like our CPU kernels do; the tolerances are the CPU's.
TEST_CASE("cuda: maskrcnn parity on the GPU, eval and train, both models") {
  if (test::setup_cuda_or_skip("maskrcnn parity on CUDA")) return;
  for (const char* model : {"a", "b"}) {
    eval_on_device(model, test::gpu());
    train_parity(model, test::gpu());
  }
}
