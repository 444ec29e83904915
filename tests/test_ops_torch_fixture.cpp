// The vision ops against PyTorch 1.13 / torchvision 0.14 outputs and gradients in float32, from
// tests/fixtures/ops_fixture.safetensors (written by tests/fixtures/make_ops_fixture.py, read here
// with our own reader). Tolerance: max |ours - torch| <= 1e-5 * max |torch| per tensor; the only
// differences are float32 summation orders (im2col GEMM vs oneDNN, double vs float accumulators).
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "ops/boxes.h"
#include "ops/conv.h"
#include "ops/interpolate.h"
#include "ops/norm.h"
#include "ops/pool.h"
#include "ops/roi_align.h"
#include "tensor/safetensors.h"
#include "tests/helpers.h"

using namespace mrcnn;
using V = std::vector<Tensor>;

namespace {

const safetensors::File& fixture() {
  static const safetensors::File file = test::load_fixture("tests/fixtures/ops_fixture.safetensors");
  return file;
}

Tensor torch_ref(const std::string& name) { return test::fixture_tensor(fixture(), name); }

// max |a - b| / max |b|: the relative figure the tolerance applies to.
double relative_error(const Tensor& actual, const Tensor& expected) {
  REQUIRE(actual.sizes() == expected.sizes());
  const double scale = expected.numel() ? ops::max(ops::abs(expected)).item<double>() : 0.0;
  return expected.numel() ? test::max_abs_diff(actual, expected) / std::max(scale, 1e-30) : 0.0;
}

constexpr double kTolerance = 1e-5;

// MRCNN_FIXTURE_REPORT=1 prints every figure (for issue notes); the assertions do not depend on it.
void report(const std::string& what, double error) {
  if (std::getenv("MRCNN_FIXTURE_REPORT")) std::printf("%-40s %.3g\n", what.c_str(), error);
}

// Runs f on fresh leaves made from the fixture tensors "<case>.<input>", compares the output with
// "<case>.out" and the gradients of sum(out * "<case>.dout") with "<case>.d<grad_input>".
void check_case(const std::string& name, const std::vector<std::string>& inputs,
                const std::vector<std::string>& grad_inputs, const std::function<Tensor(const V&)>& f,
                const std::string& input_case = "") {
  CAPTURE(name);
  const std::string source = input_case.empty() ? name : input_case;
  V leaves;
  for (const std::string& input : inputs) {
    Tensor t = ops::clone(torch_ref(source + "." + input));
    bool wants_grad = false;
    for (const std::string& g : grad_inputs) wants_grad = wants_grad || g == input;
    leaves.push_back(wants_grad ? t.set_requires_grad(true) : t);
  }
  const Tensor out = f(leaves);
  const double forward_error = relative_error(out, torch_ref(name + ".out"));
  CAPTURE(forward_error);
  report(name + ".out", forward_error);
  CHECK(forward_error <= kTolerance);
  autograd::backward(ops::sum(ops::mul(out, torch_ref(name + ".dout"))));
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!leaves[i].requires_grad()) continue;
    const std::string grad_name = name + ".d" + inputs[i];
    const double grad_error = relative_error(leaves[i].grad(), torch_ref(grad_name));
    CAPTURE(grad_name);
    CAPTURE(grad_error);
    report(grad_name, grad_error);
    CHECK(grad_error <= kTolerance);
  }
}

}  // namespace

TEST_CASE("torch fixture: file and version") {
  CHECK(fixture().metadata.at("version") == "1");
  CHECK(fixture().metadata.at("torchvision").rfind("0.14", 0) == 0);
}

TEST_CASE("torch fixture: conv2d and conv_transpose2d") {
  const auto conv = [](const std::string& name, ops::Conv2dOptions o, bool bias) {
    check_case(name, bias ? std::vector<std::string>{"x", "w", "b"} : std::vector<std::string>{"x", "w"},
               bias ? std::vector<std::string>{"x", "w", "b"} : std::vector<std::string>{"x", "w"},
               [o, bias](const V& v) { return ops::conv2d(v[0], v[1], bias ? v[2] : Tensor(), o); });
  };
  conv("conv_3x3_s2", {2, 1, 1, 1}, true);
  conv("conv_groups_dilation", {1, 2, 2, 2}, true);
  conv("conv_1x1", {1, 0, 1, 1}, false);
  conv("conv_stem_7x7", {2, 3, 1, 1}, false);
  check_case("tconv_k2_s2", {"x", "w", "b"}, {"x", "w", "b"},
             [](const V& v) { return ops::conv_transpose2d(v[0], v[1], v[2], {2}); });
  check_case("tconv_k3_s2_op1", {"x", "w", "b"}, {"x", "w", "b"},
             [](const V& v) { return ops::conv_transpose2d(v[0], v[1], v[2], {2, 1, 1, 1, 2}); });
}

TEST_CASE("torch fixture: max_pool2d and interpolate") {
  check_case("pool_3x3_s2_p1", {"x"}, {"x"}, [](const V& v) { return ops::max_pool2d(v[0], {3, 2, 1}); });
  check_case("pool_1x1_s2", {"x"}, {"x"}, [](const V& v) { return ops::max_pool2d(v[0], {1, 2, 0}); });
  using ops::InterpolateMode;
  const std::vector<std::tuple<std::string, ops::Size2, InterpolateMode, bool>> cases = {
      {"nearest_up", {13, 7}, InterpolateMode::Nearest, false},
      {"nearest_2x", {12, 10}, InterpolateMode::Nearest, false},
      {"nearest_down", {4, 3}, InterpolateMode::Nearest, false},
      {"bilinear_up", {13, 7}, InterpolateMode::Bilinear, false},
      {"bilinear_down", {3, 4}, InterpolateMode::Bilinear, false},
      {"bilinear_aligned", {11, 9}, InterpolateMode::Bilinear, true}};
  for (const auto& [name, size, mode, aligned] : cases)
    check_case(name, {"x"}, {"x"}, [size = size, mode = mode, aligned = aligned](const V& v) {
      return ops::interpolate(v[0], size, mode, aligned);
    });
}

TEST_CASE("torch fixture: batch_norm, frozen_batch_norm, group_norm") {
  Tensor rm = ops::clone(torch_ref("bn_train.running_mean_before")), rv = ops::clone(torch_ref("bn_train.running_var_before"));
  check_case("bn_train", {"x", "w", "b"}, {"x", "w", "b"},
             [&](const V& v) { return ops::batch_norm(v[0], rm, rv, v[1], v[2], true, 0.1, 1e-5); });
  CHECK(relative_error(rm, torch_ref("bn_train.running_mean")) <= kTolerance);
  CHECK(relative_error(rv, torch_ref("bn_train.running_var")) <= kTolerance);
  check_case(
      "bn_eval", {"x", "w", "b"}, {"x", "w", "b"},
      [](const V& v) {
        return ops::batch_norm(v[0], torch_ref("bn_train.running_mean_before"), torch_ref("bn_train.running_var_before"), v[1], v[2],
                               false, 0.1, 1e-5);
      },
      "bn_train");
  check_case("frozen_bn", {"x", "weight", "bias", "running_mean", "running_var"}, {"x"},
             [](const V& v) { return ops::frozen_batch_norm(v[0], v[1], v[2], v[3], v[4]); });
  check_case("group_norm", {"x", "w", "b"}, {"x", "w", "b"},
             [](const V& v) { return ops::group_norm(v[0], 4, v[1], v[2], 1e-5); });
}

TEST_CASE("torch fixture: roi_align") {
  const Tensor rois = torch_ref("roi_align.rois");
  const std::vector<std::tuple<std::string, ops::Size2, int64_t, bool>> cases = {
      {"roi_align_7_s2", 7, 2, false},
      {"roi_align_14_adaptive", 14, 0, false},
      {"roi_align_5x3_aligned", {5, 3}, 2, true},
      {"roi_align_7_adaptive_aligned", 7, -1, true}};
  for (const auto& [name, size, ratio, aligned] : cases) {
    // The input is stored once as roi_align.features; its gradient per case as <case>.dfeatures.
    check_case(
        name, {"features"}, {"features"},
        [&, size = size, ratio = ratio, aligned = aligned](const V& v) {
          return ops::roi_align(v[0], rois, size, 0.5, ratio, aligned);
        },
        "roi_align");
  }
}

TEST_CASE("torch fixture: nms, batched_nms, box_iou") {
  const auto keep = [](const Tensor& t) { return to_vector<int64_t>(t); };
  CHECK(keep(ops::nms(torch_ref("nms.boxes"), torch_ref("nms.scores"), 0.5)) == keep(torch_ref("nms.keep")));
  const Tensor boxes = torch_ref("nms.boxes");
  CHECK(relative_error(ops::box_iou(ops::narrow(boxes, 0, 0, 50), ops::narrow(boxes, 0, 50, 70)), torch_ref("nms.iou")) <= kTolerance);
  for (const std::string name : {"batched_nms_offset", "batched_nms_per_class"}) {
    CAPTURE(name);
    CHECK(keep(ops::batched_nms(torch_ref(name + ".boxes"), torch_ref(name + ".scores"), torch_ref(name + ".idxs"), 0.4)) ==
          keep(torch_ref(name + ".keep")));
  }
}
