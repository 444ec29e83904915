// `mrcnn bench`: median train-step (forward, backward, SGD update) and inference times of a model
// built from a config with random weights, on a synthetic batch, plus the process's peak RSS.
// bench/model_vs_torch.py runs the same work in torchvision and prints the ratios.
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <sstream>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "autograd/engine.h"
#include "cuda/allocator.h"
#include "cuda/context.h"
#include "cuda/conv.h"
#include "cuda/linalg.h"
#include "bench/timing.h"
#include "maskrcnn/image_io.h"
#include "maskrcnn/mask_rcnn.h"
#include "maskrcnn/model_io.h"
#include "maskrcnn/profile.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "ops/conv_profile.h"
#include "ops/fma_peak.h"
#include "ops/ops.h"
#include "tensor/flop_count.h"
#include "tensor/parallel.h"
#include "tensor/storage.h"

namespace mrcnn::apps {

using namespace detection;

namespace {

std::pair<int64_t, int64_t> parse_size(const std::string& text) {
  int64_t h = 0, w = 0;
  char x = 0;
  std::istringstream in(text);
  check(static_cast<bool>(in >> h >> x >> w) && x == 'x' && h > 0 && w > 0 && in.peek() == EOF, "--size ", text,
        ": expected HxW, e.g. 512x512");
  // The cap every input image has (a bigger one would fail on memory, naming nothing).
  check(h <= kMaxImagePixels / w, "--size ", text, ": more than the ", kMaxImagePixels / 1000000,
        " megapixels an image may have");
  return {h, w};
}

// One image: a smooth deterministic texture (the same formula as bench/model_vs_torch.py, so both
// frameworks see the same pixels and propose the same boxes) plus a bright ellipse, which is the target.
std::pair<Tensor, Target> synthetic_sample(int64_t channels, int64_t h, int64_t w, int64_t index) {
  Tensor image = empty({channels, h, w});
  float* px = image.data<float>();
  std::vector<uint8_t> mask(static_cast<size_t>(h * w));
  const double cy = h * 0.45, cx = w * 0.55, ry = h * 0.15, rx = w * 0.12;
  const double k = static_cast<double>(index);
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        const double d = (y - cy) * (y - cy) / (ry * ry) + (x - cx) * (x - cx) / (rx * rx);
        mask[y * w + x] = d <= 1;
        const double texture = 0.15 + 0.15 * std::sin(0.37 * x + 0.61 * y + 1.3 * c + 2.1 * k) * std::cos(0.23 * x - 0.41 * y + k);
        px[(c * h + y) * w + x] = static_cast<float>(texture + (d <= 1 ? 0.6 : 0.0));
      }
  Target t{from_vector(std::vector<float>{static_cast<float>(cx - rx), static_cast<float>(cy - ry),
                                          static_cast<float>(cx + rx), static_cast<float>(cy + ry)},
                       {1, 4}),
           from_vector(std::vector<int64_t>{1}, {1}), from_vector(mask, {1, h, w})};
  return {image, t};
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

// GFLOP/s of `flops` done in `ms`, and the share of the measured FMA peak (peak_gflops 0: none measured).
std::string rate(int64_t flops, double ms, double peak_gflops) {
  if (flops <= 0 || ms <= 0) return "";
  const double gflops = static_cast<double>(flops) / ms * 1e-6;
  char text[64];
  if (peak_gflops > 0) std::snprintf(text, sizeof text, "%.1f GFLOP/s = %.1f%% of peak", gflops, 100 * gflops / peak_gflops);
  else std::snprintf(text, sizeof text, "%.1f GFLOP/s", gflops);
  return text;
}

// The rate as the last column of a table row: empty, or two spaces and the rate.
std::string rate_column(int64_t flops, double ms, double peak_gflops) {
  const std::string r = rate(flops, ms, peak_gflops);
  return r.empty() ? r : "  " + r;
}

// The ops that took most of backward's time, then the rest as one line; per pass. Convolutions and
// matrix products also show the rate of their arithmetic.
void print_backward_profile(const std::vector<autograd::OpTime>& ops, int passes, double peak_gflops) {
  double total = 0;
  for (const auto& op : ops) total += op.ms;
  std::printf("backward by op (mean of %d, ms; calls per pass; each op waited for, so the sum exceeds the stage):\n", passes);
  const size_t shown = std::min<size_t>(ops.size(), 16);
  double rest = 0;
  int64_t rest_calls = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (i < shown) {
      std::printf("  %-36s %8.2f %6lld  %4.1f%%%s\n", ops[i].op.c_str(), ops[i].ms / passes,
                  static_cast<long long>(ops[i].calls / passes), total > 0 ? 100 * ops[i].ms / total : 0.0,
                  rate_column(ops[i].flops, ops[i].ms, peak_gflops).c_str());
    } else {
      rest += ops[i].ms;
      rest_calls += ops[i].calls;
    }
  }
  if (ops.size() > shown)
    std::printf("  %-36s %8.2f %6lld  %4.1f%%\n", str_cat("(", ops.size() - shown, " other ops)").c_str(), rest / passes,
                static_cast<long long>(rest_calls / passes), total > 0 ? 100 * rest / total : 0.0);
  std::printf("  %-36s %8.2f\n", "total", total / passes);
}

// The convolution calls of a train step (forward and backward) that took most time, per pass, each
// with its arithmetic rate and the kernel that ran; then the rest as one line.
void print_conv_profile(const std::vector<ops::ConvCallRecord>& calls, int passes, double peak_gflops) {
  double total = 0;
  for (const auto& c : calls) total += c.ms;
  std::printf("train step convolutions by call (mean of %d, ms; calls per pass; share of the convolutions' time; rate; "
              "op, pass, input * weight, kernel):\n",
              passes);
  const size_t shown = std::min<size_t>(calls.size(), 24);
  double rest = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    const ops::ConvCallRecord& c = calls[i];
    if (i >= shown) {
      rest += c.ms;
      continue;
    }
    std::printf("  %8.2f %4lld %5.1f%%%s  %s %s %s: %s\n", c.ms / passes, static_cast<long long>(c.calls / passes),
                total > 0 ? 100 * c.ms / total : 0.0, rate_column(c.flops, c.ms, peak_gflops).c_str(), c.op.c_str(),
                c.pass.c_str(), c.shape.c_str(), c.route.c_str());
  }
  if (calls.size() > shown)
    std::printf("  %8.2f      %5.1f%%  (%zu other kinds of call)\n", rest / passes, total > 0 ? 100 * rest / total : 0.0,
                calls.size() - shown);
  std::printf("  %8.2f  total\n", total / passes);
}

// --allocation-trace: the CPU tensors' allocations and releases in order ("+ id bytes", "- id bytes"),
// with "phase NAME" lines between the parts of the run. The ids are Storage addresses: unique while
// the tensor lives. Kept in memory and written at the end, so writing does not slow the steps.
class AllocationTrace {
 public:
  explicit AllocationTrace(const std::string& path) : path_(path) {
    if (path_.empty()) return;
    lines_.clear();
    lines_.push_back("# mrcnn bench allocation trace: + id bytes (made), - id bytes (freed), phase NAME");
    set_host_allocation_observer(&record);
    phase("construction");
  }
  ~AllocationTrace() {
    if (!path_.empty()) set_host_allocation_observer(nullptr);
  }
  AllocationTrace(const AllocationTrace&) = delete;
  AllocationTrace& operator=(const AllocationTrace&) = delete;
  void phase(const char* name) {
    if (path_.empty()) return;
    std::lock_guard<std::mutex> lock(mutex_);
    lines_.push_back(str_cat("phase ", name));
  }
  void write() {
    if (path_.empty()) return;
    set_host_allocation_observer(nullptr);
    std::string text;
    for (const std::string& line : lines_) text += line + "\n";
    write_file_atomically(path_, text);
    std::fprintf(stderr, "bench: allocation trace (%zu lines) written to %s\n", lines_.size(), path_.c_str());
  }

 private:
  static void record(const void* storage, size_t nbytes, bool made) {
    std::lock_guard<std::mutex> lock(mutex_);
    lines_.push_back(str_cat(made ? "+ " : "- ", reinterpret_cast<uintptr_t>(storage), ' ', nbytes));
  }
  std::string path_;
  static inline std::mutex mutex_;
  static inline std::vector<std::string> lines_;
};

}  // namespace

int bench(const BenchOptions& options) {
  const Device device = model_device(options.device);
  check(options.batch > 0 && options.steps > 0, "bench: --batch and --steps must be positive");
  const Config config = load_config(options.config);
  const auto [h, w] = parse_size(options.size);
  check(options.allocation_trace.empty() || !device.is_cuda(), "bench: --allocation-trace records CPU tensors; leave out --device");
  for (const std::string& output : {options.json_out, options.allocation_trace})
    if (!output.empty()) check_output_file(output);
  AllocationTrace trace(options.allocation_trace);
  manual_seed(config.seed);
  const std::unique_ptr<MaskRCNN> built = build_model(config, options.config);
  MaskRCNN& model = *built;
  if (!options.weights.empty()) {
    // Given weights (e.g. the very ones torchvision runs, from bench/model_vs_torch.py) make the
    // work identical on both sides: the same proposals and detections, hence the same head costs.
    try {
      model.load_state_dict(nn::load_checkpoint(options.weights, nn::CheckpointParts::ModelOnly).model);
    } catch (const Error& e) {
      throw Error(str_cat(options.weights, ": does not fit the config: ", e.what()));
    }
  }
  model.to(device);
  // Inference is timed as one forward per image, comparable with PyTorch's: a config's flip_test
  // (two forwards per image) does not apply here.
  model.set_flip_test(false);
  std::vector<Tensor> images;
  std::vector<Target> targets;
  for (int64_t i = 0; i < options.batch; ++i) {
    auto [image, target] = synthetic_sample(config.in_channels, h, w, i);
    // The pixels are on the model's device before the clock starts, as bench/model_vs_torch.py puts
    // PyTorch's there: both time the step, not the upload a data loader would overlap with the
    // previous step. (Targets stay on the host: matching and sampling run there.)
    images.push_back(ops::to(image, device));
    targets.push_back(target);
  }
  std::vector<std::pair<std::string, Tensor>> trainable;
  for (auto& [name, p] : model.named_parameters())
    if (p.requires_grad()) trainable.emplace_back(name, p);
  // lr 0: the update arithmetic runs in full but the weights stay put, so every timed step does the
  // same work (a random-init model trained at a real lr diverges within steps and then proposes nothing).
  nn::SGD sgd(trainable, {0.0, 0.9, 0, 1e-4, false});
  std::fprintf(stderr, "bench: %s, %s, batch %lld, %d threads\n", options.config.c_str(), options.size.c_str(),
               static_cast<long long>(options.batch), num_threads());

  model.train();
  int64_t train_calls = 0, infer_calls = 0;  // the arithmetic per step is the count over the calls
  const auto train_step = [&] {
    ++train_calls;
    sgd.zero_grad();
    const auto out = model.forward(images, &targets);
    {
      const Stage stage("backward");
      autograd::backward(total_loss(out.losses));
    }
    {
      const Stage stage("optimizer step");
      sgd.step();
    }
    cuda::synchronize();  // GPU work is queued: time it to the end (no-op on the CPU)
  };
  model.eval();
  const auto infer_step = [&] {
    ++infer_calls;
    autograd::NoGradGuard no_grad;
    (void)model.forward(images);
    cuda::synchronize();
  };
  const int steps = static_cast<int>(options.steps);
  const bench::Repeats repeats{steps, 0.0, steps};
  // Peak bytes held by tensors on the model's device (the caching allocators' reserves excluded).
  const auto reset_peak = [&] { device.is_cuda() ? cuda::reset_peak_memory() : reset_host_peak_memory(); };
  const auto peak_mb = [&] {
    return static_cast<double>(device.is_cuda() ? cuda::memory_stats().peak_in_use : host_memory_stats().peak_in_use) / (1 << 20);
  };
  // The CUDA allocator's blocks are rounded up to 512 B; the bytes as requested are what PyTorch's
  // max_memory_allocated counts. (The host's count is as requested.)
  const auto requested_peak_mb = [&] {
    return static_cast<double>(device.is_cuda() ? cuda::memory_stats().peak_requested : host_memory_stats().peak_in_use) / (1 << 20);
  };
  // What the process holds from the driver, free blocks of its cache included (PyTorch's
  // max_memory_reserved); CUDA only.
  const auto reserved_peak_mb = [&] { return static_cast<double>(cuda::memory_stats().peak_reserved) / (1 << 20); };
  model.train();
  reset_peak();
  trace.phase("train");
  int64_t flops_before = flops_counted();
  for (int64_t i = 1; i < options.warmup; ++i) train_step();  // median_seconds adds one more
  const double train_ms = 1e3 * bench::median_seconds(train_step, repeats);
  const int64_t train_flops = (flops_counted() - flops_before) / std::max<int64_t>(train_calls, 1);
  const double train_tensor_mb = peak_mb(), train_requested_mb = requested_peak_mb(), train_reserved_mb = reserved_peak_mb();
  model.eval();
  reset_peak();
  trace.phase("inference");
  flops_before = flops_counted();
  for (int64_t i = 1; i < options.warmup; ++i) infer_step();
  const double infer_ms = 1e3 * bench::median_seconds(infer_step, repeats);
  const int64_t infer_flops = (flops_counted() - flops_before) / std::max<int64_t>(infer_calls, 1);
  trace.write();
  const double infer_tensor_mb = peak_mb(), infer_requested_mb = requested_peak_mb(), infer_reserved_mb = reserved_peak_mb();
  const double rss = peak_rss_mb();
  std::printf("train step %.1f ms, inference %.1f ms (median of %lld), peak RSS %.0f MB\n", train_ms, infer_ms,
              static_cast<long long>(options.steps), rss);
  if (device.is_cuda()) {
    std::printf("peak GPU memory held by tensors: train %.0f MB (%.0f MB as requested), inference %.0f MB (%.0f MB) (%s)\n",
                train_tensor_mb, train_requested_mb, infer_tensor_mb, infer_requested_mb, cuda::device_name(device.index).c_str());
    std::printf("peak GPU memory reserved from the driver: train %.0f MB, inference %.0f MB\n", train_reserved_mb,
                infer_reserved_mb);
  } else
    std::printf("peak memory held by tensors: train %.0f MB, inference %.0f MB\n", train_tensor_mb, infer_tensor_mb);
  // Measured after the steps (on the CPU with as many threads as they ran): the ceiling their
  // arithmetic runs under.
  double peak_gflops = 0;
  std::string peak_line;
  if (device.is_cuda()) {
    const cuda::GpuFmaPeak peak = cuda::measure_fma_peak();
    peak_gflops = peak.gflops;
    peak_line = str_cat("GPU float32 FMA peak, measured: ", static_cast<int64_t>(peak.gflops), " GFLOP/s (", peak.multiprocessors,
                        " SMs at up to ", peak.max_clock_ghz, " GHz)",
                        cuda::allow_tf32() ? "; --tf32 products run on tensor cores, above it" : "");
  } else {
    const cpu::FmaPeak peak = cpu::measure_fma_peak(num_threads());
    peak_gflops = peak.gflops;
    if (peak.gflops > 0)
      peak_line = str_cat("CPU FMA peak, measured: ", static_cast<int64_t>(peak.gflops), " GFLOP/s on ", peak.threads,
                          " threads (", peak.vector_floats, "-float vectors)");
  }
  std::printf("arithmetic of convolutions and matrix products: train step %.1f GFLOP (%s), inference %.1f GFLOP (%s)\n",
              static_cast<double>(train_flops) * 1e-9, rate(train_flops, train_ms, peak_gflops).c_str(),
              static_cast<double>(infer_flops) * 1e-9, rate(infer_flops, infer_ms, peak_gflops).c_str());
  if (!peak_line.empty()) std::printf("%s\n", peak_line.c_str());
  if (options.profile) {
    // Separate, untimed passes: the stage timers wait for the GPU at every boundary.
    set_profiling(true, device);
    const int passes = 3;
    for (const bool training : {true, false}) {
      model.train(training);
      reset_stage_records();
      cuda::reset_conv_workspace_record();
      for (int i = 0; i < passes; ++i) training ? train_step() : infer_step();
      // Memory: the most held by tensors at any moment in the stage (the step's peak is the largest
      // of these), and the net change the stage leaves (what later stages, or backward, keep).
      std::printf("%s stages (mean of %d; ms, then %s memory held by tensors, MB: peak in the stage, change it leaves; "
                  "the rate of the stage's convolutions and products):\n",
                  training ? "train step" : "inference", passes, device.is_cuda() ? "GPU" : "host");
      for (const StageRecord& r : stage_records())
        std::printf("  %-36s %8.2f %9.0f %+9.1f%s\n", r.name.c_str(), r.ms / passes, r.peak_mb, r.held_change_mb / passes,
                    rate_column(r.flops, r.ms, peak_gflops).c_str());
      if (device.is_cuda()) {
        const cuda::ConvWorkspaceRecord largest = cuda::largest_conv_workspace();
        std::printf("  largest cuDNN workspace: %.1f MB (%s)\n", static_cast<double>(largest.bytes) / (1 << 20),
                    largest.convolution.c_str());
      }
    }
    set_profiling(false);
    // A third set of passes: timing each backward op adds a wait per op, which would skew the stages.
    model.train();
    autograd::reset_backward_profile();
    autograd::set_backward_profiling(true);
    ops::reset_conv_profile();
    ops::set_conv_profiling(true);
    for (int i = 0; i < passes; ++i) train_step();
    ops::set_conv_profiling(false);
    autograd::set_backward_profiling(false);
    print_backward_profile(autograd::backward_profile(), passes, peak_gflops);
    print_conv_profile(ops::conv_profile(), passes, peak_gflops);
    if (device.is_cuda()) {
      // Every download is a point where the host waits for the GPU to drain its queue.
      for (const bool training : {true, false}) {
        model.train(training);
        cuda::reset_transfer_stats();
        training ? train_step() : infer_step();
        const cuda::TransferStats t = cuda::transfer_stats();
        std::printf("%s: %lld downloads (%.1f KB; the host waits for the GPU at each: %.2f ms), %lld uploads (%.1f KB; "
                    "waiting for staging space: %.2f ms)\n",
                    training ? "host<->GPU copies per train step" : "host<->GPU copies per inference",
                    static_cast<long long>(t.downloads), static_cast<double>(t.download_bytes) / 1024,
                    static_cast<double>(t.download_wait_ns) * 1e-6, static_cast<long long>(t.uploads),
                    static_cast<double>(t.upload_bytes) / 1024, static_cast<double>(t.upload_wait_ns) * 1e-6);
      }
    }
  }
  if (!options.json_out.empty()) {
    const nlohmann::json figures = {{"train_ms", train_ms},
                                    {"infer_ms", infer_ms},
                                    {"peak_rss_mb", rss},
                                    {"batch", options.batch},
                                    {"size", options.size},
                                    {"threads", num_threads()},
                                    {"device", device.str()},
                                    {"train_tensor_peak_mb", train_tensor_mb},
                                    {"infer_tensor_peak_mb", infer_tensor_mb},
                                    {"train_requested_peak_mb", train_requested_mb},
                                    {"infer_requested_peak_mb", infer_requested_mb},
                                    {"train_reserved_peak_mb", train_reserved_mb},
                                    {"infer_reserved_peak_mb", infer_reserved_mb},
                                    {"train_gflop", static_cast<double>(train_flops) * 1e-9},
                                    {"infer_gflop", static_cast<double>(infer_flops) * 1e-9},
                                    {"fma_peak_gflops", peak_gflops}};
    write_file_atomically(options.json_out, figures.dump());
  }
  return 0;
}

}  // namespace mrcnn::apps
