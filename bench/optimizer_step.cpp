// The optimizer step of a model's trainable parameters (random gradients), on 1 thread and on all,
// alternated round by round: how much splitting the memory-bound update across threads saves on
// this machine. Both thread counts give the same bits (tests/test_ops_optim.cpp).
//   bench_optimizer_step [config=configs/brain_tumor_cpu.json] [rounds=6]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/timing.h"
#include "maskrcnn/config.h"
#include "maskrcnn/mask_rcnn.h"
#include "nn/optim.h"
#include "tensor/parallel.h"
#include "tensor/random.h"

using namespace mrcnn;

int main(int argc, char** argv) {
  const std::string config = argc > 1 ? argv[1] : "configs/brain_tumor_cpu.json";
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 6;
  if (rounds < 1) {
    std::fprintf(stderr, "usage: bench_optimizer_step [config] [rounds >= 1]\n");
    return 2;
  }
  detection::MaskRCNN model(detection::load_config(config));
  std::vector<std::pair<std::string, Tensor>> trainable;
  int64_t elements = 0;
  for (auto& [name, p] : model.named_parameters()) {
    if (!p.requires_grad()) continue;
    p.set_grad(randn(p.sizes()));  // p is a handle sharing the parameter: the gradient reaches it
    trainable.emplace_back(name, p);
    elements += p.numel();
  }
  // The recipe's update (momentum, weight decay); lr 0 keeps the weights, not the arithmetic.
  nn::SGD sgd(trainable, {0.0, 0.9, 0, 1e-4, false});
  sgd.step();  // the momentum buffers exist from here on
  const int all = num_threads();
  std::printf("%s: %zu tensors, %.1fM elements; SGD step, median of 9 per round, %d rounds\n", config.c_str(),
              trainable.size(), elements / 1e6, rounds);
  std::vector<double> one, many, ratios;
  for (int r = 0; r < rounds; ++r) {
    for (const int threads : r % 2 ? std::vector<int>{all, 1} : std::vector<int>{1, all}) {
      set_num_threads(threads);
      (threads == 1 ? one : many).push_back(bench::median_seconds([&] { sgd.step(); }, {9, 0, 9}));
    }
    ratios.push_back(many.back() / one.back());
    std::printf("round %d: 1 thread %.2f ms, %d threads %.2f ms, ratio %.3f\n", r + 1, one.back() * 1e3, all,
                many.back() * 1e3, ratios.back());
  }
  set_num_threads(all);
  std::sort(ratios.begin(), ratios.end());
  std::printf("best: 1 thread %.2f ms, %d threads %.2f ms; median ratio %.3f\n", *std::min_element(one.begin(), one.end()) * 1e3,
              all, *std::min_element(many.begin(), many.end()) * 1e3, ratios[ratios.size() / 2]);
  return 0;
}
