// A moving average of the weights (Polyak-Ruppert / "EMA" weights, as timm's ModelEma and the YOLO
// trainers keep): after each optimizer step, average += (1 - d) * (weight - average), with the
// decay d = min(decay, (1 + n) / (10 + n)) after n updates, so the first updates follow the
// weights closely instead of dragging the random initialisation along. Small-data training from
// scratch wobbles from step to step; the average is what validation measures and checkpoints hold.
// The training trajectory itself is unchanged: the average only reads the weights.
#pragma once
#include <map>
#include <string>

#include "nn/module.h"

namespace mrcnn::nn {

class WeightAverage {
 public:
  // tracked: the tensors that change in training (trainable parameters, floating buffers); the
  // averages start as copies of their current values. decay in (0, 1).
  WeightAverage(NamedTensors tracked, double decay);
  void update();
  double decay_at(int64_t updates) const;  // the decay the update after `updates` updates uses
  int64_t updates() const { return updates_; }
  void set_updates(int64_t updates);

  // Copies of the tracked tensors' current values, by name (what restore() puts back).
  std::map<std::string, Tensor> snapshot() const;
  // The averages into the tracked tensors (for validation and saving); restore(snapshot) undoes it.
  void apply() const;
  // Copies values back into the tracked tensors; every tracked name must be present with its shape.
  void restore(const std::map<std::string, Tensor>& values, const std::string& what = "weights") const;

 private:
  NamedTensors tracked_;
  std::vector<Tensor> averages_;
  double decay_;
  int64_t updates_ = 0;
};

}  // namespace mrcnn::nn
