// `mrcnn train`: a recipe (model config + "train" settings) and COCO data in; RUN/ out:
//   log.jsonl      loss terms and lr every log_every iterations
//   metrics.jsonl  one line per validation: COCO AP (bbox, segm), Dice, IoU, HD95, lesion counts,
//                  and their patient-bootstrap intervals
//   last.safetensors  model + optimizer + RNG states + position: --resume continues bit-exactly
//   best.safetensors  the weights with the best validation segm AP (model and metadata only: no
//                     optimizer state, half the size of last.safetensors)
//   curves.png     loss terms and validation metrics (Dice with its interval), redrawn after every epoch
// With train.ema_decay > 0 validation measures a moving average of the weights (nn/average.h), and
// the checkpoints' model tensors are that average; the weights training steps ride along under
// "training." so --resume still continues bit-exactly.
// Ctrl-C finishes the current iteration, saves last.safetensors and exits; a non-finite loss stops
// the run before the bad update, leaving the last good checkpoint in place.
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "apps/commands.h"
#include "apps/intervals.h"
#include "apps/plot.h"
#include "apps/progress.h"
#include "apps/train_settings.h"
#include "maskrcnn/bootstrap.h"
#include "maskrcnn/dataset.h"
#include "maskrcnn/evaluate.h"
#include "maskrcnn/json_fields.h"
#include "maskrcnn/mask_rcnn.h"
#include "maskrcnn/model_io.h"
#include "ops/ops.h"
#include "nn/average.h"
#include "nn/checkpoint.h"
#include "tensor/parallel.h"

namespace mrcnn::apps {

using namespace detection;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::atomic<bool> interrupted{false};

void on_interrupt(int) {
  interrupted = true;
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C stops at once
}

void append_line(const fs::path& path, const json& line) {
  std::ofstream out(path, std::ios::app);
  check(static_cast<bool>(out), path.string(), ": cannot append");
  out << line.dump() << "\n" << std::flush;
  check(static_cast<bool>(out), path.string(), ": cannot append (disk full?)");
}

// The data of a run: both halves loaded and decoded, with each val image's patient.
struct RunData {
  CocoDataset train, val;
  std::vector<Sample> train_samples, val_samples;
  std::vector<std::string> val_patients;
};

RunData load_run_data(const TrainOptions& o, int64_t in_channels) {
  RunData d;
  if (!o.val.empty()) {
    check(o.val_fraction == 0, "train: give --val or --val-fraction, not both");
    d.train = load_coco(o.train);
    d.val = load_coco(o.val);
  } else {
    check(o.val_fraction > 0, "train: give --val V.json or --val-fraction F (patients held out of --train)");
    std::ifstream in(o.train);
    check(static_cast<bool>(in), o.train, ": cannot open");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const CocoSplit split = split_coco(text, o.train, o.val_fraction, o.group_regex, 0);
    d.train = parse_coco(split.train_json, o.train + " (train part)");
    d.val = parse_coco(split.val_json, o.train + " (val part)");
    std::fprintf(stderr, "split %s: %lld patients / %lld images for training, %lld / %lld for validation\n",
                 o.train.c_str(), static_cast<long long>(split.train_groups), static_cast<long long>(split.train_images),
                 static_cast<long long>(split.val_groups), static_cast<long long>(split.val_images));
  }
  for (const auto* set : {&d.train, &d.val})
    for (const auto& w : set->warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  check(!d.train.images.empty(), o.train, ": no training images");
  const auto show = [](const char* what) {
    return [what](size_t done, size_t total) {
      if (done == total) std::fprintf(stderr, "loaded %zu %s images\n", total, what);
    };
  };
  d.train_samples = load_samples(d.train, o.images, in_channels, show("training"));
  d.val_samples = load_samples(d.val, o.images, in_channels, show("validation"));
  std::vector<std::string> names;
  for (const auto& image : d.val.images) names.push_back(image.file_name);
  d.val_patients = file_groups(names, o.group_regex, o.val.empty() ? o.train : o.val);
  return d;
}

json categories_json(const CocoDataset& data) {
  json list = json::array();
  for (const auto& c : data.categories) list.push_back({{"id", c.id}, {"name", c.name}});
  return list;
}

// Where a run stands; saved in the checkpoint so --resume picks up at the same iteration.
struct Position {
  int64_t epoch = 0, iteration = 0;  // next iteration to run: epoch (0-based), index within it
  double best_segm_ap = -1;
};

// One validation's figures, with their patient-bootstrap intervals (as `eval` gives them): whether
// one epoch's Dice really beats another's is a question of patients, not of the third decimal.
json metrics_line(int64_t epoch, const DatasetEvaluation& e, const PatientIntervals& intervals, bool flip_test) {
  const auto& s = e.segmentation;
  auto finite = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
  return {{"epoch", epoch},
          {"flip_test", flip_test},
          {"bbox", {{"AP", e.bbox.stats[0]}, {"AP50", e.bbox.stats[1]}, {"AP75", e.bbox.stats[2]}}},
          {"segm", {{"AP", e.segm.stats[0]}, {"AP50", e.segm.stats[1]}, {"AP75", e.segm.stats[2]}}},
          {"dice", s.mean_dice},
          {"iou", s.mean_iou},
          {"hd95", finite(s.mean_hd95)},
          {"sensitivity", finite(s.sensitivity)},
          {"false_positives_per_image", s.false_positives_per_image},
          {"intervals", intervals_json(intervals, 0)}};
}

// While alive, the model holds the averaged weights; the weights training steps are kept aside and
// put back on destruction. A null average leaves the model alone.
class AveragedWeightsInModel {
 public:
  explicit AveragedWeightsInModel(const nn::WeightAverage* average) : average_(average) {
    if (average_ == nullptr) return;
    training_weights_ = average_->snapshot();
    average_->apply();
  }
  ~AveragedWeightsInModel() {
    if (average_ != nullptr) average_->restore(training_weights_);
  }
  AveragedWeightsInModel(const AveragedWeightsInModel&) = delete;
  AveragedWeightsInModel& operator=(const AveragedWeightsInModel&) = delete;
  const std::map<std::string, Tensor>& training_weights() const { return training_weights_; }

 private:
  const nn::WeightAverage* average_;
  std::map<std::string, Tensor> training_weights_;
};

}  // namespace

int train(const TrainOptions& options) {
  const Device device = model_device(options.device);
  check(!options.out.empty(), "train: --out RUN is required");
  const fs::path run(options.out);
  const fs::path last = run / "last.safetensors", best = run / "best.safetensors";

  // The recipe: from the config file for a new run, from the checkpoint when resuming.
  nn::Checkpoint resumed;
  Config config;
  TrainSettings settings;
  TrainOptions o = options;
  Position at;
  if (o.resume) {
    check(fs::exists(last), last.string(), ": no checkpoint to resume from");
    resumed = nn::load_checkpoint(last.string());
    config = config_from_json(json::parse(resumed.config_json));
    const auto extra = [&](const char* key) {
      const auto it = resumed.extra.find(key);
      check(it != resumed.extra.end(), last.string(), ": not a training checkpoint (no '", key, "' metadata)");
      return it->second;
    };
    try {
      settings = train_settings_from_json(json::parse(extra("train_settings")));
      const json data = json::parse(extra("train_data"));
      if (o.train.empty()) o.train = data.at("train").get<std::string>();
      if (o.val.empty() && o.val_fraction == 0) o.val = data.at("val").get<std::string>(), o.val_fraction = data.at("val_fraction").get<double>();
      if (o.images.empty()) o.images = data.at("images").get<std::string>();
      at.epoch = std::stoll(extra("epoch"));
      at.iteration = std::stoll(extra("iteration"));
      at.best_segm_ap = std::stod(extra("best_segm_ap"));
    } catch (const json::exception& e) {
      throw Error(str_cat(last.string(), ": malformed training metadata (", e.what(), ")"));
    }
  } else {
    check(!o.config.empty(), "train: --config C.json is required (or --resume)");
    check(!fs::exists(last), last.string(), " exists: continue it with --resume, or choose another --out");
    const json recipe = read_json_file(o.config, "recipe");
    try {
      config = config_from_json(recipe);
      if (recipe.contains("train")) settings = train_settings_from_json(recipe["train"]);
    } catch (const Error& e) {
      throw Error(str_cat(o.config, ": ", e.what()));
    }
  }
  if (o.epochs > 0) settings.epochs = o.epochs;
  check(!o.train.empty() && !o.images.empty(), "train: --train T.json and --images DIR are required");
  check_output_folder(run.string());

  RunData data = load_run_data(o, config.in_channels);
  check(static_cast<int64_t>(data.train.categories.size()) == config.num_classes - 1, o.train, ": ",
        data.train.categories.size(), " categories but the config's num_classes is ", config.num_classes,
        " (categories + background)");

  manual_seed(config.seed);
  const std::unique_ptr<MaskRCNN> built = build_model(config, o.resume ? last.string() : o.config);
  MaskRCNN& model = *built;
  model.to(device);
  if (!o.resume && !o.weights.empty()) {
    for (const auto& line : load_pretrained(model, nn::load_checkpoint(o.weights, nn::CheckpointParts::ModelOnly).model))
      std::fprintf(stderr, "weights: %s\n", line.c_str());
  }
  nn::NamedTensors trainable;
  for (auto& [name, p] : model.named_parameters())
    if (p.requires_grad()) trainable.emplace_back(name, p);
  std::unique_ptr<nn::Optimizer> optimizer;
  if (settings.optimizer == "adamw") {
    optimizer = std::make_unique<nn::AdamW>(trainable, nn::AdamWOptions{settings.lr, 0.9, 0.999, 1e-8, settings.weight_decay});
  } else {
    optimizer = std::make_unique<nn::SGD>(trainable, nn::SGDOptions{settings.lr, settings.momentum, 0, settings.weight_decay, false});
  }
  std::vector<Tensor> trainable_tensors;
  for (auto& [name, p] : trainable) trainable_tensors.push_back(p);
  // Every random stream of training, saved and restored as a set: data order (its state at the
  // start of the current epoch, so a resumed epoch redraws the same order), augmentation, the
  // transform's scale choice and both samplers.
  Generator data_generator(settings.seed * 2 + 11), augment_generator(settings.seed * 2 + 12);
  Generator epoch_start = data_generator;
  const std::map<std::string, Generator*> generators = {
      {"data_epoch_start", &epoch_start}, {"augment", &augment_generator}, {"transform", &model.transform_generator()},
      {"rpn", &model.rpn->generator()}, {"roi_heads", &model.roi_heads->generator()}};
  if (o.resume) {
    model.load_state_dict(resumed.model);
    optimizer->load_state_dict(resumed.optimizer);
    nn::restore_generators(resumed, generators);
    data_generator = epoch_start;
    check(resumed.training_weights.empty() == (settings.ema_decay == 0), last.string(), ": ",
          settings.ema_decay == 0 ? "holds training weights but its recipe keeps no weight average"
                                  : "has no training weights (training.*) but its recipe keeps a weight average");
  }
  // The average tracks what training changes: trainable parameters and floating buffers (batch
  // norm's running statistics). It starts from the model's tensors, which after a resume are the
  // saved averages; only then do the stepped weights go back into the model.
  std::unique_ptr<nn::WeightAverage> average;
  if (settings.ema_decay > 0) {
    nn::NamedTensors tracked = trainable;
    for (auto& [name, b] : model.named_buffers())
      if (is_floating(b.dtype())) tracked.emplace_back(name, b);
    average = std::make_unique<nn::WeightAverage>(tracked, settings.ema_decay);
  }
  if (o.resume && average) {
    average->restore(resumed.training_weights, last.string() + " (training weights)");
    try {
      average->set_updates(std::stoll(resumed.extra.at("average_updates")));
    } catch (const std::exception&) {
      throw Error(str_cat(last.string(), ": no valid 'average_updates' metadata for its weight average"));
    }
  }
  if (o.resume)
    std::fprintf(stderr, "resuming %s at epoch %lld, iteration %lld\n", last.string().c_str(),
                 static_cast<long long>(at.epoch + 1), static_cast<long long>(at.iteration));

  const int64_t n = static_cast<int64_t>(data.train_samples.size());
  const int64_t per_epoch = (n + settings.batch_size - 1) / settings.batch_size;
  const int64_t total_iters = settings.epochs * per_epoch;
  const nn::LRSchedule schedule = settings.lr_schedule(per_epoch);
  const json train_data = {{"train", o.train}, {"val", o.val}, {"val_fraction", o.val_fraction}, {"images", o.images}};

  // with_training_state: the optimizer state and the stepped weights too, for --resume (last);
  // best is for predicting, evaluating and deploying. The caller holds the averaged weights in the
  // model, so one swap serves validation and both checkpoints.
  const auto save = [&](const AveragedWeightsInModel& averaged, const fs::path& path, const Position& p,
                        bool with_training_state) {
    std::map<std::string, const Generator*> states;
    for (const auto& [name, g] : generators) states[name] = g;
    nn::Checkpoint c = nn::make_checkpoint(model, with_training_state ? optimizer.get() : nullptr, config_to_json(config).dump(),
                                           p.epoch * per_epoch + p.iteration, states);
    c.extra["categories"] = categories_json(data.train).dump();
    c.extra["train_settings"] = train_settings_to_json(settings).dump();
    c.extra["train_data"] = train_data.dump();
    c.extra["epoch"] = std::to_string(p.epoch);
    c.extra["iteration"] = std::to_string(p.iteration);
    c.extra["best_segm_ap"] = std::to_string(p.best_segm_ap);
    if (average && with_training_state) {
      c.training_weights = averaged.training_weights();
      c.extra["average_updates"] = std::to_string(average->updates());
    }
    nn::save_checkpoint(path.string(), c);
  };

  fs::create_directories(run);  // only now: a run refused above leaves no empty folder behind
  std::fprintf(stderr, "training %s: %lld images, %lld val images%s, %lld epochs x %lld iterations (batch %lld), %d threads\n",
               o.resume ? "(resumed)" : o.config.c_str(), static_cast<long long>(n),
               static_cast<long long>(data.val_samples.size()), model.flip_test() ? " (validated with the flip test)" : "",
               static_cast<long long>(settings.epochs), static_cast<long long>(per_epoch),
               static_cast<long long>(settings.batch_size), num_threads());
  interrupted = false;
  std::signal(SIGINT, on_interrupt);
  struct RestoreSignal {
    ~RestoreSignal() { std::signal(SIGINT, SIG_DFL); }
  } restore_signal;

  Progress progress("train", total_iters, settings.log_every);
  const char* short_names[] = {"cls", "box", "mask", "obj", "rpn"};
  const char* loss_names[] = {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"};
  int64_t epochs_this_run = 0;
  model.train();
  for (int64_t epoch = at.epoch; epoch < settings.epochs; ++epoch) {
    if (at.iteration == 0) epoch_start = data_generator;
    data_generator = epoch_start;
    // This epoch's order: argsort of one uniform key per image.
    const auto keys = to_vector<double>(rand({n}, kFloat64, kCPU, &data_generator));
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return keys[a] < keys[b]; });
    std::map<std::string, double> epoch_sums;
    int64_t epoch_count = 0;
    for (int64_t it = at.iteration; it < per_epoch; ++it) {
      std::vector<Tensor> images;
      std::vector<Target> targets;
      for (int64_t k = it * settings.batch_size; k < std::min(n, (it + 1) * settings.batch_size); ++k) {
        Sample s = data.train_samples[static_cast<size_t>(order[static_cast<size_t>(k)])];
        augment(s.image, s.target, settings.augment(), augment_generator);
        images.push_back(s.image);
        targets.push_back(s.target);
      }
      const int64_t global = epoch * per_epoch + it;
      optimizer->lr = schedule.lr_at(global);
      optimizer->zero_grad();
      const auto out = model.forward(images, &targets);
      const Tensor loss = total_loss(out.losses);
      // Backward is queued before the losses are read, and they come back in one copy: on a GPU the
      // host then waits once, with the whole backward in flight, instead of draining the queue
      // between forward and backward. A non-finite loss still stops before any update.
      autograd::backward(loss);
      std::vector<Tensor> readout{loss.detach()};
      for (const auto& [name, t] : out.losses) readout.push_back(t.detach());
      const std::vector<double> values = to_vector<double>(ops::stack(readout));
      const double value = values[0];
      std::map<std::string, double> terms;
      size_t term = 1;
      for (const auto& [name, t] : out.losses) terms[name] = values[term++];
      if (!std::isfinite(value)) {
        progress.finish();
        std::string detail;
        for (const auto& [name, v] : terms) detail += str_cat(" ", name, "=", v);
        throw Error(str_cat("train: the loss is ", value, " at epoch ", epoch + 1, ", iteration ", it + 1, " (", detail.substr(1),
                            "); stopped before updating. ",
                            fs::exists(last) ? last.string() + " holds the last good state" : std::string("no checkpoint was written yet"),
                            ". Try a lower train.lr or set train.clip_grad_norm."));
      }
      const double grad_norm = settings.clip_grad_norm > 0 ? nn::clip_grad_norm(trainable_tensors, settings.clip_grad_norm) : 0.0;
      optimizer->step();
      if (average) average->update();
      for (const auto& [name, v] : terms) epoch_sums[name] += v;
      epoch_sums["loss"] += value;
      ++epoch_count;
      std::string detail = str_cat("loss ", value);
      detail.resize(std::min<size_t>(detail.size(), 11));
      for (int t = 0; t < 5; ++t) {
        char part[32];
        std::snprintf(part, sizeof part, " %s %.3f", short_names[t], terms[loss_names[t]]);
        detail += part;
      }
      progress.update(global + 1, str_cat("epoch ", epoch + 1, "/", settings.epochs, " ", detail));
      if ((global + 1) % settings.log_every == 0) {
        json line = {{"epoch", epoch + 1}, {"iteration", global + 1}, {"lr", optimizer->lr}, {"loss", value},
                     {"seconds", progress.seconds()}};
        for (const auto& [name, v] : terms) line[name] = v;
        if (settings.clip_grad_norm > 0) line["grad_norm"] = grad_norm;
        append_line(run / "log.jsonl", line);
      }
      if (interrupted) {
        progress.finish();
        save(AveragedWeightsInModel(average.get()), last, {epoch, it + 1, at.best_segm_ap}, true);
        std::fprintf(stderr, "interrupted: saved %s at epoch %lld, iteration %lld; continue with --resume\n",
                     last.string().c_str(), static_cast<long long>(epoch + 1), static_cast<long long>(it + 1));
        return 130;
      }
    }
    at.iteration = 0;
    epoch_start = data_generator;  // the next epoch's order is drawn from here
    ++epochs_this_run;
    json epoch_line = {{"epoch", epoch + 1}, {"seconds", progress.seconds()}};
    for (const auto& [name, v] : epoch_sums) epoch_line["mean_" + name] = v / std::max<int64_t>(epoch_count, 1);
    append_line(run / "epochs.jsonl", epoch_line);
    const bool validate = !data.val_samples.empty() && ((epoch + 1) % settings.val_every == 0 || epoch + 1 == settings.epochs);
    {
      const AveragedWeightsInModel averaged(average.get());
      if (validate) {
        progress.finish();
        const DatasetEvaluation e =
            evaluate_dataset(model, data.val, data.val_samples, data.val_patients, settings.val_score_thresh);
        const PatientIntervals intervals = patient_bootstrap(e.segmentation);
        append_line(run / "metrics.jsonl", metrics_line(epoch + 1, e, intervals, model.flip_test()));
        // "Dice 0.801 (0.742-0.847) IoU ...": the interval only where there are patients to resample.
        const auto three = [](double v) { return fmt(v); };
        const std::string dice = fmt(e.segmentation.mean_dice) +
                                 (std::isnan(intervals.dice.low) ? "" : " (" + range(intervals.dice, three) + ")");
        if (e.segm.stats[0] < 0) {  // COCO's -1: no annotated object, so nothing for AP to rank
          std::fprintf(stderr, "epoch %lld val: no objects in the val images, so no AP | Dice %s IoU %.3f\n",
                       static_cast<long long>(epoch + 1), dice.c_str(), e.segmentation.mean_iou);
        } else {
          std::fprintf(stderr, "epoch %lld val: segm AP %.3f AP50 %.3f | bbox AP %.3f AP50 %.3f | Dice %s IoU %.3f\n",
                       static_cast<long long>(epoch + 1), e.segm.stats[0], e.segm.stats[1], e.bbox.stats[0], e.bbox.stats[1],
                       dice.c_str(), e.segmentation.mean_iou);
        }
        if (e.segm.stats[0] > at.best_segm_ap) {
          at.best_segm_ap = e.segm.stats[0];
          save(averaged, best, {epoch + 1, 0, at.best_segm_ap}, false);
        }
      }
      save(averaged, last, {epoch + 1, 0, at.best_segm_ap}, true);
    }
    try {
      draw_training_curves(run.string());
    } catch (const Error& e) {
      std::fprintf(stderr, "warning: curves.png not drawn: %s\n", e.what());
    }
    if (o.stop_after_epochs > 0 && epochs_this_run >= o.stop_after_epochs && epoch + 1 < settings.epochs) {
      std::fprintf(stderr, "stopping after %lld epoch(s) as asked; continue with --resume\n",
                   static_cast<long long>(epochs_this_run));
      return 0;
    }
  }
  progress.finish();
  // best_segm_ap stays -1 (COCO's "no truth") unless some validation had objects to find.
  char best_ap[32];
  std::snprintf(best_ap, sizeof best_ap, "%.3f", at.best_segm_ap);
  const std::string outcome =
      at.best_segm_ap >= 0 ? str_cat("best val segm AP ", best_ap, ": ", best.string())
      : data.val_samples.empty() ? std::string("no validation images, so no best.safetensors")
                                 : std::string("the validation images hold no objects, so no val AP and no best.safetensors");
  std::fprintf(stderr, "done in %s: %s (%s)\n", format_duration(progress.seconds()).c_str(), last.string().c_str(),
               outcome.c_str());
  return 0;
}

}  // namespace mrcnn::apps
