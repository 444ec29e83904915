// Optimizers, clipping, schedules, the weight average and checkpoints. Expected optimizer values come from torch 1.13:
// p = [1, -2, 0.5] (float64), three steps with grads [.1, .2, -.3], [.4, -.1, .2], [-.2, .3, .1]:
//   torch.optim.SGD(lr=0.1[, momentum=0.9, weight_decay=1e-2, nesterov=True, dampening=0.5])
//   torch.optim.AdamW(lr=0.01, weight_decay=0.1)
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "nn/average.h"
#include "nn/checkpoint.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "tensor/parallel.h"
#include "tensor/safetensors.h"
#include "tests/helpers.h"

using namespace mrcnn;

namespace {

std::vector<double> run_three_steps(const std::function<std::unique_ptr<nn::Optimizer>(nn::NamedTensors)>& make) {
  Tensor p = from_vector(std::vector<double>{1.0, -2.0, 0.5}, {3});
  p.set_requires_grad(true);
  auto optimizer = make({{"p", p}});
  const std::vector<std::vector<double>> grads = {{0.1, 0.2, -0.3}, {0.4, -0.1, 0.2}, {-0.2, 0.3, 0.1}};
  for (const auto& g : grads) {
    p.set_grad(from_vector(g, {3}));
    optimizer->step();
  }
  CHECK(optimizer->steps() == 3);
  return to_vector<double>(p);
}

void expect_values(const std::vector<double>& actual, const std::vector<double>& expected) {
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < actual.size(); ++i) CHECK(actual[i] == doctest::Approx(expected[i]).epsilon(1e-12));
}

}  // namespace

TEST_CASE("SGD matches torch.optim.SGD: plain, momentum + weight decay, nesterov, dampening") {
  auto sgd = [](nn::SGDOptions o) {
    return [o](nn::NamedTensors p) { return std::make_unique<nn::SGD>(std::move(p), o); };
  };
  expect_values(run_three_steps(sgd({0.1, 0, 0, 0, false})), {0.97, -2.04, 0.5});
  expect_values(run_three_steps(sgd({0.1, 0.9, 0, 1e-2, false})), {0.911372789, -2.053923618, 0.5304034295});
  expect_values(run_three_steps(sgd({0.1, 0.9, 0, 1e-2, true})), {0.887422212551, -2.082440079462, 0.5257159163405});
  expect_values(run_three_steps(sgd({0.1, 0.9, 0.5, 0, false})), {0.9449, -2.0597, 0.5573});
  CHECK(test::error_of([] { nn::SGD({}, {0.1, 0.0, 0, 0, true}); }) == "SGD: nesterov needs momentum > 0 and dampening 0");
}

TEST_CASE("AdamW matches torch.optim.AdamW") {
  expect_values(run_three_steps([](nn::NamedTensors p) {
                  return std::make_unique<nn::AdamW>(std::move(p), nn::AdamWOptions{0.01, 0.9, 0.999, 1e-8, 0.1});
                }),
                {0.9748270752348335, -2.012999915898297, 0.509293071083868});
}

TEST_CASE("clip_grad_norm scales to max_norm like torch.nn.utils.clip_grad_norm_") {
  Tensor p = zeros({2}, kFloat64).set_requires_grad(true), q = zeros({1}, kFloat64).set_requires_grad(true);
  p.set_grad(from_vector(std::vector<double>{3, 4}, {2}));
  q.set_grad(from_vector(std::vector<double>{12}, {1}));
  CHECK(nn::clip_grad_norm({p, q}, 6.5) == doctest::Approx(13.0));
  expect_values(to_vector<double>(p.grad()), {1.4999998846153937, 1.9999998461538582});
  expect_values(to_vector<double>(q.grad()), {5.999999538461575});
  // Below the limit nothing changes.
  CHECK(nn::clip_grad_norm({p, q}, 100) == doctest::Approx(6.5).epsilon(1e-6));
  expect_values(to_vector<double>(q.grad()), {5.999999538461575});
}

TEST_CASE("clip_grad_norm: large float32 gradients in pieces, the norm of float64 and the same for any thread count") {
  // 200,000 + 70,000 elements (several 65,536-element pieces each), a non-contiguous gradient and a
  // parameter without one.
  Generator g(12);
  const std::vector<Shape> shapes{{500, 400}, {70000}, {3, 5}};
  double reference = 0;
  std::vector<std::vector<float>> values;
  for (const Shape& shape : shapes) {
    values.push_back(to_vector<float>(randn(shape, kFloat32, kCPU, &g)));
    for (const float v : values.back()) reference += static_cast<double>(v) * v;
  }
  reference = std::sqrt(reference);
  const auto fresh = [&] {
    std::vector<Tensor> params;
    for (size_t k = 0; k < shapes.size(); ++k) {
      Tensor p = zeros(shapes[k]).set_requires_grad(true);
      p.set_grad(from_vector(values[k], shapes[k]));
      params.push_back(p);
    }
    Tensor transposed = zeros({7, 6}).set_requires_grad(true);  // its gradient is a transposed view
    transposed.set_grad(ops::transpose(ones({6, 7}), 0, 1));
    params.push_back(transposed);
    params.push_back(zeros({4}).set_requires_grad(true));  // no gradient
    return params;
  };
  reference = std::sqrt(reference * reference + 42.0);
  double norms[2];
  std::vector<float> clipped[2];
  for (const int threads : {1, 2}) {
    const test::ThreadCount thread_count(threads);
    const auto params = fresh();
    norms[threads - 1] = nn::clip_grad_norm(params, 10.0);
    clipped[threads - 1] = to_vector<float>(params[0].grad());
    const float coefficient = static_cast<float>(10.0 / (norms[threads - 1] + 1e-6));
    CHECK(clipped[threads - 1][12345] == values[0][12345] * coefficient);
    CHECK(to_vector<float>(params[3].grad())[0] == coefficient);
    CHECK(!params[4].grad().defined());
  }
  CHECK(norms[0] == doctest::Approx(reference).epsilon(1e-12));
  CHECK(norms[0] == norms[1]);  // bit for bit
  CHECK(clipped[0] == clipped[1]);
}

TEST_CASE("cuda: clip_grad_norm on GPU gradients equals the CPU's") {
  if (test::setup_cuda_or_skip("clip_grad_norm on CUDA")) return;
  // Three float32 gradients: the norm (float64 sums of float32 squares, one download) and the scaled
  // gradients agree with the CPU's to float32 rounding of O(10) values.
  Generator g(5);
  std::vector<Tensor> cpu, gpu;
  for (const Shape& shape : {Shape{7, 3}, Shape{11}, Shape{2, 5, 5}}) {
    const Tensor grad = ops::mul(randn(shape, kFloat32, kCPU, &g), 3.0);
    cpu.push_back(zeros(shape).set_requires_grad(true));
    gpu.push_back(zeros(shape, kFloat32, test::gpu()).set_requires_grad(true));
    cpu.back().set_grad(grad);
    gpu.back().set_grad(ops::to(grad, test::gpu()));
  }
  const double norm_cpu = nn::clip_grad_norm(cpu, 1.0), norm_gpu = nn::clip_grad_norm(gpu, 1.0);
  CHECK(norm_gpu == doctest::Approx(norm_cpu).epsilon(1e-6));
  CHECK(norm_cpu > 1.0);
  for (size_t i = 0; i < cpu.size(); ++i) CHECK(test::max_abs_diff(ops::to(gpu[i].grad(), kCPU), cpu[i].grad()) < 1e-6);
}

TEST_CASE("LR schedules: linear warmup, multistep, cosine") {
  nn::LRSchedule s;
  s.base_lr = 0.02;
  s.warmup_iters = 100;
  s.warmup_factor = 0.001;
  s.kind = nn::LRSchedule::Kind::MultiStep;
  s.milestones = {1000, 1500};
  CHECK(s.lr_at(0) == doctest::Approx(0.02 * 0.001));
  CHECK(s.lr_at(50) == doctest::Approx(0.02 * (0.001 * 0.5 + 0.5)));
  CHECK(s.lr_at(100) == doctest::Approx(0.02));
  CHECK(s.lr_at(999) == doctest::Approx(0.02));
  CHECK(s.lr_at(1000) == doctest::Approx(0.002));
  CHECK(s.lr_at(1600) == doctest::Approx(0.0002));
  s.kind = nn::LRSchedule::Kind::Cosine;
  s.warmup_iters = 0;
  s.total_iters = 200;
  s.min_lr = 0.001;
  CHECK(s.lr_at(0) == doctest::Approx(0.02));
  CHECK(s.lr_at(100) == doctest::Approx(0.001 + 0.019 * 0.5));
  CHECK(s.lr_at(200) == doctest::Approx(0.001));
  CHECK(s.lr_at(300) == doctest::Approx(0.001));
}

TEST_CASE("WeightAverage: the decay warms up, the average follows the lerp, apply and restore swap exactly") {
  Tensor w = from_vector<double>({1.0, -2.0}, {2});
  w.set_requires_grad(true);
  nn::WeightAverage average({{"w", w}}, 0.9);
  // min(0.9, (1 + n) / (10 + n)): 0.1, 2/11, 3/12, ... and 0.9 from n = 80 on.
  CHECK(average.decay_at(0) == 0.1);
  CHECK(average.decay_at(1) == 2.0 / 11.0);
  CHECK(average.decay_at(79) == 80.0 / 89.0);
  CHECK(average.decay_at(80) == 0.9);
  CHECK(average.decay_at(100000) == 0.9);
  // Three "steps": the weights move, the average lerps towards them with weight 1 - d(n).
  std::vector<double> expected = {1.0, -2.0};
  const std::vector<std::vector<double>> steps = {{2.0, -1.0}, {4.0, 0.0}, {3.0, 5.0}};
  for (size_t n = 0; n < steps.size(); ++n) {
    copy_into(w, from_vector<double>(steps[n], {2}));
    average.update();
    const double weight = 1 - average.decay_at(static_cast<int64_t>(n));
    for (size_t i = 0; i < 2; ++i) expected[i] += weight * (steps[n][i] - expected[i]);
  }
  CHECK(average.updates() == 3);
  const auto training = average.snapshot();
  CHECK(test::values(training.at("w")) == std::vector<double>{3.0, 5.0});
  average.apply();
  CHECK(test::values(w) == expected);
  average.restore(training);
  CHECK(test::values(w) == std::vector<double>{3.0, 5.0});
  // The snapshot is a copy, not a view: applying again does not change it.
  average.apply();
  CHECK(test::values(training.at("w")) == std::vector<double>{3.0, 5.0});

  CHECK(test::error_of([&] { average.restore({}, "x.safetensors (training weights)"); }) ==
        "x.safetensors (training weights): no tensor w");
  CHECK(test::error_of([&] { average.restore({{"w", zeros({3}, kFloat64)}}); }) ==
        "weights: w has shape [3] but the model [2]");
  CHECK(test::error_of([&] { nn::WeightAverage({{"w", w}}, 1.0); }) == "weight average: the decay must be in (0, 1), got 1");
  CHECK(test::error_of([&] { nn::WeightAverage({{"i", zeros({2}, kInt64)}}, 0.5); }) ==
        "weight average: i must be a contiguous floating tensor");
}

TEST_CASE("checkpoint: model, optimizer state, step, RNG and config round-trip exactly") {
  const auto dir = test::scratch_dir("mrcnn_test_checkpoint");
  const std::string path = (dir / "ckpt.safetensors").string();
  nn::Linear layer(3, 2);
  nn::SGD sgd(layer.named_parameters(), {0.1, 0.9, 0, 1e-4, false});
  layer.weight.set_grad(ones({2, 3}));
  layer.bias.set_grad(ones({2}));
  sgd.step();
  Generator g(42);
  (void)rand({5}, kFloat32, kCPU, &g);
  nn::save_checkpoint(path, nn::make_checkpoint(layer, &sgd, "{\"num_classes\": 2}", 17, {{"sampler", &g}}));
  CHECK(!std::filesystem::exists(path + ".tmp"));

  const auto loaded = nn::load_checkpoint(path);
  CHECK(loaded.step == 17);
  CHECK(loaded.config_json == "{\"num_classes\": 2}");
  CHECK(loaded.model.size() == 2);
  CHECK(test::bitwise_equal(loaded.model.at("weight"), layer.weight));
  nn::Linear restored(3, 2);
  restored.load_state_dict(loaded.model);
  CHECK(test::bitwise_equal(restored.weight, layer.weight));
  nn::SGD restored_sgd(restored.named_parameters(), {0.1, 0.9, 0, 1e-4, false});
  restored_sgd.load_state_dict(loaded.optimizer);
  CHECK(restored_sgd.steps() == 1);
  Generator h(0);
  nn::restore_generators(loaded, {{"sampler", &h}});
  CHECK(h.seed() == 42);
  CHECK(h.offset() == g.offset());
  // One more identical step on both gives identical weights (the momentum buffer came back).
  for (auto* l : {&layer, &restored}) l->weight.set_grad(full({2, 3}, 0.5)), l->bias.set_grad(full({2}, 0.5));
  sgd.step();
  restored_sgd.step();
  CHECK(test::bitwise_equal(restored.weight, layer.weight));
  CHECK(test::bitwise_equal(restored.bias, layer.bias));

  // Shape mismatch and unknown names are clear errors.
  nn::Linear wider(4, 2);
  CHECK(test::error_of([&] { wider.load_state_dict(loaded.model); }) ==
        "load_state_dict: weight has shape [2, 3] in the checkpoint but [2, 4] in the model");
  auto extra = loaded.model;
  extra["head.weight"] = zeros({1});
  extra.erase("bias");
  CHECK(test::error_of([&] { restored.load_state_dict(extra); }) ==
        "load_state_dict: 1 missing (bias); 1 unexpected (head.weight)");
  auto bad_state = loaded.optimizer;
  bad_state["nothing.momentum_buffer"] = zeros({2});
  CHECK(test::error_of([&] { restored_sgd.load_state_dict(bad_state); }) ==
        "optimizer state: nothing.momentum_buffer names no trainable parameter");
  // Generator states out of uint64's range (a float cast to an integer would be undefined behaviour).
  auto hostile = safetensors::load(path);
  hostile.metadata["rng"] = R"({"sampler": [1e30, 0]})";
  safetensors::save((dir / "hostile.safetensors").string(), hostile);
  CHECK(test::error_of([&] { nn::load_checkpoint((dir / "hostile.safetensors").string()); }) ==
        (dir / "hostile.safetensors").string() +
            ": malformed checkpoint metadata (step/rng): generator sampler seed must be a non-negative integer in range, got 1e+30");
  hostile.metadata["rng"] = R"({"sampler": [42, -1]})";
  safetensors::save((dir / "hostile.safetensors").string(), hostile);
  CHECK(test::error_of([&] { nn::load_checkpoint((dir / "hostile.safetensors").string()); }) ==
        (dir / "hostile.safetensors").string() +
            ": malformed checkpoint metadata (step/rng): generator sampler offset must be a non-negative integer in range, got -1");
  // The weights training steps, beside an averaged model, come back under their own names.
  auto with_training = nn::make_checkpoint(layer, &sgd, "", 3);
  with_training.training_weights = {{"weight", full({2, 3}, 0.25)}};
  nn::save_checkpoint((dir / "averaged.safetensors").string(), with_training);
  const auto averaged = nn::load_checkpoint((dir / "averaged.safetensors").string());
  CHECK(averaged.model.size() == 2);
  REQUIRE(averaged.training_weights.size() == 1);
  CHECK(test::bitwise_equal(averaged.training_weights.at("weight"), full({2, 3}, 0.25)));
  // For predicting, only the model and the metadata are read.
  const auto model_only = nn::load_checkpoint((dir / "averaged.safetensors").string(), nn::CheckpointParts::ModelOnly);
  REQUIRE(model_only.model.size() == 2);
  for (const auto& [name, t] : averaged.model) CHECK(test::bitwise_equal(model_only.model.at(name), t));
  CHECK(model_only.optimizer.empty());
  CHECK(model_only.training_weights.empty());
  CHECK(model_only.step == 3);
  CHECK(averaged.optimizer.size() == 3);  // two momentum buffers and the step count
  auto colliding = with_training;
  colliding.model["training.weight"] = zeros({1});
  CHECK(test::error_of([&] { nn::save_checkpoint((dir / "bad.safetensors").string(), colliding); }) ==
        "checkpoint: model tensor name training.weight collides with the optimizer. or training. prefix");
  std::ofstream(dir / "garbage.safetensors") << "not a checkpoint";
  CHECK(test::error_of([&] { nn::load_checkpoint((dir / "garbage.safetensors").string()); }).find("garbage.safetensors") !=
        std::string::npos);
  std::filesystem::remove_all(dir);
}
