// Shared test helpers.
#include "tests/helpers.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <iostream>
#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include "cuda/context.h"
#include "maskrcnn/mask_rcnn.h"
#include "nn/checkpoint.h"
#include "tensor/random.h"

namespace mrcnn::test {

namespace {
bool rehearsal_requested() {
  const char* value = std::getenv("MRCNN_CUDA_REHEARSAL");
  return value && std::string(value) == "1";
}
}  // namespace

bool rehearsing() { return rehearsal_requested() && !cuda::is_available(); }

Device gpu() { return rehearsing() ? Device(kCPU) : Device(kCUDA); }

bool setup_cuda_or_skip(const std::string& what) {
  if (cuda::is_available()) {
    if (rehearsal_requested()) {
      // The real run of these cases is the plain ctest test; rehearsing on top would only repeat it.
      std::cout << "SKIPPED: rehearsal of " << what << ": a CUDA device is present, the case runs on it\n";
      return true;
    }
    cuda::set_fill_uninitialized(true);
    return false;
  }
  if (rehearsing()) {
    std::cout << "REHEARSAL: " << what << ": the CPU stands in for CUDA (" << cuda::unavailable_reason() << ")\n";
    return false;
  }
  std::cout << "SKIPPED: " << what << ": " << cuda::unavailable_reason() << "\n";
  MESSAGE("SKIPPED: " << what << ": " << cuda::unavailable_reason());
  return true;
}

bool setup_real_cuda_or_skip(const std::string& what) {
  if (rehearsal_requested() && !cuda::is_available()) {
    std::cout << "NOT REHEARSED: " << what << ": it tests CUDA itself\n";
    return true;
  }
  return setup_cuda_or_skip(what);
}

void expect_cuda_matches_cpu(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                             double tol) {
  auto run = [&](Device device) {
    std::vector<Tensor> in;
    for (const Tensor& x : inputs) {
      Tensor copy = ops::to(x.detach(), device);
      // A non-contiguous input stays non-contiguous on the device (same strides, through a transpose).
      if (!x.is_contiguous() && x.dim() >= 2) copy = ops::transpose(ops::contiguous(ops::transpose(copy, -1, -2)), -1, -2);
      in.push_back(x.requires_grad() ? copy.detach().set_requires_grad(true) : copy);
    }
    const Tensor out = f(in);
    std::vector<Tensor> results{ops::to(out.detach(), kCPU)};
    if (is_floating(out.dtype()) && out.requires_grad()) {
      Generator g(4242);
      const Tensor weights = ops::to(randn(out.sizes(), out.dtype(), kCPU, &g), device);
      autograd::backward(ops::sum(ops::mul(out, weights)));
      for (const Tensor& x : in)
        if (x.requires_grad()) results.push_back(ops::to(x.grad(), kCPU));
    }
    return results;
  };
  const std::vector<Tensor> cpu = run(kCPU), gpu = run(test::gpu());
  REQUIRE(cpu.size() == gpu.size());
  CHECK(cpu[0].sizes() == gpu[0].sizes());
  for (size_t i = 0; i < cpu.size(); ++i) {
    INFO("result " << i << " (0 = output, then input gradients)");
    const double diff = max_abs_diff(cpu[i], gpu[i]);
    CHECK(diff <= tol);  // also fails on NaN: an element the CUDA kernel never wrote
  }
}

void expect_cuda_f32_within_summation_bound(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                            const std::vector<Tensor>& inputs, int64_t terms) {
  // Results as float64 on the host: output, then the input gradients. `absolute`: f of |inputs|
  // with |R|, each element's sum of |term|.
  auto run = [&](DType dtype, Device device, bool absolute) {
    std::vector<Tensor> in;
    for (const Tensor& x : inputs) {
      Tensor value = ops::to(ops::to(x.detach(), kFloat32), kFloat64);
      if (absolute) value = ops::abs(value);
      in.push_back(ops::to(ops::to(value, dtype), device).set_requires_grad(true));
    }
    const Tensor out = f(in);
    Generator g(4242);
    Tensor weights = ops::to(randn(out.sizes(), kFloat32, kCPU, &g), kFloat64);
    if (absolute) weights = ops::abs(weights);
    autograd::backward(ops::sum(ops::mul(out, ops::to(ops::to(weights, dtype), device))));
    std::vector<Tensor> results{ops::contiguous(ops::to(ops::to(out.detach(), kCPU), kFloat64))};
    for (const Tensor& x : in) results.push_back(ops::contiguous(ops::to(ops::to(x.grad(), kCPU), kFloat64)));
    return results;
  };
  const std::vector<Tensor> exact = run(kFloat64, kCPU, false), magnitude = run(kFloat64, kCPU, true);
  const double n = static_cast<double>(terms + 2), u = std::ldexp(1.0, -24), gamma = n * u / (1 - n * u);
  for (const Device device : {Device(kCPU), gpu()}) {
    const std::vector<Tensor> single = run(kFloat32, device, false);
    REQUIRE(single.size() == exact.size());
    for (size_t i = 0; i < exact.size(); ++i) {
      INFO("float32 on " << (device == Device(kCPU) ? "the CPU" : "CUDA") << ", result " << i
                         << " (0 = output, then input gradients)");
      REQUIRE(single[i].sizes() == exact[i].sizes());
      const double *s = single[i].data<double>(), *e = exact[i].data<double>(), *m = magnitude[i].data<double>();
      int64_t outside = 0, first = -1;
      for (int64_t k = 0; k < exact[i].numel(); ++k)
        if (!(std::abs(s[k] - e[k]) <= gamma * m[k])) outside += 1, first = first < 0 ? k : first;  // NaN too
      INFO("first element outside: " << first << ", " << (first < 0 ? 0.0 : s[first]) << " vs " << (first < 0 ? 0.0 : e[first])
                                     << ", bound " << (first < 0 ? 0.0 : gamma * m[first]));
      CHECK(outside == 0);
    }
  }
}

void expect_cuda_gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs) {
  expect_gradcheck(
      [&](const std::vector<Tensor>& in) {
        std::vector<Tensor> on_device;
        for (const Tensor& x : in) on_device.push_back(ops::to(x, gpu()));
        return ops::to(f(on_device), kCPU);
      },
      inputs);
}

Tensor leaf(const Shape& shape, uint64_t seed, double scale, double shift) {
  Generator generator(seed);
  autograd::NoGradGuard no_grad;
  Tensor t = ops::add(ops::mul(randn(shape, kFloat64, kCPU, &generator), scale), shift);
  return t.set_requires_grad(true);
}

Tensor noncontiguous_leaf(const Shape& shape, uint64_t seed) {
  REQUIRE(shape.size() >= 2);
  Shape swapped = shape;
  std::swap(swapped[swapped.size() - 1], swapped[swapped.size() - 2]);
  Generator generator(seed);
  const Tensor storage = randn(swapped, kFloat64, kCPU, &generator);
  Shape strides = storage.strides();
  std::swap(strides[strides.size() - 1], strides[strides.size() - 2]);
  Tensor view = storage.as_strided(shape, strides, 0);
  REQUIRE(!view.is_contiguous());
  return view.set_requires_grad(true);
}

void expect_gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                      const autograd::GradcheckOptions& options) {
  const autograd::GradcheckResult result = autograd::gradcheck(f, inputs, options);
  INFO(result.message);
  CHECK(result.ok);
  // scripts/test.sh counts passed gradchecks across all test processes through this log (one short
  // O_APPEND write per check, atomic between the parallel ctest processes).
  // A rehearsal's gradchecks repeat CPU ones and are not counted.
  if (const char* log = std::getenv("MRCNN_GRADCHECK_LOG"); log && result.ok && !rehearsing()) {
    if (FILE* file = std::fopen(log, "a")) {
      std::fputs("ok\n", file);
      std::fclose(file);
    }
  }
}

std::vector<double> values(const Tensor& t) { return to_vector<double>(t); }

std::vector<int64_t> nearest_row_pairing(const Tensor& actual, const Tensor& expected) {
  REQUIRE(actual.sizes() == expected.sizes());
  REQUIRE(actual.dim() == 2);
  const auto a = values(actual), e = values(expected);
  const size_t rows = static_cast<size_t>(actual.size(0)), width = static_cast<size_t>(actual.size(1));
  std::vector<int64_t> pairing(rows, -1);
  std::vector<bool> taken(rows, false);
  for (size_t i = 0; i < rows; ++i) {
    double best = INFINITY;
    for (size_t j = 0; j < rows; ++j) {
      if (taken[j]) continue;
      double d = 0;
      for (size_t k = 0; k < width; ++k) d = std::max(d, std::abs(a[i * width + k] - e[j * width + k]));
      if (pairing[i] < 0 || d < best) best = d, pairing[i] = static_cast<int64_t>(j);
    }
    taken[static_cast<size_t>(pairing[i])] = true;
  }
  return pairing;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.sizes() == b.sizes());
  const auto va = values(a), vb = values(b);
  double worst = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    const double d = std::abs(va[i] - vb[i]);
    if (std::isnan(d)) return INFINITY;
    worst = std::max(worst, d);
  }
  return worst;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.sizes() != b.sizes() || a.dtype() != b.dtype()) return false;
  const Tensor ca = copy_as(a, a.dtype(), kCPU), cb = copy_as(b, b.dtype(), kCPU);
  return std::memcmp(ca.raw_data(), cb.raw_data(), static_cast<size_t>(ca.numel()) * dtype_size(ca.dtype())) == 0;
}

std::string source_path(const std::string& relative_path) {
  const char* env = std::getenv("MRCNN_SOURCE_DIR");
  return std::string(env ? env : MRCNN_TEST_SOURCE_DIR) + "/" + relative_path;
}

safetensors::File load_fixture(const std::string& relative_path) { return safetensors::load(source_path(relative_path)); }

Tensor fixture_tensor(const safetensors::File& file, const std::string& name) {
  const auto it = file.tensors.find(name);
  REQUIRE_MESSAGE(it != file.tensors.end(), "fixture has no tensor " << name);
  return it->second;
}

// ctest runs test cases in parallel processes: each gets its own log file.
std::filesystem::path scratch_root() {
  return std::filesystem::temp_directory_path() / ("mrcnn_test_" + std::to_string(getpid()));
}

std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = scratch_root() / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

Run run_mrcnn(const std::string& args) {
  const auto log = std::filesystem::temp_directory_path() / ("mrcnn_cli_test_" + std::to_string(getpid()) + ".log");
  const std::string command = std::string(MRCNN_BINARY) + " " + args + " > " + log.string() + " 2>&1";
  const int status = std::system(command.c_str());
  std::stringstream text;
  {
    std::ifstream in(log);
    text << in.rdbuf();
  }
  std::filesystem::remove(log);
  return {WEXITSTATUS(status), text.str()};
}

detection::Config small_maskrcnn_config(int64_t min_size, int64_t max_size) {
  detection::Config c;
  c.block = "basic";
  c.layers = {1, 1, 1, 1};
  c.norm = "gn";
  c.trainable_layers = 5;
  c.num_classes = 2;
  c.min_size = {min_size};
  c.max_size = max_size;
  c.in_channels = 1;
  c.image_mean = {0.5};
  c.image_std = {0.25};
  c.fpn_out_channels = 32;
  c.representation_size = 32;
  c.mask_layers = {32};
  c.mask_dim_reduced = 32;
  c.anchor_sizes = {{8}, {16}, {32}, {64}, {128}};
  return c;
}

detection::Config tiny_detector_config() {
  detection::Config c = small_maskrcnn_config(64, 96);
  c.box_score_thresh = 0.0;
  return c;
}

std::string save_tiny_detector(const std::filesystem::path& dir, uint64_t seed) {
  manual_seed(seed);
  detection::MaskRCNN model(tiny_detector_config());
  const std::string weights = (dir / "model.safetensors").string();
  nn::save_checkpoint(weights, nn::make_checkpoint(model, nullptr, detection::config_to_json(tiny_detector_config()).dump(), 0));
  return weights;
}

}  // namespace mrcnn::test
