// `mrcnn synth`, `train`, `eval` and `predict` end to end on a small synthetic set: training
// writes its logs, metrics, checkpoints and curves; resuming (after --stop-after-epochs or Ctrl-C
// mid-epoch) gives bit-identical weights to an uninterrupted run; a diverging run stops with a clear
// message and keeps its last good checkpoint; eval's figures agree with its own detections.
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include "maskrcnn/coco_eval.h"
#include "maskrcnn/config.h"
#include "maskrcnn/image_io.h"
#include "nn/checkpoint.h"
#include "tests/helpers.h"

using namespace mrcnn;
using namespace mrcnn::detection;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::vector<json> read_lines(const fs::path& path) {
  std::vector<json> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) lines.push_back(json::parse(line));
  return lines;
}

json read_json(const fs::path& path) {
  std::ifstream in(path);
  return json::parse(in);
}

// 4 patients x 2 slices of 64x64: 6 training images, 2 validation images (one patient).
const fs::path& synthetic_set() {
  static const fs::path dir = [] {
    const fs::path d = test::scratch_dir("synthetic_set");
    const auto run = test::run_mrcnn("synth --out " + d.string() +
                                     " --patients 4 --slices 2 --val-patients 1 --height 64 --width 64 --seed 3");
    INFO(run.output);
    REQUIRE(run.status == 0);
    return d;
  }();
  return dir;
}

// The tiny test model plus a "train" section: 3 iterations per epoch, validation every epoch.
fs::path write_recipe(const fs::path& dir, const json& train_overrides = json::object()) {
  json recipe = config_to_json(test::small_maskrcnn_config(64, 64));
  recipe["train"] = {{"epochs", 4}, {"batch_size", 2}, {"lr", 0.01}, {"warmup_iters", 2}, {"log_every", 1},
                     {"val_every", 1}, {"val_score_thresh", 0.3}};
  for (const auto& [key, value] : train_overrides.items()) recipe["train"][key] = value;
  fs::create_directories(dir);
  const fs::path path = dir / "recipe.json";
  std::ofstream(path) << recipe.dump(1);
  return path;
}

std::string data_args() {
  const fs::path d = synthetic_set();
  return " --train " + (d / "train.json").string() + " --val " + (d / "val.json").string() + " --images " +
         (d / "images").string();
}

void check_same_state(const fs::path& a, const fs::path& b) {
  const auto x = nn::load_checkpoint(a.string()), y = nn::load_checkpoint(b.string());
  REQUIRE(x.model.size() == y.model.size());
  for (const auto& [name, t] : x.model) {
    INFO(name);
    CHECK(test::bitwise_equal(t, y.model.at(name)));
  }
  REQUIRE(x.optimizer.size() == y.optimizer.size());
  for (const auto& [name, t] : x.optimizer) {
    INFO(name);
    CHECK(test::bitwise_equal(t, y.optimizer.at(name)));
  }
  REQUIRE(x.training_weights.size() == y.training_weights.size());
  for (const auto& [name, t] : x.training_weights) {
    INFO(name);
    CHECK(test::bitwise_equal(t, y.training_weights.at(name)));
  }
  CHECK(x.step == y.step);
  CHECK(x.generators == y.generators);
}

}  // namespace

TEST_CASE("mrcnn synth: COCO JSON with patient-named slices, polygons and negatives") {
  const fs::path d = synthetic_set();
  const json train = read_json(d / "train.json"), val = read_json(d / "val.json");
  CHECK(train["images"].size() == 6);
  CHECK(val["images"].size() == 2);
  for (const auto& image : val["images"]) CHECK(image["file_name"].get<std::string>().rfind("p003_", 0) == 0);
  const CocoDataset parsed = load_coco((d / "train.json").string());
  CHECK(parsed.warnings.empty());
  REQUIRE(!parsed.images.empty());
  int64_t tumours = 0;
  for (const auto& image : parsed.images) {
    CHECK(fs::exists(d / "images" / image.file_name));
    for (const auto& a : image.annotations) {
      ++tumours;
      CHECK(a.polygons.size() == 1);
      CHECK(a.polygons[0].size() == 56);  // 28 vertices
      CHECK(a.area >= 12);  // radii >= ~2 px even on 64x64 slices: never a sliver
    }
  }
  CHECK(tumours >= 4);
  // Same seed, same files.
  const fs::path again = test::scratch_dir("synth_again");
  REQUIRE(test::run_mrcnn("synth --out " + again.string() + " --patients 4 --slices 2 --val-patients 1 --height 64 --width 64 --seed 3").status == 0);
  CHECK(read_json(again / "train.json") == train);
}

TEST_CASE("mrcnn train: logs, metrics, checkpoints, curves, and resume after stopping equals one run") {
  const fs::path dir = test::scratch_dir("resume");
  const fs::path recipe = write_recipe(dir);
  const auto full = test::run_mrcnn("train --config " + recipe.string() + data_args() + " --out " + (dir / "full").string());
  INFO(full.output);
  REQUIRE(full.status == 0);
  CHECK(read_lines(dir / "full" / "log.jsonl").size() == 12);  // 4 epochs x 3 iterations, log_every 1
  const auto metrics = read_lines(dir / "full" / "metrics.jsonl");
  REQUIRE(metrics.size() == 4);
  for (const auto& m : metrics) {
    CHECK(m["segm"]["AP"].get<double>() >= 0);
    CHECK(m["dice"].get<double>() >= 0);
    CHECK(m["dice"].get<double>() <= 1);
    CHECK(m["flip_test"] == false);  // the config's default
  }
  CHECK(metrics[3]["epoch"] == 4);
  CHECK(fs::exists(dir / "full" / "best.safetensors"));
  CHECK(fs::file_size(dir / "full" / "curves.png") > 1000);
  const auto last = nn::load_checkpoint((dir / "full" / "last.safetensors").string());
  CHECK(last.step == 12);
  CHECK(last.extra.at("epoch") == "4");
  // best carries the model and the metadata, not the optimizer state (that is last's, for --resume).
  const auto best = nn::load_checkpoint((dir / "full" / "best.safetensors").string());
  CHECK(!last.optimizer.empty());
  CHECK(best.optimizer.empty());
  CHECK(best.model.size() == last.model.size());
  CHECK(best.extra.count("categories") == 1);
  CHECK(best.config_json == last.config_json);
  CHECK(last.extra.at("categories") == R"([{"id":1,"name":"tumor"}])");

  // 2 epochs, stop; resume for the other 2: the same weights, optimizer state and RNG states.
  const fs::path split = dir / "split";
  auto first = test::run_mrcnn("train --config " + recipe.string() + data_args() + " --out " + split.string() +
                               " --stop-after-epochs 2");
  INFO(first.output);
  REQUIRE(first.status == 0);
  CHECK(first.output.find("continue with --resume") != std::string::npos);
  CHECK(nn::load_checkpoint((split / "last.safetensors").string()).step == 6);
  const auto again = test::run_mrcnn("train --config " + recipe.string() + data_args() + " --out " + split.string());
  CHECK(again.status == 1);
  CHECK(again.output.find("exists: continue it with --resume, or choose another --out") != std::string::npos);
  const auto second = test::run_mrcnn("train --resume --out " + split.string());  // data paths from the checkpoint
  INFO(second.output);
  REQUIRE(second.status == 0);
  check_same_state(dir / "full" / "last.safetensors", split / "last.safetensors");
  CHECK(read_lines(split / "metrics.jsonl") == metrics);
}

TEST_CASE("mrcnn train: Ctrl-C mid-epoch saves a checkpoint that resumes bit-exactly") {
  const fs::path dir = test::scratch_dir("sigint");
  const fs::path recipe = write_recipe(dir, {{"epochs", 2}});
  REQUIRE(test::run_mrcnn("train --config " + recipe.string() + data_args() + " --out " + (dir / "full").string()).status == 0);
  // Interrupt once the second iteration is logged: the run is then somewhere inside epoch 1 or 2.
  const fs::path run = dir / "interrupted";
  const std::string script = "(" + std::string(MRCNN_BINARY) + " train --config " + recipe.string() + data_args() +
                             " --out " + run.string() + " > " + (dir / "log.txt").string() + " 2>&1 & pid=$!; " +
                             "while [ \"$(cat " + (run / "log.jsonl").string() + " 2>/dev/null | wc -l)\" -lt 2 ]; do sleep 0.05; done; " +
                             "kill -INT $pid; wait $pid; echo $? > " + (dir / "status.txt").string() + ")";
  REQUIRE(std::system(("bash -c '" + script + "'").c_str()) == 0);
  std::ifstream status_file(dir / "status.txt");
  int status = -1;
  status_file >> status;
  std::ifstream log_file(dir / "log.txt");
  const std::string log((std::istreambuf_iterator<char>(log_file)), std::istreambuf_iterator<char>());
  INFO(log);
  // 130 when the signal landed during training; 0 if the run had already finished (a very fast machine).
  REQUIRE((status == 130 || status == 0));
  if (status == 130) {
    CHECK(log.find("interrupted: saved") != std::string::npos);
    CHECK(nn::load_checkpoint((run / "last.safetensors").string()).step < 6);
    const auto resumed = test::run_mrcnn("train --resume --out " + run.string());
    INFO(resumed.output);
    REQUIRE(resumed.status == 0);
  }
  check_same_state(dir / "full" / "last.safetensors", run / "last.safetensors");
}

TEST_CASE("mrcnn train with ema_decay: checkpoints hold the average, training itself is unchanged, resume is exact") {
  const fs::path dir = test::scratch_dir("ema");
  const fs::path plain_recipe = write_recipe(dir / "plain", {{"epochs", 2}});
  const fs::path recipe = write_recipe(dir / "ema", {{"epochs", 2}, {"ema_decay", 0.8}});
  const auto plain = test::run_mrcnn("train --config " + plain_recipe.string() + data_args() + " --out " + (dir / "plain_run").string());
  INFO(plain.output);
  REQUIRE(plain.status == 0);
  const auto full = test::run_mrcnn("train --config " + recipe.string() + data_args() + " --out " + (dir / "full").string());
  INFO(full.output);
  REQUIRE(full.status == 0);
  const auto without = nn::load_checkpoint((dir / "plain_run" / "last.safetensors").string());
  const auto with = nn::load_checkpoint((dir / "full" / "last.safetensors").string());
  CHECK(without.training_weights.empty());
  CHECK(with.extra.at("average_updates") == "6");
  // The average only reads the weights: what training stepped, and the optimizer's state, are
  // bit for bit those of the run without it. Tensors it does not track are saved as they are.
  REQUIRE(!with.training_weights.empty());
  double largest_gap = 0;
  for (const auto& [name, t] : without.model) {
    INFO(name);
    const auto stepped = with.training_weights.find(name);
    if (stepped == with.training_weights.end()) {
      CHECK(test::bitwise_equal(with.model.at(name), t));
      continue;
    }
    CHECK(test::bitwise_equal(stepped->second, t));
    largest_gap = std::max(largest_gap, test::max_abs_diff(with.model.at(name), t));
  }
  CHECK(largest_gap > 1e-4);  // the saved model is the average, not the last step's weights
  for (const auto& [name, t] : without.optimizer) CHECK(test::bitwise_equal(with.optimizer.at(name), t));
  // tools/stepped_weights.py turns the averaged checkpoint into the one without the average.
  const fs::path stepped = dir / "stepped.safetensors";
  REQUIRE(std::system(("python3 " + test::source_path("tools/stepped_weights.py") + " " + (dir / "full" / "last.safetensors").string() +
                       " " + stepped.string()).c_str()) == 0);
  const auto unaveraged = nn::load_checkpoint(stepped.string());
  CHECK(unaveraged.training_weights.empty());
  CHECK(unaveraged.optimizer.empty());
  REQUIRE(unaveraged.model.size() == without.model.size());
  for (const auto& [name, t] : without.model) CHECK(test::bitwise_equal(unaveraged.model.at(name), t));
  CHECK(unaveraged.config_json == without.config_json);

  // Stop after one epoch and resume: the same average, weights and state as one run.
  const fs::path split = dir / "split";
  REQUIRE(test::run_mrcnn("train --config " + recipe.string() + data_args() + " --out " + split.string() + " --stop-after-epochs 1").status == 0);
  const auto second = test::run_mrcnn("train --resume --out " + split.string());
  INFO(second.output);
  REQUIRE(second.status == 0);
  check_same_state(dir / "full" / "last.safetensors", split / "last.safetensors");
  CHECK(nn::load_checkpoint((split / "last.safetensors").string()).extra.at("average_updates") == "6");
  CHECK(read_lines(split / "metrics.jsonl") == read_lines(dir / "full" / "metrics.jsonl"));

  // A checkpoint whose average lost its training weights cannot resume silently wrong.
  nn::Checkpoint stripped = with;
  stripped.training_weights.clear();
  fs::create_directories(dir / "stripped");
  nn::save_checkpoint((dir / "stripped" / "last.safetensors").string(), stripped);
  const auto refused = test::run_mrcnn("train --resume --out " + (dir / "stripped").string());
  CHECK(refused.status == 1);
  CHECK(refused.output.find((dir / "stripped" / "last.safetensors").string() +
                            ": has no training weights (training.*) but its recipe keeps a weight average") != std::string::npos);
}

TEST_CASE("mrcnn train: a diverging loss stops with a clear message and keeps the last good checkpoint") {
  const fs::path dir = test::scratch_dir("nan");
  // lr x 1e12 from epoch 2 on: the weights blow up and the loss stops being finite.
  const fs::path recipe = write_recipe(dir, {{"epochs", 3}, {"schedule", "multistep"}, {"milestones", {1}}, {"gamma", 1e12}});
  const auto run = test::run_mrcnn("train --config " + recipe.string() + data_args() + " --out " + (dir / "run").string());
  INFO(run.output);
  CHECK(run.status == 1);
  CHECK(run.output.find("mrcnn: error: train: the loss is ") != std::string::npos);
  CHECK(run.output.find("stopped before updating. " + (dir / "run" / "last.safetensors").string() +
                        " holds the last good state") != std::string::npos);
  const auto last = nn::load_checkpoint((dir / "run" / "last.safetensors").string());
  CHECK(last.extra.at("epoch") == "1");
  int64_t non_finite = 0;
  for (const auto& [name, t] : last.model)
    if (t.dtype() == kFloat32)
      for (float v : to_vector<float>(t)) non_finite += !std::isfinite(v);
  CHECK(non_finite == 0);
}

TEST_CASE("mrcnn train: a val set without images or without objects says so at the end, and writes no best") {
  const fs::path dir = test::scratch_dir("no_val");
  const fs::path d = synthetic_set();
  const fs::path recipe = write_recipe(dir, {{"epochs", 1}});
  json val = read_json(d / "val.json");
  REQUIRE(!val["annotations"].empty());
  val["annotations"] = json::array();
  std::ofstream(dir / "val_no_objects.json") << val.dump();
  val["images"] = json::array();
  std::ofstream(dir / "val_empty.json") << val.dump();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"val_no_objects.json", "(the validation images hold no objects, so no val AP and no best.safetensors)\n"},
      {"val_empty.json", "(no validation images, so no best.safetensors)\n"}};
  for (const auto& [val_file, ending] : cases) {
    INFO(val_file);
    const fs::path run_dir = dir / ("run_" + val_file);
    const auto run = test::run_mrcnn("train --config " + recipe.string() + " --train " + (d / "train.json").string() +
                                     " --val " + (dir / val_file).string() + " --images " + (d / "images").string() +
                                     " --out " + run_dir.string());
    INFO(run.output);
    CHECK(run.status == 0);
    CHECK(run.output.size() > ending.size());
    CHECK(run.output.substr(run.output.size() - ending.size()) == ending);
    CHECK(run.output.find((run_dir / "last.safetensors").string() + " " + ending) != std::string::npos);
    CHECK(fs::exists(run_dir / "last.safetensors"));
    CHECK(!fs::exists(run_dir / "best.safetensors"));
    CHECK(run.output.find("segm AP -1") == std::string::npos);
    if (val_file == "val_no_objects.json") CHECK(run.output.find("epoch 1 val: no objects in the val images, so no AP | Dice ") != std::string::npos);
  }
}

TEST_CASE("mrcnn train: each validation's intervals are those eval gives for the same weights and slices") {
  const fs::path dir = test::scratch_dir("val_intervals");
  const fs::path d = synthetic_set();
  // Validating on the 3 training patients (6 slices): enough patients for a bootstrap.
  const fs::path recipe = write_recipe(dir, {{"epochs", 1}});
  const auto run = test::run_mrcnn("train --config " + recipe.string() + " --train " + (d / "train.json").string() +
                                   " --val " + (d / "train.json").string() + " --images " + (d / "images").string() +
                                   " --out " + (dir / "run").string());
  INFO(run.output);
  REQUIRE(run.status == 0);
  const auto metrics = read_lines(dir / "run" / "metrics.jsonl");
  REQUIRE(metrics.size() == 1);
  const json& intervals = metrics[0]["intervals"];
  CHECK(intervals["patients"] == 3);
  CHECK(intervals["resamples"] == 2000);
  REQUIRE(intervals["dice"].is_array());
  const auto evaluated = test::run_mrcnn("eval --weights " + (dir / "run" / "last.safetensors").string() + " --data " +
                                         (d / "train.json").string() + " --images " + (d / "images").string() +
                                         " --score-thresh 0.3 --json " + (dir / "eval.json").string());
  REQUIRE(evaluated.status == 0);
  const json e = read_json(dir / "eval.json");
  CHECK(e["dice"] == metrics[0]["dice"]);
  CHECK(e["intervals"] == intervals);
  char dice[64];
  std::snprintf(dice, sizeof dice, "| Dice %.3f (%.3f-%.3f) IoU ", metrics[0]["dice"].get<double>(),
                intervals["dice"][0].get<double>(), intervals["dice"][1].get<double>());
  CHECK(run.output.find(dice) != std::string::npos);
  // One validation patient (the synthetic split): no interval, in the JSON or on the line.
  const auto one = test::run_mrcnn("train --config " + recipe.string() + data_args() + " --out " + (dir / "one").string());
  REQUIRE(one.status == 0);
  const auto one_metrics = read_lines(dir / "one" / "metrics.jsonl");
  REQUIRE(one_metrics.size() == 1);
  CHECK(one_metrics[0]["intervals"]["patients"] == 1);
  CHECK(one_metrics[0]["intervals"]["dice"].is_null());
  std::snprintf(dice, sizeof dice, "| Dice %.3f IoU ", one_metrics[0]["dice"].get<double>());
  CHECK(one.output.find(dice) != std::string::npos);
}

TEST_CASE("mrcnn train: bad recipes and data are one error line") {
  const fs::path dir = test::scratch_dir("bad");
  const fs::path d = synthetic_set();
  auto expect_error = [&](const std::string& args, const std::string& message, int status = 1) {
    const auto run = test::run_mrcnn(args);
    INFO(run.output);
    CHECK(run.status == status);
    CHECK(run.output.find(message) != std::string::npos);
  };
  const fs::path unknown = write_recipe(dir / "a", {{"learning_rate", 0.1}});
  expect_error("train --config " + unknown.string() + data_args() + " --out " + (dir / "r").string(),
               unknown.string() + ": config: unknown key \"train.learning_rate\"");
  const fs::path wrong_type = write_recipe(dir / "b", {{"epochs", "many"}});
  expect_error("train --config " + wrong_type.string() + data_args() + " --out " + (dir / "r").string(),
               wrong_type.string() + ": config: train.epochs has the wrong type (string)");
  const fs::path no_average = write_recipe(dir / "e", {{"ema_decay", 1.0}});
  expect_error("train --config " + no_average.string() + data_args() + " --out " + (dir / "r").string(),
               no_average.string() + ": config: train.ema_decay must be in [0, 1) (0 turns the average off)");
  // Settings no optimiser or schedule can use are named before any data is read.
  const std::vector<std::pair<nlohmann::json, std::string>> unusable = {
      {{{"momentum", 1.0}}, "train.momentum must be in [0, 1)"},
      {{{"min_lr", 0.5}}, "train.min_lr must be in [0, lr]"},
      {{{"milestones", {3, 0}}}, "train.milestones are epochs, each >= 1"},
      {{{"warmup_factor", 0.0}}, "train.warmup_factor must be in (0, 1]"},
      {{{"val_score_thresh", 1.5}}, "train.val_score_thresh must be in [0, 1]"}};
  for (size_t i = 0; i < unusable.size(); ++i) {
    const fs::path bad = write_recipe(dir / ("u" + std::to_string(i)), unusable[i].first);
    expect_error("train --config " + bad.string() + data_args() + " --out " + (dir / "r").string(),
                 bad.string() + ": config: " + unusable[i].second);
  }
  // Command-line numbers outside their range are refused by the parser, before any work.
  expect_error("train --config " + write_recipe(dir / "g").string() + data_args() + " --out " + (dir / "r").string() +
                   " --epochs 0",
               "mrcnn: error: --epochs: must be >= 1, got 0 (--help lists the options)", 2);
  expect_error("eval --weights w.safetensors --data d.json --images i --score-thresh 1.5",
               "mrcnn: error: --score-thresh: must be in [0, 1], got 1.5 (--help lists the options)", 2);
  const fs::path recipe = write_recipe(dir / "c");
  expect_error("train --config " + recipe.string() + " --train " + (d / "train.json").string() + " --val " +
                   (d / "val.json").string() + " --images " + (dir / "nowhere").string() + " --out " + (dir / "r").string(),
               (dir / "nowhere").string());
  expect_error("train --resume --out " + (dir / "empty").string(),
               (dir / "empty" / "last.safetensors").string() + ": no checkpoint to resume from");
  json three_classes = read_json(recipe);
  three_classes["num_classes"] = 3;
  std::ofstream(dir / "three.json") << three_classes.dump();
  expect_error("train --config " + (dir / "three.json").string() + data_args() + " --out " + (dir / "r").string(),
               "1 categories but the config's num_classes is 3");
  // A log that cannot take another line (a full disk, here /dev/full) stops the run, naming it.
  fs::create_directories(dir / "full");
  fs::create_symlink("/dev/full", dir / "full" / "epochs.jsonl");
  expect_error("train --config " + write_recipe(dir / "d", {{"epochs", 1}}).string() + data_args() + " --out " + (dir / "full").string(),
               (dir / "full" / "epochs.jsonl").string() + ": cannot append (disk full?)");
}

TEST_CASE("mrcnn train --val-fraction, then predict and eval on the trained model") {
  const fs::path dir = test::scratch_dir("eval");
  const fs::path d = synthetic_set();
  const fs::path recipe = write_recipe(dir, {{"epochs", 1}});
  json flip_recipe = read_json(recipe);
  flip_recipe["flip_test"] = true;  // validation, eval and predict then run both views by default
  std::ofstream(recipe) << flip_recipe.dump(1);
  const auto trained = test::run_mrcnn("train --config " + recipe.string() + " --train " + (d / "train.json").string() +
                                       " --val-fraction 0.3 --images " + (d / "images").string() + " --out " +
                                       (dir / "run").string());
  INFO(trained.output);
  REQUIRE(trained.status == 0);
  CHECK(trained.output.find("2 patients / 4 images for training, 1 / 2 for validation") != std::string::npos);
  CHECK(trained.output.find("2 val images (validated with the flip test)") != std::string::npos);
  CHECK(read_lines(dir / "run" / "metrics.jsonl").at(0)["flip_test"] == true);

  const std::string weights = (dir / "run" / "last.safetensors").string();
  const auto evaluated = test::run_mrcnn("eval --weights " + weights + " --data " + (d / "val.json").string() + " --images " +
                                         (d / "images").string() + " --score-thresh 0.3 --json " + (dir / "eval.json").string() +
                                         " --detections " + (dir / "dets.json").string() + " --report " +
                                         (dir / "report").string());
  INFO(evaluated.output);
  REQUIRE(evaluated.status == 0);
  CHECK(evaluated.output.find("COCO metrics (pycocotools' algorithm, maxDets 100)") != std::string::npos);
  CHECK(evaluated.output.find("Per patient") != std::string::npos);
  const json e = read_json(dir / "eval.json");
  REQUIRE(e["images"].size() == 2);
  CHECK(e["patients"].size() == 1);
  CHECK(e["patients"][0]["patient"] == "p003");
  // The patient's areas are its slices' summed; the difference is relative to the labelled area.
  int64_t truth_pixels = 0, predicted_pixels = 0;
  for (const auto& image : e["images"])
    truth_pixels += image["truth_pixels"].get<int64_t>(), predicted_pixels += image["predicted_pixels"].get<int64_t>();
  REQUIRE(truth_pixels > 0);
  CHECK(e["patients"][0]["truth_pixels"] == truth_pixels);
  CHECK(e["patients"][0]["predicted_pixels"] == predicted_pixels);
  const double area_difference = static_cast<double>(predicted_pixels - truth_pixels) / static_cast<double>(truth_pixels);
  CHECK(e["patients"][0]["area_difference"].get<double>() == doctest::Approx(area_difference).epsilon(1e-12));
  CHECK(e["median_area_difference"].get<double>() == doctest::Approx(std::abs(area_difference)).epsilon(1e-12));
  char area_line[128];
  std::snprintf(area_line, sizeof area_line, " %14lld %15lld %+9.1f%%\n", static_cast<long long>(truth_pixels),
                static_cast<long long>(predicted_pixels), area_difference * 100);
  CHECK(evaluated.output.find(area_line) != std::string::npos);
  char median_line[128];
  std::snprintf(median_line, sizeof median_line, "median |area difference| over the patients with a labelled area: %.1f%%\n",
                std::abs(area_difference) * 100);
  CHECK(evaluated.output.find(median_line) != std::string::npos);
  double dice_sum = 0;
  for (const auto& image : e["images"]) dice_sum += image["dice"].get<double>();
  CHECK(e["dice"].get<double>() == doctest::Approx(dice_sum / 2).epsilon(1e-12));
  CHECK(e["flip_test"] == true);  // from the config the checkpoint carries
  // One validation patient: no bootstrap interval, and the table says why.
  CHECK(e["intervals"]["patients"] == 1);
  CHECK(e["intervals"]["dice"].is_null());
  CHECK(evaluated.output.find("(no intervals: the bootstrap resamples patients, and there is 1)") != std::string::npos);
  CHECK(evaluated.output.find("(flip test: each image also run mirrored, the two views averaged)") != std::string::npos);
  // Operating points 0.1 .. 0.9: the 0.3 row is the headline above (--score-thresh 0.3).
  CHECK(evaluated.output.find("Operating points (the figures above at other score thresholds") != std::string::npos);
  const auto& rows = e["operating_points"];
  REQUIRE(rows.size() == 9);
  CHECK(rows[0]["score_thresh"].get<double>() == 0.1);
  CHECK(rows[8]["score_thresh"].get<double>() == 0.9);
  CHECK(rows[2]["dice"].get<double>() == e["dice"].get<double>());
  CHECK(rows[2]["false_positives"] == e["lesions"]["false_positives"]);
  for (size_t i = 1; i < rows.size(); ++i) CHECK(rows[i]["false_positives"].get<int64_t>() <= rows[i - 1]["false_positives"].get<int64_t>());
  // The AP figures are those of the detections it wrote.
  const CocoDataset truth = load_coco((d / "val.json").string());
  std::ifstream dets_file(dir / "dets.json");
  const std::string dets_text((std::istreambuf_iterator<char>(dets_file)), std::istreambuf_iterator<char>());
  const auto detections = parse_results(dets_text, "dets.json", truth);
  CHECK(coco_evaluate(truth, detections, IouType::Segm).stats[0] == doctest::Approx(e["segm"]["AP"].get<double>()).epsilon(1e-12));
  CHECK(coco_evaluate(truth, detections, IouType::Bbox).stats[1] == doctest::Approx(e["bbox"]["AP50"].get<double>()).epsilon(1e-12));
  // The report lists images worst Dice first, each with its overlay.
  std::ifstream html_file(dir / "report" / "index.html");
  const std::string html((std::istreambuf_iterator<char>(html_file)), std::istreambuf_iterator<char>());
  const auto& images = e["images"];
  const bool first_is_worse = images[0]["dice"].get<double>() <= images[1]["dice"].get<double>();
  const std::string worse = images[first_is_worse ? 0 : 1]["file_name"], better = images[first_is_worse ? 1 : 0]["file_name"];
  CHECK(html.find("<td class=l>" + worse) < html.find("<td class=l>" + better));
  CHECK(html.find("<h2>Operating points</h2>") < html.find("<h2>Per patient</h2>"));
  for (const auto& image : images)
    CHECK(fs::exists(dir / "report" / "images" /
                     (std::to_string(image["image_id"].get<int64_t>()) + "_" + fs::path(image["file_name"].get<std::string>()).stem().string() + ".png")));
  CHECK(html.find("<h2>How to read this report</h2>") != std::string::npos);
  CHECK(html.find("<th>HD95 (px)</th>") != std::string::npos);
  CHECK(html.find("<th>labelled area (px)</th><th>predicted area (px)</th><th>difference</th>") != std::string::npos);
  CHECK(html.find("a lesion is found when a predicted mask scoring &ge; 0.30 overlaps it with IoU &ge; 0.50") != std::string::npos);

  // --pixel-mm: HD95 also in millimetres, beside the pixels (JSON) or instead of them (table, report).
  const auto one_view = test::run_mrcnn("eval --weights " + weights + " --data " + (d / "val.json").string() + " --images " +
                                        (d / "images").string() + " --no-flip-test --json " + (dir / "eval1.json").string() +
                                        " --pixel-mm 0.5 --score-thresh 0.3 --report " + (dir / "report_mm").string() +
                                        " --cams --detections " + (dir / "dets1.json").string());
  REQUIRE(one_view.status == 0);
  const json in_mm = read_json(dir / "eval1.json");
  CHECK(in_mm["flip_test"] == false);
  CHECK(one_view.output.find("flip test") == std::string::npos);
  CHECK(in_mm["pixel_mm"] == 0.5);
  CHECK(e.count("pixel_mm") == 0);
  CHECK(e["images"][0].count("hd95_mm") == 0);
  auto check_mm = [](const json& entry) {
    if (entry["hd95"].is_null()) {
      CHECK(entry["hd95_mm"].is_null());
    } else {
      CHECK(entry["hd95_mm"].get<double>() == entry["hd95"].get<double>() * 0.5);
    }
  };
  check_mm(in_mm);
  for (const char* list : {"images", "patients", "operating_points"}) {
    REQUIRE(!in_mm[list].empty());
    for (const auto& entry : in_mm[list]) check_mm(entry);
  }
  if (!in_mm["hd95"].is_null()) {
    char line[64];
    std::snprintf(line, sizeof line, "HD95 %.2f mm (over ", in_mm["hd95"].get<double>() * 0.5);
    CHECK(one_view.output.find(line) != std::string::npos);
  }
  std::ifstream mm_file(dir / "report_mm" / "index.html");
  const std::string mm_html((std::istreambuf_iterator<char>(mm_file)), std::istreambuf_iterator<char>());
  CHECK(mm_html.find("<th>HD95 (mm)</th>") != std::string::npos);
  CHECK(mm_html.find("<th>labelled area (mm&sup2;)</th>") != std::string::npos);
  // --cams: beside each overlay, why the image's best detection (scoring >= 0.3) scored; "-" without one.
  CHECK(mm_html.find("<th class=l>why the best detection scored</th>") != std::string::npos);
  CHECK(mm_html.find("<dt>Why the best detection scored</dt>") != std::string::npos);
  CHECK(html.find("why the best detection scored") == std::string::npos);  // only when asked for
  const json one_view_dets = read_json(dir / "dets1.json");
  for (const auto& image : in_mm["images"]) {
    bool scored = false;
    for (const auto& det : one_view_dets) scored = scored || (det["image_id"] == image["image_id"] && det["score"].get<double>() >= 0.3);
    const std::string cam = "images/" + std::to_string(image["image_id"].get<int64_t>()) + "_" +
                            fs::path(image["file_name"].get<std::string>()).stem().string() + "_cam.png";
    CHECK(fs::exists(dir / "report_mm" / cam) == scored);
    CHECK((mm_html.find("<img src=\"" + cam + "\"") != std::string::npos) == scored);
    if (scored) CHECK(load_image((dir / "report_mm" / cam).string(), 3).size(0) == 3);
  }
  const auto cams_without_report = test::run_mrcnn("eval --weights " + weights + " --data " + (d / "val.json").string() +
                                                   " --images " + (d / "images").string() + " --cams");
  CHECK(cams_without_report.status == 1);
  CHECK(cams_without_report.output ==
        "mrcnn: error: eval: --cams draws maps in the report of a model's run: give --report and --weights\n");
  for (const auto& patient : in_mm["patients"]) {
    CHECK(patient["truth_mm2"].get<double>() == patient["truth_pixels"].get<double>() * 0.25);
    CHECK(patient["predicted_mm2"].get<double>() == patient["predicted_pixels"].get<double>() * 0.25);
  }
  CHECK(e["patients"][0].count("truth_mm2") == 0);
  CHECK(mm_html.find("millimetres (pixels &times; 0.5 mm)") != std::string::npos);
  const auto no_spacing = test::run_mrcnn("eval --weights " + weights + " --data x.json --images . --pixel-mm 0");
  CHECK(no_spacing.status == 2);
  CHECK(no_spacing.output == "mrcnn: error: --pixel-mm: must be > 0, got 0 (--help lists the options)\n");

  const auto predicted = test::run_mrcnn("predict --weights " + weights + " " + (d / "images" / "p003_00.png").string() +
                                         " --json " + (dir / "predict.json").string());
  REQUIRE(predicted.status == 0);
  CHECK(read_json(dir / "predict.json").is_array());
}

TEST_CASE("mrcnn train and eval: a short smoke run on the real slices (skipped without ../shared/datasets/brain-tumor)") {
  const char* env = std::getenv("MRCNN_DATA");
  const fs::path data = env ? env : std::string(MRCNN_TEST_SOURCE_DIR) + "/../shared/datasets/brain-tumor";
  if (!fs::exists(data / "val.json")) {
    std::cout << "SKIPPED: no dataset at " << data.string() << "\n";  // ctest reports the case as skipped
    return;
  }
  // The tiny model, one epoch on the 8 val patients' slices (JPEGs of several sizes, patients held
  // out by --val-fraction), then eval on the whole val split: the real files go through every step.
  const fs::path dir = test::scratch_dir("real");
  const fs::path recipe = write_recipe(dir, {{"epochs", 1}, {"batch_size", 4}, {"log_every", 2}});
  const auto trained = test::run_mrcnn("train --config " + recipe.string() + " --train " + (data / "val.json").string() +
                                       " --val-fraction 0.25 --images " + (data / "images").string() + " --out " +
                                       (dir / "run").string());
  INFO(trained.output);
  REQUIRE(trained.status == 0);
  const auto log = read_lines(dir / "run" / "log.jsonl");
  REQUIRE(!log.empty());
  for (const auto& line : log) CHECK(std::isfinite(line["loss"].get<double>()));
  REQUIRE(read_lines(dir / "run" / "metrics.jsonl").size() == 1);
  const auto evaluated = test::run_mrcnn("eval --weights " + (dir / "run" / "last.safetensors").string() + " --data " +
                                         (data / "val.json").string() + " --images " + (data / "images").string() +
                                         " --json " + (dir / "eval.json").string());
  INFO(evaluated.output);
  REQUIRE(evaluated.status == 0);
  const json e = read_json(dir / "eval.json");
  CHECK(e["images"].size() == 47);
  CHECK(e["patients"].size() == 8);
  CHECK(e["lesions"]["total"] == 47);
}
