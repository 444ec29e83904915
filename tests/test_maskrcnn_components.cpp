// Detection building blocks on hand-computed cases (the parity test covers them against torchvision
// on real data; these pin the rules one by one), and the overfit test: the model can learn.
#include <algorithm>
#include <cmath>
#include <tuple>

#include "maskrcnn/anchor_generator.h"
#include "maskrcnn/box_coder.h"
#include "maskrcnn/hires_cam.h"
#include "maskrcnn/mask_rcnn.h"
#include "maskrcnn/matcher.h"
#include "maskrcnn/poolers.h"
#include "maskrcnn/profile.h"
#include "maskrcnn/roi_heads.h"
#include "maskrcnn/rpn.h"
#include "nn/optim.h"
#include "tensor/storage.h"
#include "tests/helpers.h"

using namespace mrcnn;
using namespace mrcnn::detection;

TEST_CASE("AnchorGenerator: torchvision's cell anchors and grid order") {
  AnchorGenerator g({{32}, {64}}, {{0.5, 1.0, 2.0}});
  // size 32, ratio 0.5: h = 32 * sqrt(.5) = 22.6, w = 45.25 -> round(+-11.3), round(+-22.6).
  CHECK(test::values(g.cell_anchors(0)) == std::vector<double>{-23, -11, 23, 11, -16, -16, 16, 16, -11, -23, 11, 23});
  // A 64x64 batch with 2x2 and 1x1 maps: strides 32 and 64; location-major, then ratio.
  const Tensor a = g.grid_anchors({64, 64}, {{2, 2}, {1, 1}});
  CHECK(a.sizes() == Shape{(4 + 1) * 3, 4});
  CHECK(test::values(ops::select(a, 0, 3)) == std::vector<double>{32 - 23, -11, 32 + 23, 11});   // (y0, x1), ratio .5
  CHECK(test::values(ops::select(a, 0, 7)) == std::vector<double>{-16, 32 - 16, 16, 48});       // (y1, x0), ratio 1
}

TEST_CASE("BoxCoder: encode/decode inverse, weights and clamp") {
  BoxCoder coder({10, 10, 5, 5});
  const Tensor proposals = from_vector(std::vector<float>{10, 10, 50, 30, 0, 0, 8, 8}, {2, 4});
  const Tensor gt = from_vector(std::vector<float>{12, 8, 46, 36, 1, 1, 9, 7}, {2, 4});
  const Tensor deltas = coder.encode(gt, proposals);
  // dx = 10 * (29 - 30) / 40 = -0.25; dw = 5 * log(34 / 40).
  CHECK(test::values(deltas)[0] == doctest::Approx(-0.25));
  CHECK(test::values(deltas)[2] == doctest::Approx(5 * std::log(34.0 / 40)).epsilon(1e-6));
  const Tensor back = coder.decode(deltas, proposals);
  CHECK(back.sizes() == Shape{2, 1, 4});
  CHECK(test::max_abs_diff(ops::reshape(back, {2, 4}), gt) < 1e-4);
  // dw beyond log(1000/16) is clamped: a box can grow at most 62.5x.
  const Tensor huge = coder.decode(from_vector(std::vector<float>{0, 0, 1000, 0}, {1, 4}), from_vector(std::vector<float>{0, 0, 2, 2}, {1, 4}));
  CHECK(test::values(huge)[2] - test::values(huge)[0] == doctest::Approx(2 * 1000.0 / 16).epsilon(1e-5));
}

namespace {

// Random RPN head outputs for two 128 x 128 padded images (five levels, three anchors per place: 4092
// anchors each), the anchors, and the images' sizes.
struct RpnInputs {
  std::vector<Tensor> objectness, deltas;
  Tensor anchors;
  std::vector<ImageSize> sizes{{128, 128}, {120, 100}};
};

RpnInputs random_rpn_inputs(const RegionProposalNetwork& rpn, uint64_t seed) {
  RpnInputs in;
  Generator g(seed);
  std::vector<std::pair<int64_t, int64_t>> feature_sizes;
  for (const int64_t side : {32, 16, 8, 4, 2}) {
    in.objectness.push_back(ops::mul(randn({2, 3, side, side}, kFloat32, kCPU, &g), 3.0f));
    in.deltas.push_back(ops::mul(randn({2, 12, side, side}, kFloat32, kCPU, &g), 0.5f));
    feature_sizes.emplace_back(side, side);
  }
  in.anchors = rpn.anchor_generator().grid_anchors({128, 128}, feature_sizes);
  return in;
}

}  // namespace

namespace {

// Three images' ground truth: two boxes, none, one.
std::vector<Target> three_targets() {
  auto target = [](std::vector<float> boxes) {
    const int64_t n = static_cast<int64_t>(boxes.size() / 4);
    return Target{from_vector(boxes, {n, 4}), from_vector(std::vector<int64_t>(static_cast<size_t>(n), 1), {n}), Tensor()};
  };
  return {target({10, 12, 60, 70, 70, 20, 120, 50}), target({}), target({30, 30, 90, 100})};
}

}  // namespace

TEST_CASE("RPN and RoI sampling: images side by side give one-after-another's samples and generator state") {
  const Config config = test::small_maskrcnn_config(128, 128);
  RegionProposalNetwork rpn(config);
  const Tensor anchors = random_rpn_inputs(rpn, 33).anchors;
  const std::vector<Target> targets = three_targets();
  const Generator before = rpn.generator();
  const auto sampled = rpn.sample_targets(anchors, targets);
  // One image after another, with the public matcher and sampler.
  const Matcher matcher(config.rpn_fg_iou_thresh, config.rpn_bg_iou_thresh, true);
  const BalancedPositiveNegativeSampler sampler(config.rpn_batch_size_per_image, config.rpn_positive_fraction);
  Generator g = before;
  std::vector<int64_t> positives, negatives;
  const int64_t total = anchors.size(0);
  for (int64_t image = 0; image < 3; ++image) {
    std::vector<int64_t> labels(static_cast<size_t>(total), 0);
    if (targets[image].boxes.size(0) > 0) {
      const auto matches = matcher(ops::box_iou(targets[image].boxes, anchors));
      for (int64_t i = 0; i < total; ++i) labels[i] = matches[i] >= 0 ? 1 : matches[i] == Matcher::kBelowLowThreshold ? 0 : -1;
    }
    const auto masks = sampler(labels, g);
    for (int64_t i = 0; i < total; ++i) {
      if (masks.positive[i]) positives.push_back(image * total + i);
      if (masks.negative[i]) negatives.push_back(image * total + i);
    }
  }
  CHECK(sampled.positives == static_cast<int64_t>(positives.size()));
  CHECK(sampled.positives >= 3);  // each ground-truth box keeps at least its best anchor
  positives.insert(positives.end(), negatives.begin(), negatives.end());
  CHECK(sampled.sampled == positives);
  CHECK(sampled.regression_targets.sizes() == Shape{sampled.positives, 4});
  CHECK(rpn.generator().offset() == g.offset());

  // The RoI heads: proposals per image against a sequential run of the same sampler.
  RoIHeads heads(config);
  Generator proposal_generator(34);
  std::vector<Tensor> proposals;
  for (int image = 0; image < 3; ++image) {
    const Tensor corner = ops::mul(rand({400, 2}, kFloat32, kCPU, &proposal_generator), 90.0f);
    const Tensor side = ops::add(ops::mul(rand({400, 2}, kFloat32, kCPU, &proposal_generator), 40.0f), 4.0f);
    proposals.push_back(ops::contiguous(ops::cat({corner, ops::add(corner, side)}, 1)));
  }
  const Generator heads_before = heads.generator();
  const TrainingSamples samples = heads.select_training_samples(proposals, targets);
  const Matcher box_matcher(config.box_fg_iou_thresh, config.box_bg_iou_thresh, false);
  const BalancedPositiveNegativeSampler box_sampler(config.box_batch_size_per_image, config.box_positive_fraction);
  Generator h = heads_before;
  for (int64_t image = 0; image < 3; ++image) {
    CAPTURE(image);
    const Tensor candidates = ops::cat({proposals[image], targets[image].boxes}, 0);
    const int64_t n = candidates.size(0);
    std::vector<int64_t> labels(static_cast<size_t>(n), 0);
    if (targets[image].boxes.size(0) > 0) {
      const auto matches = box_matcher(ops::box_iou(targets[image].boxes, candidates));
      for (int64_t i = 0; i < n; ++i) labels[i] = matches[i] == Matcher::kBelowLowThreshold ? 0 : matches[i] == Matcher::kBetweenThresholds ? -1 : 1;
    }
    const auto masks = box_sampler(labels, h);
    std::vector<int64_t> kept;
    for (int64_t i = 0; i < n; ++i)
      if (masks.positive[i] || masks.negative[i]) kept.push_back(i);
    const Tensor expected = ops::index_select(candidates, 0, from_vector(kept, {static_cast<int64_t>(kept.size())}));
    CHECK(test::bitwise_equal(samples.proposals[image], expected));
    CHECK(samples.regression_targets[image].size(0) == expected.size(0));
  }
  CHECK(heads.generator().offset() == h.offset());
  // A bad target in one image is one error on the calling thread.
  std::vector<Target> bad = targets;
  bad[1].boxes = zeros({1, 4}, kFloat64);
  CHECK(test::error_of([&] { heads.select_training_samples(proposals, bad); }) == "RoIHeads: target boxes must be float32 and labels int64");
  bad = targets;
  bad[2].boxes = zeros({1, 5});
  CHECK(test::error_of([&] { rpn.sample_targets(anchors, bad); }) == "box_iou: boxes1 must be [N, 4] rows of (x1, y1, x2, y2), got [1, 5]");
}

TEST_CASE("RPN: the GPU's in-order NMS keeps batched_nms's proposals, bit for bit, above 1000 candidates") {
  RegionProposalNetwork rpn(test::small_maskrcnn_config(128, 128));
  const RpnInputs in = random_rpn_inputs(rpn, 31);
  REQUIRE(in.anchors.size(0) == 4092);
  for (const bool training : {false, true}) {  // 2020 candidates per image (top 1000 per level), then all 4092
    CAPTURE(training);
    rpn.train(training);
    rpn.use_in_order_nms(false);
    const auto [boxes, scores] = rpn.filter_proposals(in.objectness, in.deltas, in.anchors, in.sizes);
    rpn.use_in_order_nms(true);
    const auto [in_order_boxes, in_order_scores] = rpn.filter_proposals(in.objectness, in.deltas, in.anchors, in.sizes);
    for (size_t i = 0; i < 2; ++i) {
      CAPTURE(i);
      CHECK(boxes[i].size(0) > 300);
      CHECK(test::bitwise_equal(boxes[i], in_order_boxes[i]));
      CHECK(test::bitwise_equal(scores[i], in_order_scores[i]));
      // Inside the image, by descending score, capped at post_nms_top_n (2000 training, 1000 otherwise).
      const auto b = to_vector<float>(boxes[i]), s = to_vector<float>(scores[i]);
      CHECK(boxes[i].size(0) <= (training ? 2000 : 1000));
      for (size_t k = 0; k + 1 < s.size(); ++k) CHECK(s[k] >= s[k + 1]);
      CHECK(*std::min_element(b.begin(), b.end()) >= 0.0f);
      CHECK(*std::max_element(b.begin(), b.end()) <= 128.0f);
    }
  }
  ImageList images;
  images.tensors = zeros({1, 1, 128, 128});
  images.image_sizes = {{128, 128}};
  CHECK(test::error_of([&] { rpn.forward(images, {}, nullptr); }) == "RPN: no feature maps");
}

TEST_CASE("cuda: RPN proposals on the GPU equal the CPU's bit for bit") {
  if (test::setup_cuda_or_skip("RPN proposals on CUDA")) return;
  RegionProposalNetwork rpn(test::small_maskrcnn_config(128, 128));
  const RpnInputs in = random_rpn_inputs(rpn, 32);
  std::vector<Tensor> objectness, deltas;
  for (size_t l = 0; l < in.objectness.size(); ++l) {
    objectness.push_back(ops::to(in.objectness[l], test::gpu()));
    deltas.push_back(ops::to(in.deltas[l], test::gpu()));
  }
  for (const bool training : {false, true}) {
    CAPTURE(training);
    rpn.train(training);
    rpn.use_in_order_nms(false);
    const auto [cpu_boxes, cpu_scores] = rpn.filter_proposals(in.objectness, in.deltas, in.anchors, in.sizes);
    const auto [gpu_boxes, gpu_scores] = rpn.filter_proposals(objectness, deltas, in.anchors, in.sizes);
    for (size_t i = 0; i < 2; ++i) {
      CAPTURE(i);
      CHECK(gpu_boxes[i].device() == kCPU);  // proposals come back to the host, where the RoI sampling matches them
      CHECK(cpu_boxes[i].size(0) > 300);
      CHECK(test::bitwise_equal(cpu_boxes[i], gpu_boxes[i]));
      CHECK(test::bitwise_equal(cpu_scores[i], gpu_scores[i]));
    }
  }
}

TEST_CASE("Matcher: thresholds and low-quality matches, and sampler counts") {
  // 2 gt x 4 predictions.
  const Tensor iou = from_vector(std::vector<float>{0.8f, 0.5f, 0.1f, 0.2f,  //
                                                    0.1f, 0.6f, 0.2f, 0.25f},
                                 {2, 4});
  CHECK(Matcher(0.7, 0.3, false)(iou) == std::vector<int64_t>{0, -2, -1, -1});
  // gt 1's best prediction (0.6, column 1) keeps it despite being below 0.7.
  CHECK(Matcher(0.7, 0.3, true)(iou) == std::vector<int64_t>{0, 1, -1, -1});
  BalancedPositiveNegativeSampler sampler(4, 0.25);
  Generator g(7);
  const std::vector<int64_t> labels = {1, 1, 1, 0, 0, 0, 0, 0, -1};
  const auto masks = sampler(labels, g);
  int pos = 0, neg = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    pos += masks.positive[i];
    neg += masks.negative[i];
    if (masks.positive[i]) CHECK(labels[i] == 1);
    if (masks.negative[i]) CHECK(labels[i] == 0);
  }
  CHECK(pos == 1);
  CHECK(neg == 3);
  Generator same(7);
  CHECK(sampler(labels, same).positive == masks.positive);  // seeded: reproducible
}

TEST_CASE("sampler: skip_draws moves the generator exactly as sampling does, drawing nothing") {
  const BalancedPositiveNegativeSampler sampler(256, 0.25);
  Generator labels_generator(11);
  // Label mixes: few positives (only negatives drawn), many (both drawn), too few negatives to fill
  // the batch (no negative draw), nothing but ignored ones, and an odd candidate count (half a block).
  for (const auto& [n, positive_share, ignored_share] :
       std::vector<std::tuple<int64_t, double, double>>{{1000, 0.01, 0.1}, {5000, 0.2, 0.1}, {300, 0.5, 0.3}, {50, 0.0, 1.0}, {777, 0.3, 0.0}}) {
    CAPTURE(n);
    const auto u = to_vector<double>(rand({n}, kFloat64, kCPU, &labels_generator));
    std::vector<int64_t> labels(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) labels[i] = u[i] < positive_share ? 1 : u[i] < positive_share + ignored_share ? -1 : 0;
    Generator sampled(5), skipped(5);
    sampled.set_state(5, 3), skipped.set_state(5, 3);
    sampler(labels, sampled);
    sampler.skip_draws(labels, skipped);
    CHECK(skipped.offset() == sampled.offset());
    CHECK(skipped.seed() == sampled.seed());
  }
}

TEST_CASE("MultiScaleRoIAlign: level mapper with canonical 224 px on level 4") {
  MultiScaleRoIAlign pool(7);
  const Tensor boxes = from_vector(std::vector<float>{0, 0, 224, 224, 0, 0, 112, 112, 0, 0, 10, 10, 0, 0, 900, 900}, {4, 4});
  CHECK(pool.map_levels({boxes}, 2, 5) == std::vector<int64_t>{2, 1, 0, 3});
  const std::vector<Tensor> features = {zeros({1, 1, 32, 48}), zeros({1, 1, 16, 24})};
  CHECK(MultiScaleRoIAlign::infer_scales(features, {{128, 170}}) == std::vector<double>{0.25, 0.125});
}

TEST_CASE("MultiScaleRoIAlign: grouped rows and one level at a time give forward's rows, bit for bit") {
  MultiScaleRoIAlign pool(3);
  Generator g(5);
  // Two images, four levels (strides 4 to 32 of a 128 x 128 batch); boxes of 10 to 500 px land on
  // every level, interleaved, so level order differs from box order.
  const std::vector<Tensor> features = {randn({2, 4, 32, 32}, kFloat32, kCPU, &g), randn({2, 4, 16, 16}, kFloat32, kCPU, &g),
                                        randn({2, 4, 8, 8}, kFloat32, kCPU, &g), randn({2, 4, 4, 4}, kFloat32, kCPU, &g)};
  const std::vector<Tensor> boxes = {
      from_vector(std::vector<float>{0, 0, 500, 500, 5, 5, 15, 15, 10, 20, 130, 140, 30, 30, 60, 70}, {4, 4}),
      from_vector(std::vector<float>{2, 3, 250, 200, 40, 40, 52, 50, 0, 0, 300, 300}, {3, 4})};
  const std::vector<ImageSize> sizes = {{128, 128}, {128, 128}};
  CHECK(pool.map_levels(boxes, 2, 5) == std::vector<int64_t>{3, 0, 1, 0, 1, 0, 2});
  // A row-wise head through the packed GEMM: flatten, then linear.
  const Tensor weight = randn({5, 4 * 3 * 3}, kFloat32, kCPU, &g), bias = randn({5}, kFloat32, kCPU, &g);
  const auto head = [&](const Tensor& rows) { return ops::linear(ops::flatten(rows, 1), weight, bias); };
  autograd::NoGradGuard no_grad;
  const Tensor in_box_order = pool.forward(features, boxes, sizes);
  CHECK(in_box_order.sizes() == Shape{7, 4, 3, 3});
  const auto grouped = pool.forward_grouped(features, boxes, sizes);
  CHECK(test::values(grouped.position) == std::vector<double>{6, 0, 3, 1, 4, 2, 5});
  CHECK(test::bitwise_equal(ops::index_select(grouped.rows, 0, grouped.position), in_box_order));
  for (const int64_t max_rows : {0, 1, 2}) {  // 2: level 0's three boxes in two passes
    CAPTURE(max_rows);
    int passes = 0;
    const Tensor per_level = pool.forward_per_level(features, boxes, sizes, max_rows, [&](const Tensor& rows) {
      ++passes;
      CHECK(rows.size(0) <= (max_rows > 0 ? max_rows : 3));
      return head(rows);
    });
    CHECK(passes == (max_rows == 0 ? 4 : max_rows == 1 ? 7 : 5));
    CHECK(per_level.sizes() == Shape{7, 5});
    CHECK(test::bitwise_equal(per_level, head(in_box_order)));
  }
  // No boxes: the head still runs, on no rows; one level: all boxes pooled from it.
  CHECK(pool.forward_per_level(features, {zeros({0, 4}), zeros({0, 4})}, sizes, 2, head).sizes() == Shape{0, 5});
  const std::vector<Tensor> one_level = {features[0]};
  CHECK(test::bitwise_equal(pool.forward_per_level(one_level, boxes, sizes, 3, head), head(pool.forward(one_level, boxes, sizes))));
  CHECK(pool.forward_per_level(one_level, {zeros({0, 4}), zeros({0, 4})}, sizes, 3, head).sizes() == Shape{0, 5});
  CHECK(pool.forward_grouped(features, {zeros({0, 4}), zeros({0, 4})}, sizes).rows.sizes() == Shape{0, 4, 3, 3});
}

TEST_CASE("overfit: 200 SGD steps on one synthetic image cut the total loss below 10%") {
  Config c = test::small_maskrcnn_config();
  c.representation_size = 64;
  c.mask_layers = {32, 32};
  c.rpn_batch_size_per_image = 64;
  c.box_batch_size_per_image = 64;
  manual_seed(3);
  MaskRCNN net(c);
  // A bright disc of radius 10 at (24, 36) on a dim textured background.
  std::vector<float> pixels(64 * 64);
  std::vector<uint8_t> mask(64 * 64);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x) {
      const bool inside = (y - 24) * (y - 24) + (x - 36) * (x - 36) <= 100;
      pixels[y * 64 + x] = (inside ? 0.8f : 0.3f) + 0.05f * static_cast<float>((x * 7 + y * 13) % 5) / 5;
      mask[y * 64 + x] = inside;
    }
  const std::vector<Tensor> images = {from_vector(pixels, {1, 64, 64})};
  const std::vector<Target> targets = {{from_vector(std::vector<float>{26, 14, 47, 35}, {1, 4}),
                                        from_vector(std::vector<int64_t>{1}, {1}), from_vector(mask, {1, 64, 64})}};
  std::vector<std::pair<std::string, Tensor>> trainable;
  for (auto& [name, p] : net.named_parameters())
    if (p.requires_grad()) trainable.emplace_back(name, p);
  nn::SGD optimizer(trainable, {0.02, 0.9, 0, 1e-4, false});
  net.train();
  double first = 0, last = 0;
  for (int step = 0; step < 200; ++step) {
    optimizer.zero_grad();
    const auto out = net.forward(images, &targets);
    const Tensor loss = total_loss(out.losses);
    if (step == 0) first = loss.item<double>();
    last = loss.item<double>();
    autograd::backward(loss);
    nn::clip_grad_norm(net.trainable_parameters(), 10.0);
    optimizer.step();
  }
  MESSAGE("overfit: total loss " << first << " -> " << last);
  CHECK(std::isfinite(last));
  CHECK(last < 0.1 * first);
}

TEST_CASE("maskrcnn: an image without annotations trains, and a model that detects nothing returns empty tensors") {
  Config c = test::small_maskrcnn_config();
  manual_seed(4);
  MaskRCNN net(c);
  Generator g(9);
  const std::vector<Tensor> images = {rand({1, 64, 80}, kFloat32, kCPU, &g), rand({1, 70, 64}, kFloat32, kCPU, &g)};
  std::vector<uint8_t> mask(64 * 80, 0);
  for (int y = 10; y < 30; ++y)
    for (int x = 20; x < 50; ++x) mask[y * 80 + x] = 1;
  const std::vector<Target> targets = {
      {from_vector(std::vector<float>{20, 10, 50, 30}, {1, 4}), from_vector(std::vector<int64_t>{1}, {1}), from_vector(mask, {1, 64, 80})},
      {zeros({0, 4}), zeros({0}, kInt64), zeros({0, 70, 64}, kBool)}};  // a negative slice
  net.train();
  const auto out = net.forward(images, &targets);
  REQUIRE(out.losses.size() == 5);
  for (const auto& [name, loss] : out.losses) {
    CAPTURE(name);
    CHECK(std::isfinite(loss.item<double>()));
  }
  autograd::backward(total_loss(out.losses));
  CHECK(net.roi_heads->box_predictor->cls_score->weight.grad().defined());

  net.eval();
  c.box_score_thresh = 1.0;  // nothing can score above 1
  MaskRCNN silent(c);
  silent.load_state_dict(net.state_dict());
  silent.eval();
  autograd::NoGradGuard no_grad;
  const auto none = silent.forward(images);
  REQUIRE(none.detections.size() == 2);
  CHECK(none.detections[0].boxes.sizes() == Shape{0, 4});
  CHECK(none.detections[0].scores.sizes() == Shape{0});
  CHECK(none.detections[1].masks.sizes() == Shape{0, 1, 70, 64});
}

TEST_CASE("transform: torchvision's sizes, and a strip too thin to scale keeps one pixel and is predicted") {
  Config c = test::small_maskrcnn_config();
  c.min_size = {64};
  c.max_size = 96;
  const GeneralizedRCNNTransform transform(c);
  CHECK(transform.resized_size({48, 64}, 64) == ImageSize{64, 85});   // short side to 64: 64 * 4/3 = 85.33
  CHECK(transform.resized_size({40, 120}, 64) == ImageSize{32, 96});  // long side capped at 96
  // 2 * 0.24 floors to 0 in torchvision; float32's 0.24 lies just below, so 400 * 0.24 floors to 95.
  CHECK(transform.resized_size({2, 400}, 64) == ImageSize{1, 95});
  CHECK(transform.resized_size({400, 3}, 64) == ImageSize{95, 1});
  manual_seed(5);
  MaskRCNN net(c);
  net.eval();
  autograd::NoGradGuard no_grad;
  Generator g(2);
  const auto out = net.forward({rand({1, 2, 400}, kFloat32, kCPU, &g)});
  REQUIRE(out.detections.size() == 1);
  const Tensor& boxes = out.detections[0].boxes;
  CHECK(out.detections[0].masks.size(2) == 2);
  CHECK(out.detections[0].masks.size(3) == 400);
  for (int64_t i = 0; i < boxes.size(0); ++i) {  // in the original image's coordinates
    const auto b = to_vector<float>(ops::select(boxes, 0, i));
    CHECK(b[0] >= 0);
    CHECK(b[2] <= 400);
    CHECK(b[3] <= 2);
  }
}

TEST_CASE("profile: stages record calls, their memory peak, what they leave held and their arithmetic, nested stages too") {
  constexpr double kMB = 1 << 20;
  reset_stage_records();
  set_profiling(false);
  {
    const Stage early("early");  // began with profiling off: records nothing when it ends
    set_profiling(true, kCPU);
  }
  const double base = static_cast<double>(host_memory_stats().in_use) / kMB;
  Tensor kept;
  {
    const Stage outer("outer");
    {
      const Stage inner("inner");
      const Tensor scratch = empty({4 << 20}, kFloat32);  // 16 MB, freed inside the stage
      kept = empty({1 << 20}, kFloat32);                  // 4 MB, outlives both stages
      (void)ops::matmul(zeros({3, 4}), zeros({4, 5}));    // 120 flops, the inner stage's and the outer's
    }
    const Tensor later = empty({8 << 20}, kFloat32);  // 32 MB after the inner stage: the outer's peak
    (void)ops::matmul(zeros({2, 2}), zeros({2, 2}));  // 16 flops, the outer stage's only
  }
  { const Stage inner("inner"); }  // a second call: calls add up, the peak is the larger one
  set_profiling(false);
  const auto records = stage_records();
  REQUIRE(records.size() == 2);
  CHECK(records[0].name == "inner");  // first seen first: it ended first
  CHECK(records[0].calls == 2);
  CHECK(records[0].peak_mb == doctest::Approx(base + 20));
  CHECK(records[0].held_change_mb == doctest::Approx(4));
  CHECK(records[1].name == "outer");
  CHECK(records[1].calls == 1);
  CHECK(records[1].peak_mb == doctest::Approx(base + 36));
  CHECK(records[1].held_change_mb == doctest::Approx(4));
  CHECK(records[0].flops == 120);
  CHECK(records[1].flops == 136);
  reset_stage_records();
  CHECK(stage_records().empty());
}

TEST_CASE("hires_cam: the contributions sum to the logit's first-order change, stay near the box, on the box's stage") {
  manual_seed(23);
  MaskRCNN model(test::tiny_detector_config());
  model.eval();
  Tensor image = ops::mul(rand({1, 64, 96}), 0.8);
  MaskRCNNOutput out;
  {
    autograd::NoGradGuard no_grad;
    out = model.forward({image});
  }
  REQUIRE(out.images.image_sizes[0] == ImageSize{64, 96});
  // A 32-pixel box: the LevelMapper's floor(4 + log2(32 / 224)) = 1, clamped to 2, is P2, built on C2.
  const Tensor box = from_vector<float>({8, 8, 40, 40}, {4});
  const HiResCam cam = hires_cam(model, out.images, box, 1);
  CHECK(cam.stage == 0);
  // The parameters keep their gradients (none here) and stay trainable.
  for (const auto& [name, p] : model.named_parameters()) {
    CHECK(!p.grad().defined());
    CHECK(p.requires_grad());
  }
  CHECK(cam.map.sizes() == Shape{64, 96});
  CHECK(ops::min(cam.map).item<float>() >= 0);
  CHECK(ops::max(cam.map).item<float>() == 1.0f);
  REQUIRE(cam.contribution.sizes() == Shape{16, 24});
  // RoIAlign samples the box's stride-4 cells 2..10 (their bilinear neighbours to 11) and P2's 3x3
  // conv widens that by one: nothing beyond reaches the logit.
  CHECK(ops::max(ops::abs(ops::narrow(cam.contribution, 1, 14, 10))).item<float>() == 0);
  CHECK(ops::max(ops::abs(ops::narrow(cam.contribution, 0, 14, 2))).item<float>() == 0);
  {
    // Several boxes share one run of the body; each map is the one its box gets alone.
    const Tensor second = from_vector<float>({30, 20, 94, 62}, {4});
    const std::vector<HiResCam> cams = hires_cams(model, out.images, ops::stack({box, second}, 0), {1, 0});
    REQUIRE(cams.size() == 2);
    const HiResCam alone = hires_cam(model, out.images, second, 0);
    CHECK(cams[0].logit == cam.logit);
    CHECK(test::bitwise_equal(cams[0].map, cam.map));
    CHECK(test::bitwise_equal(cams[0].contribution, cam.contribution));
    CHECK(cams[1].stage == alone.stage);
    CHECK(cams[1].logit == alone.logit);
    CHECK(test::bitwise_equal(cams[1].map, alone.map));
    CHECK(test::bitwise_equal(cams[1].contribution, alone.contribution));
    CHECK(test::error_of([&] { (void)hires_cams(model, out.images, ops::stack({box, second}, 0), {1}); }) ==
          "hires_cam: 2 boxes but 1 labels");
    CHECK(test::error_of([&] { (void)hires_cam(model, out.images, ops::reshape(second, {2, 2}), 0); }) ==
          "hires_cam: a box is 4 numbers, got [2, 2]");
  }
  // sum(gradient * activation) is d logit(C2 * (1 + t)) / dt at t = 0: the box head is piecewise
  // linear in C2, so a central difference over a small t gives it.
  autograd::NoGradGuard no_grad;
  const std::vector<Tensor> stages = model.backbone->body->forward(out.images.tensors);
  const auto logit_scaled = [&](double t) {
    std::vector<Tensor> scaled = stages;
    scaled[0] = ops::mul(stages[0], 1.0 + t);
    return box_class_logit(model, model.backbone->fpn->forward(scaled), box, 1, {64, 96}).item<float>();
  };
  CHECK(logit_scaled(0) == doctest::Approx(cam.logit).epsilon(1e-6));
  const double t = 1e-2, derivative = (logit_scaled(t) - logit_scaled(-t)) / (2 * t);
  const double total = ops::sum(cam.contribution).item<float>();
  CHECK(std::abs(total) > 1e-3);  // something to compare
  CHECK(derivative == doctest::Approx(total).epsilon(1e-3).scale(0));  // 4e-5 apart here
  CHECK(test::error_of([&] { (void)hires_cam(model, out.images, box, 1); }) ==
        "hires_cam: needs the model in eval mode and grad mode on");
  CHECK(test::error_of([&] { (void)box_class_logit(model, out.features, box, 2, {64, 96}); }) ==
        "box_class_logit: label 2 outside 0..1");
}

TEST_CASE("cuda: hires_cam on the GPU gives the CPU's maps") {
  if (test::setup_cuda_or_skip("hires_cam on CUDA")) return;
  manual_seed(23);
  MaskRCNN cpu_model(test::tiny_detector_config());
  MaskRCNN gpu_model(test::tiny_detector_config());
  gpu_model.load_state_dict(cpu_model.state_dict());
  gpu_model.to(test::gpu());
  const Tensor image = ops::mul(rand({1, 64, 96}), 0.8);
  // Boxes on the host, as the apps pass them: one on P2 and one on a coarser level.
  const Tensor boxes = from_vector<float>({8, 8, 40, 40, 30, 20, 94, 62}, {2, 4});
  std::vector<HiResCam> cams[2];
  for (MaskRCNN* model : {&cpu_model, &gpu_model}) {
    model->eval();
    ImageList images;
    {
      autograd::NoGradGuard no_grad;
      images = model->transform().forward({image}, nullptr, nullptr, model->device());
    }
    cams[model == &gpu_model] = hires_cams(*model, images, boxes, {1, 0});
  }
  for (size_t b = 0; b < 2; ++b) {
    CAPTURE(b);
    const HiResCam &on_cpu = cams[0][b], &on_gpu = cams[1][b];
    CHECK(on_gpu.stage == on_cpu.stage);
    CHECK(on_gpu.map.device() == kCPU);
    CHECK(on_gpu.contribution.device() == kCPU);
    // float32 sums of a few thousand terms on both, in other orders: 1e-4 of each quantity's scale.
    CHECK(std::abs(on_gpu.logit - on_cpu.logit) <= 1e-4 * std::max(1.0, std::abs(on_cpu.logit)));
    const double peak = ops::max(ops::abs(on_cpu.contribution)).item<float>();
    CHECK(peak > 0);
    CHECK(test::max_abs_diff(on_gpu.contribution, on_cpu.contribution) <= 1e-4 * peak);
    CHECK(test::max_abs_diff(on_gpu.map, on_cpu.map) <= 1e-4);  // maps are scaled to a peak of 1
  }
}
