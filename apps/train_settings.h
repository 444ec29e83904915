// The "train" section of a recipe file (configs/*.json): optimiser, schedule, augmentation,
// logging and validation cadence. Keys are checked like the model's: unknown keys and wrong types
// are errors naming the key. Epoch-based settings (milestones) are converted to iterations here.
#pragma once
#include <cstdint>
#include <string>
#include <vector>
#include <nlohmann/json.hpp>

#include "maskrcnn/augment.h"
#include "nn/optim.h"

namespace mrcnn::apps {

struct TrainSettings {
  int64_t epochs = 12;
  int64_t batch_size = 2;
  std::string optimizer = "sgd";     // "sgd" (momentum) or "adamw"
  double lr = 0.02, momentum = 0.9, weight_decay = 1e-4;
  std::string schedule = "cosine";   // "constant", "multistep" (milestones in epochs), "cosine"
  std::vector<int64_t> milestones;   // epochs
  double gamma = 0.1, min_lr = 0.0;
  int64_t warmup_iters = 100;
  double warmup_factor = 1e-3;
  double clip_grad_norm = 0.0;       // 0: off
  double ema_decay = 0.0;            // > 0: validate and save a moving average of the weights (nn/average.h)
  double flip = 0.5, brightness = 0.1, contrast = 0.1;
  int64_t log_every = 10;            // iterations between RUN/log.jsonl lines
  int64_t val_every = 1;             // epochs between validations (the last epoch always validates)
  double val_score_thresh = 0.5;     // detections kept for Dice
  uint64_t seed = 0;                 // data order and augmentation

  detection::AugmentOptions augment() const { return {flip, brightness, contrast}; }
  nn::LRSchedule lr_schedule(int64_t iterations_per_epoch) const;
};

TrainSettings train_settings_from_json(const nlohmann::json& json);  // validates; errors name the key
nlohmann::json train_settings_to_json(const TrainSettings& settings);

}  // namespace mrcnn::apps
