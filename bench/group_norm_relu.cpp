// group_norm + [add] + relu as separate ops against ops::group_norm_relu, on the activations of the
// brain-tumour recipe's ResNet-18 (configs/brain_tumor_cpu.json: 32 groups, batch 4, 256x256
// input): every GroupNorm + relu site of the backbone, with the residual where a block ends.
// Forward and backward of all sites, best of N rounds, the two variants alternated within each
// round. Build with -DSEPARATE_ONLY to time only the separate ops (the comparison with an older
// library that has no fused op: compile this file against it).
//   build/bench_group_norm_relu [rounds]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "autograd/engine.h"
#include "ops/ops.h"
#include "ops/norm.h"

using namespace mrcnn;

namespace {

struct Site {
  int64_t channels, side;
  bool residual;
  int count;
};

struct Operands {
  Tensor x, weight, bias, residual, dout;
};

struct Times {
  double forward = 1e30, backward = 1e30;
};

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

void run(std::vector<Operands>& sites, bool fused, Times& best) {
  std::vector<Tensor> outputs;
  const auto start = std::chrono::steady_clock::now();
  for (const Operands& s : sites) {
    if (fused) {
#ifndef SEPARATE_ONLY
      outputs.push_back(ops::group_norm_relu(s.x, 32, s.weight, s.bias, 1e-5, s.residual));
#endif
    } else {
      const Tensor y = ops::group_norm(s.x, 32, s.weight, s.bias, 1e-5);
      outputs.push_back(ops::relu(s.residual.defined() ? ops::add(y, s.residual) : y));
    }
  }
  const double forward = ms_since(start);
  const auto backward_start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < sites.size(); ++i) autograd::backward(outputs[i], sites[i].dout);
  best.forward = std::min(best.forward, forward);
  best.backward = std::min(best.backward, ms_since(backward_start));
  for (Operands& s : sites)
    for (Tensor* t : {&s.x, &s.weight, &s.bias, &s.residual})
      if (t->defined()) t->zero_grad();
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 20;
  // The stem's norm, then per stage: two norm + relu, two norm + identity + relu (the downsampling
  // branch's norm has no relu and is left out).
  const std::vector<Site> layout = {{64, 128, false, 1}, {64, 64, false, 2},  {64, 64, true, 2},  {128, 32, false, 2},
                                    {128, 32, true, 2},  {256, 16, false, 2}, {256, 16, true, 2}, {512, 8, false, 2},
                                    {512, 8, true, 2}};
  manual_seed(0);
  std::vector<Operands> sites;
  for (const Site& s : layout)
    for (int k = 0; k < s.count; ++k) {
      const Shape shape{4, s.channels, s.side, s.side};
      sites.push_back({randn(shape).set_requires_grad(true), ops::add(randn({s.channels}), 1.0).set_requires_grad(true),
                       randn({s.channels}).set_requires_grad(true),
                       s.residual ? randn(shape).set_requires_grad(true) : Tensor(), randn(shape)});
    }
  Times separate, fused;
  for (int round = 0; round < rounds; ++round) {
    run(sites, false, separate);
#ifndef SEPARATE_ONLY
    run(sites, true, fused);
#endif
  }
  std::printf("%zu GroupNorm + relu sites of the recipe (batch 4), best of %d rounds, ms:\n", sites.size(), rounds);
  std::printf("  separate ops (group_norm, add, relu): forward %.2f, backward %.2f\n", separate.forward, separate.backward);
#ifndef SEPARATE_ONLY
  std::printf("  group_norm_relu:                      forward %.2f, backward %.2f\n", fused.forward, fused.backward);
  std::printf("  ratio fused / separate:               forward %.3f, backward %.3f\n", fused.forward / separate.forward,
              fused.backward / separate.backward);
#endif
}
