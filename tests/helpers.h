// Helpers shared by the tests: gradcheck assertions, non-contiguous leaves, comparisons.
#pragma once
#include <doctest/doctest.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "maskrcnn/config.h"
#include "ops/ops.h"
#include "tensor/parallel.h"
#include "tensor/safetensors.h"

namespace mrcnn::test {

// A float64 leaf of `shape` with N(0,1) values from `seed`, requiring grad.
Tensor leaf(const Shape& shape, uint64_t seed, double scale = 1.0, double shift = 0.0);
// Same, but stored transposed (last two dims swapped in memory): a non-contiguous leaf.
Tensor noncontiguous_leaf(const Shape& shape, uint64_t seed);
// gradcheck with default tolerances; fails the test with the result's message.
void expect_gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                      const autograd::GradcheckOptions& options = {});
// Largest |a - b| over elements (same shape required).
double max_abs_diff(const Tensor& a, const Tensor& b);
std::vector<double> values(const Tensor& t);
// Pairs each row of `actual` ([n, k]) with the nearest still unpaired row of `expected` ([n, k];
// distance: the largest coordinate difference), in actual's row order; returns expected's row per
// actual row. For outputs whose order is not defined to the last bit (proposals, detections of an
// untrained model): sorting both sides and comparing row by row is ill-conditioned, since two rows
// whose first coordinates differ by less than the rounding noise swap places and look like a
// difference of many pixels.
std::vector<int64_t> nearest_row_pairing(const Tensor& actual, const Tensor& expected);
// A fresh directory of this name under scratch_root(), unique to this process (test processes run
// in parallel, and a second checkout's tests may run at the same time).
std::filesystem::path scratch_dir(const std::string& name);
// The folder under the system temp directory holding this process's scratch_dir()s. The test main
// removes it when every test of the process passed (a test run would otherwise leave ~0.5 GB in
// /tmp, on disks CI has seen with under 1 GB free) and names it on stderr when one failed.
std::filesystem::path scratch_root();
// Runs f and returns the message of the Error it throws ("" if none).
std::string error_of(const std::function<void()>& f);
// The CPU's thread count set to n while alive; the count before restored after, also when a
// REQUIRE throws out of the case.
class ThreadCount {
 public:
  explicit ThreadCount(int n) : saved_(num_threads()) { set_num_threads(n); }
  ~ThreadCount() { set_num_threads(saved_); }
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;

 private:
  int saved_;
};
// Bytewise equality of two tensors' contents (same shape and dtype).
bool bitwise_equal(const Tensor& a, const Tensor& b);

// Every CUDA test case starts with it. With a CUDA device: turns on NaN pre-filling of new CUDA
// memory for the rest of the process (cuda::set_fill_uninitialized, so an element a kernel never
// wrote shows up) and returns false. Without one it prints "SKIPPED: <what>: <reason>" and returns
// true, unless the process is a rehearsal (MRCNN_CUDA_REHEARSAL=1, ctest's rehearsal:<binary>
// tests): then it returns false and the case runs with the CPU standing in for CUDA (gpu() below).
// A rehearsal checks the case's own code (indices into input lists, shapes, the CPU half), under
// CI's sanitizers too, so a bug there shows up before a GPU is lent; it says nothing about CUDA.
bool setup_cuda_or_skip(const std::string& what);
// For cases that test CUDA itself (allocator, transfers, device errors): skipped without a device,
// and not rehearsed (a rehearsal prints "NOT REHEARSED: <what>").
bool setup_real_cuda_or_skip(const std::string& what);
// The device a CUDA case compares with the CPU: kCUDA, or kCPU in a rehearsal.
Device gpu();
bool rehearsing();
// Runs f on `inputs` (CPU) and on CUDA copies of them (CUDA memory pre-filled with NaN bytes, so an
// element a kernel never wrote shows up), then backward of sum(out * R) for a fixed random R on
// both: the outputs and every input gradient must agree within tol (absolute).
void expect_cuda_matches_cpu(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                             double tol);
// For float32 results that sum more products than a fixed tolerance can allow for (a weight
// gradient sums batch x height x width of them): f runs in float32 on the CPU and on CUDA and in
// float64 on the CPU (inputs rounded to float32 first, so all three sum the same terms), with
// backward of sum(out * R) as above. Every element of the outputs and input gradients must lie
// within the bound for a sum of up to `terms` products taken in any order,
//   |fl(s) - s| <= gamma_n * sum |term|, gamma_n = n u / (1 - n u), u = 2^-24, n = terms + 2
// (the 2: an added bias and the product's own rounding), where sum |term| of each element is f run
// in float64 on |inputs| with |R|. f must be linear in each input (convolutions, products).
void expect_cuda_f32_within_summation_bound(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                            const std::vector<Tensor>& inputs, int64_t terms);
// f64 gradcheck of f with its work on the GPU: the CPU inputs are copied to CUDA inside the checked
// function and the output copied back (both copies are differentiable), so the analytic gradient is
// the CUDA backward's.
void expect_cuda_gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs);

// A committed fixture file (path relative to the source tree: $MRCNN_SOURCE_DIR, set by ctest, or the
// tree the test was built from), and one of its tensors (failing the test, naming it, when absent).
std::string source_path(const std::string& relative_path);
safetensors::File load_fixture(const std::string& relative_path);
Tensor fixture_tensor(const safetensors::File& file, const std::string& name);

// Runs the built `mrcnn` binary with `args` (a shell command line); stdout and stderr together.
struct Run {
  int status;
  std::string output;
};
Run run_mrcnn(const std::string& args);

// A Mask R-CNN small enough for unit tests: basic blocks [1, 1, 1, 1], GroupNorm, all layers
// trainable, 1 input channel, FPN/heads 32 wide, anchors 8..128 px, images resized to min_size.
detection::Config small_maskrcnn_config(int64_t min_size = 64, int64_t max_size = 64);

// small_maskrcnn_config(64, 96) keeping every detection (box_score_thresh 0), so that a random
// model's output is not empty: what the `mrcnn` command tests run.
detection::Config tiny_detector_config();
// A randomly initialised tiny_detector_config() model saved with its config as
// dir/model.safetensors; returns that path.
std::string save_tiny_detector(const std::filesystem::path& dir, uint64_t seed);

}  // namespace mrcnn::test
