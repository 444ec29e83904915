// Our side of bench/ops_vs_torch.py: reads one case per line on stdin, times forward and backward
// separately (median over repetitions) and answers one line "NAME FORWARD_MS BACKWARD_MS".
// Case lines (the driver writes the same shapes for PyTorch):
//   conv NAME N C H W O K STRIDE PADDING BIAS(0/1)
//   roi NAME ROIS CHANNELS OUT LEVELS MAP   (LEVELS maps of MAP >> level pixels, scales 1/4 >> level)
//   pool NAME N C H W KERNEL STRIDE PADDING   (max_pool2d)
#include <cstdio>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "bench/timing.h"
#include "ops/ops.h"
#include "ops/conv.h"
#include "ops/pool.h"
#include "ops/roi_align.h"

using namespace mrcnn;

namespace {

// Median milliseconds of at least 5 timed runs and about 0.4 s, at most 30, after one warm-up.
double median_ms(const std::function<void()>& prepare, const std::function<void()>& run) {
  return 1e3 * bench::median_seconds(run, {5, 0.4, 30}, prepare);
}

void time_forward_backward(const std::string& name, const std::function<Tensor()>& forward, const std::vector<Tensor*>& leaves) {
  const double fwd = median_ms([] {}, [&] {
    autograd::NoGradGuard no_grad;
    forward();
  });
  Tensor out, dout;
  const double bwd = median_ms(
      [&] {
        for (Tensor* leaf : leaves) leaf->zero_grad();
        out = forward();
        if (!dout.defined()) dout = randn(out.sizes());
      },
      [&] { autograd::backward(out, dout); });
  std::printf("%s %.4f %.4f\n", name.c_str(), fwd, bwd);
  std::fflush(stdout);
}

void run_conv(std::istringstream& in) {
  std::string name;
  int64_t n, c, h, w, o, k, stride, padding, bias;
  in >> name >> n >> c >> h >> w >> o >> k >> stride >> padding >> bias;
  Tensor x = randn({n, c, h, w}).set_requires_grad(true);
  Tensor weight = ops::mul(randn({o, c, k, k}), 0.05).set_requires_grad(true);
  Tensor b = bias ? randn({o}).set_requires_grad(true) : Tensor();
  std::vector<Tensor*> leaves{&x, &weight};
  if (bias) leaves.push_back(&b);
  time_forward_backward(name, [&] { return ops::conv2d(x, weight, b, {stride, padding}); }, leaves);
}

void run_roi(std::istringstream& in) {
  std::string name;
  int64_t rois, channels, out, levels, map;
  in >> name >> rois >> channels >> out >> levels >> map;
  // Random boxes inside a (map * 4)-pixel image, sides 16..256, split evenly over the levels.
  std::vector<Tensor> features, boxes;
  const double image = static_cast<double>(map * 4);
  for (int64_t l = 0; l < levels; ++l) {
    features.push_back(randn({1, channels, map >> l, map >> l}).set_requires_grad(true));
    const int64_t r = rois / levels;
    const Tensor xy = ops::mul(rand({r, 2}), image - 256), wh = ops::add(ops::mul(rand({r, 2}), 240.0), 16.0);
    boxes.push_back(ops::cat({zeros({r, 1}), xy, ops::add(xy, wh)}, 1));
  }
  std::vector<Tensor*> leaves;
  for (Tensor& f : features) leaves.push_back(&f);
  time_forward_backward(
      name,
      [&] {
        std::vector<Tensor> outs;
        for (int64_t l = 0; l < levels; ++l)
          outs.push_back(ops::roi_align(features[l], boxes[l], out, 0.25 / static_cast<double>(1 << l), 2, false));
        return ops::cat(outs, 0);
      },
      leaves);
}

void run_pool(std::istringstream& in) {
  std::string name;
  int64_t n, c, h, w, kernel, stride, padding;
  in >> name >> n >> c >> h >> w >> kernel >> stride >> padding;
  Tensor x = randn({n, c, h, w}).set_requires_grad(true);
  std::vector<Tensor*> leaves{&x};
  time_forward_backward(name, [&] { return ops::max_pool2d(x, {kernel, stride, padding}); }, leaves);
}

}  // namespace

int main() {
  manual_seed(0);
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string kind;
    in >> kind;
    try {
      if (kind == "conv") run_conv(in);
      else if (kind == "roi") run_roi(in);
      else if (kind == "pool") run_pool(in);
      else if (!kind.empty()) std::printf("error unknown case kind '%s'\n", kind.c_str());
    } catch (const std::exception& e) {
      std::printf("error %s\n", e.what());
    }
    std::fflush(stdout);
  }
  return 0;
}
