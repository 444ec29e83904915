// Recipe "train" section <-> TrainSettings.
#include "apps/train_settings.h"

#include <algorithm>

#include "maskrcnn/json_fields.h"
#include "tensor/error.h"

namespace mrcnn::apps {

namespace {

template <typename Fn>
void for_each_setting(TrainSettings& s, Fn&& fn) {
  fn("epochs", s.epochs);
  fn("batch_size", s.batch_size);
  fn("optimizer", s.optimizer);
  fn("lr", s.lr);
  fn("momentum", s.momentum);
  fn("weight_decay", s.weight_decay);
  fn("schedule", s.schedule);
  fn("milestones", s.milestones);
  fn("gamma", s.gamma);
  fn("min_lr", s.min_lr);
  fn("warmup_iters", s.warmup_iters);
  fn("warmup_factor", s.warmup_factor);
  fn("clip_grad_norm", s.clip_grad_norm);
  fn("ema_decay", s.ema_decay);
  fn("flip", s.flip);
  fn("brightness", s.brightness);
  fn("contrast", s.contrast);
  fn("log_every", s.log_every);
  fn("val_every", s.val_every);
  fn("val_score_thresh", s.val_score_thresh);
  fn("seed", s.seed);
}

}  // namespace

nn::LRSchedule TrainSettings::lr_schedule(int64_t iterations_per_epoch) const {
  nn::LRSchedule schedule_;
  schedule_.kind = schedule == "cosine"      ? nn::LRSchedule::Kind::Cosine
                   : schedule == "multistep" ? nn::LRSchedule::Kind::MultiStep
                                             : nn::LRSchedule::Kind::Constant;
  schedule_.base_lr = lr;
  schedule_.warmup_iters = warmup_iters;
  schedule_.warmup_factor = warmup_factor;
  for (int64_t epoch : milestones) schedule_.milestones.push_back(epoch * iterations_per_epoch);
  schedule_.gamma = gamma;
  schedule_.total_iters = epochs * iterations_per_epoch;
  schedule_.min_lr = min_lr;
  return schedule_;
}

TrainSettings train_settings_from_json(const nlohmann::json& json) {
  check(json.is_object(), "config: \"train\" must be an object, got ", json.type_name());
  TrainSettings settings;
  detection::read_json_fields(json, settings, [](TrainSettings& s, auto&& fn) { for_each_setting(s, fn); }, "train.");
  auto need = [](bool ok, const char* key, const char* why) { check(ok, "config: train.", key, " ", why); };
  need(settings.epochs >= 1, "epochs", "must be >= 1");
  need(settings.batch_size >= 1, "batch_size", "must be >= 1");
  need(settings.optimizer == "sgd" || settings.optimizer == "adamw", "optimizer", "must be \"sgd\" or \"adamw\"");
  need(settings.lr > 0, "lr", "must be positive");
  need(settings.momentum >= 0 && settings.momentum < 1, "momentum", "must be in [0, 1)");
  need(settings.weight_decay >= 0, "weight_decay", "must be >= 0");
  need(settings.gamma > 0, "gamma", "must be positive");
  need(settings.min_lr >= 0 && settings.min_lr <= settings.lr, "min_lr", "must be in [0, lr]");
  need(settings.warmup_factor > 0 && settings.warmup_factor <= 1, "warmup_factor", "must be in (0, 1]");
  for (int64_t epoch : settings.milestones) need(epoch >= 1, "milestones", "are epochs, each >= 1");
  need(settings.schedule == "constant" || settings.schedule == "multistep" || settings.schedule == "cosine", "schedule",
       "must be \"constant\", \"multistep\" or \"cosine\"");
  need(settings.warmup_iters >= 0, "warmup_iters", "must be >= 0");
  need(settings.clip_grad_norm >= 0, "clip_grad_norm", "must be >= 0 (0 turns clipping off)");
  need(settings.ema_decay >= 0 && settings.ema_decay < 1, "ema_decay", "must be in [0, 1) (0 turns the average off)");
  need(settings.flip >= 0 && settings.flip <= 1, "flip", "is a probability in [0, 1]");
  need(settings.brightness >= 0 && settings.contrast >= 0 && settings.contrast < 1, "brightness",
       "and contrast must be >= 0 (contrast < 1)");
  need(settings.log_every >= 1 && settings.val_every >= 1, "log_every", "and val_every must be >= 1");
  need(settings.val_score_thresh >= 0 && settings.val_score_thresh <= 1, "val_score_thresh", "must be in [0, 1]");
  return settings;
}

nlohmann::json train_settings_to_json(const TrainSettings& settings) {
  nlohmann::json json = nlohmann::json::object();
  TrainSettings copy = settings;
  for_each_setting(copy, [&](const char* key, auto& field) { json[key] = field; });
  return json;
}

}  // namespace mrcnn::apps
