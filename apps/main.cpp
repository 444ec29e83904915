// The `mrcnn` binary: one line per error on stderr and a non-zero exit, never a crash.
//   version   build and machine facts         inspect  tensors and metadata of a safetensors file
//   predict   detections as COCO results JSON  bench    train-step and inference timing
//   split     patient-grouped train/val split of a COCO file
//   train     train from a recipe on COCO data     eval     COCO AP, Dice/HD95, lesions, HTML report
//   synth     synthetic MRI-like COCO set          selftest gradchecks, float32 kernels (and CUDA parity)
//   curves    redraw a run's curves.png           compare  two evaluations, paired patient bootstrap
//   features  every stage of one image, backbone to detections (safetensors + PNGs)
#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <new>
#include <stdexcept>

#include "apps/commands.h"
#include "apps/plot.h"
#include "cuda/context.h"
#include "cuda/conv.h"
#include "cuda/linalg.h"
#include "cuda/roi_align.h"
#include "tensor/parallel.h"
#include "tensor/safetensors.h"

namespace {

// --flip-test / --no-flip-test; neither: the model config's flip_test decides.
void add_flip_test_flags(CLI::App* command, std::optional<bool>& flip_test) {
  auto* on = command->add_flag_callback("--flip-test", [&flip_test] { flip_test = true; },
                                        "also run each image mirrored left-right and average the two views (about 2x "
                                        "the time; default: the config's flip_test)");
  auto* off = command->add_flag_callback("--no-flip-test", [&flip_test] { flip_test = false; },
                                         "one view per image even where the config's flip_test is true");
  on->excludes(off);
}

// A number the option accepts only where ok(value) holds; refusals read "--name: must be RULE, got X".
CLI::Validator number_where(bool (*ok)(double), const std::string& rule) {
  CLI::Validator validator(
      [ok, rule](std::string& text) -> std::string {
        try {
          size_t used = 0;
          if (const double value = std::stod(text, &used); used == text.size() && ok(value)) return "";
        } catch (const std::exception&) {
        }
        return "must be " + rule + ", got " + text;
      },
      "");
  return validator;
}

const CLI::Validator kAtLeastOne = number_where([](double v) { return v >= 1; }, ">= 1");
const CLI::Validator kNonNegative = number_where([](double v) { return v >= 0; }, ">= 0");
const CLI::Validator kUnitInterval = number_where([](double v) { return v >= 0 && v <= 1; }, "in [0, 1]");
const CLI::Validator kOpenUnitInterval = number_where([](double v) { return v > 0 && v < 1; }, "in (0, 1)");
const CLI::Validator kPositive = number_where([](double v) { return v > 0; }, "> 0");
const CLI::Validator kPositiveFraction = number_where([](double v) { return v > 0 && v <= 1; }, "in (0, 1]");

// The command word: the first argument that is neither a global option nor the value of one.
// CLI11 only says "A subcommand is required" for a misspelt one, so main names it itself.
std::optional<std::string> command_word(int argc, char** argv, const CLI::App& app) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.empty() || arg[0] != '-') return arg;
    const CLI::Option* option = arg.find('=') == std::string::npos ? app.get_option_no_throw(arg) : nullptr;
    if (option != nullptr && option->get_expected_min() > 0) ++i;  // its value follows (flags take none)
  }
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mrcnn: Mask R-CNN in C++ (CPU and CUDA), from tensors to training"};
  app.require_subcommand(1);
  auto* version = app.add_subcommand("version", "print build and machine facts");
  auto* inspect = app.add_subcommand("inspect", "list the tensors and metadata of a safetensors file");
  std::string path;
  inspect->add_option("file", path, "a .safetensors file")->required();

  mrcnn::apps::PredictOptions predict;
  auto* predict_cmd = app.add_subcommand("predict", "detect and segment: COCO results JSON, optional overlay PNGs");
  predict_cmd->add_option("--weights", predict.weights, "checkpoint (.safetensors)")->required();
  predict_cmd->add_option("--config", predict.config, "model config JSON (default: the checkpoint's)");
  predict_cmd->add_option("images", predict.images, "image files (JPEG, PNG, BMP, ...) or folders of them")->required();
  predict_cmd->add_option("--json", predict.json_out, "output: COCO results JSON")->required();
  predict_cmd->add_option("--out", predict.out_dir, "also write an overlay PNG per image into this folder");
  predict_cmd->add_option("--masks", predict.masks_dir,
                          "also write each image's mask into this folder: <name>_mask.png, 255 where a written "
                          "detection lies, else 0 (with --score-thresh 0.5, the mask eval scores); several classes: "
                          "each pixel the label 1, 2, ... of the best detection on it");
  predict_cmd->add_option("--score-thresh", predict.score_thresh, "drop detections scoring below this (default 0)")
      ->check(kUnitInterval);
  predict_cmd->add_option("--pixel-mm", predict.pixel_mm,
                          "millimetres per pixel in the slices' plane: areas also in mm^2 (JSON area_mm2, progress lines)")
      ->check(kPositive);
  predict_cmd->add_option("--summary", predict.summary,
                          "also write a per-patient CSV (slices, slices with a detection, largest and total covered "
                          "area) and print it as a table");
  predict_cmd->add_option("--report", predict.report_dir,
                          "also write an HTML report here: the per-patient table and every slice's overlay, by patient");
  predict_cmd->add_option("--group-regex", predict.group_regex,
                          "for --summary and --report: patient = first capture group on the file name (default "
                          "'^([^_]+)_')");
  predict_cmd->add_option("--slice-mm", predict.slice_mm,
                          "for --summary and --report, with --pixel-mm: the spacing of a patient's consecutive slices, "
                          "for a volume (sum of areas x spacing)")
      ->check(kPositive);
  predict_cmd->add_flag("--cams", predict.cams,
                        "with --out / --report: a heat map of why each slice's best detection scored (HiResCAM)");
  predict_cmd->add_option("--device", predict.device, "cpu (default), cuda or cuda:N");
  add_flip_test_flags(predict_cmd, predict.flip_test);

  mrcnn::apps::FeaturesOptions features;
  auto* features_cmd =
      app.add_subcommand("features", "every stage of one image (backbone, FPN, RPN, box and mask heads): safetensors + PNGs");
  features_cmd->add_option("--weights", features.weights, "checkpoint (.safetensors)")->required();
  features_cmd->add_option("--config", features.config, "model config JSON (default: the checkpoint's)");
  features_cmd->add_option("image", features.image, "an image file")->required();
  features_cmd->add_option("--out", features.out_dir, "folder for features.safetensors and the PNGs")->required();
  features_cmd->add_option("--layers", features.layers,
                           "also the outputs of the layers whose whole dotted names match this regex, e.g. "
                           "'backbone\\.body\\.layer1\\.0\\..*'");
  features_cmd->add_option("--cams", features.cams,
                           "class activation maps (HiResCAM) of this many detections, highest score first (default 4)")
      ->check(kNonNegative);
  features_cmd->add_option("--device", features.device, "cpu (default), cuda or cuda:N");

  mrcnn::apps::BenchOptions bench;
  auto* bench_cmd = app.add_subcommand("bench", "median train-step and inference time on a synthetic batch");
  bench_cmd->add_option("--config", bench.config, "model config JSON")->required();
  bench_cmd->add_option("--weights", bench.weights, "start from these weights instead of a random init");
  bench_cmd->add_option("--size", bench.size, "image size HxW (default 256x256)");
  bench_cmd->add_option("--batch", bench.batch, "images per step (default 2)");
  bench_cmd->add_option("--steps", bench.steps, "timed steps (default 10)");
  bench_cmd->add_option("--warmup", bench.warmup, "untimed steps first (default 2)")->check(kNonNegative);
  bench_cmd->add_option("--device", bench.device, "cpu (default), cuda or cuda:N");
  bench_cmd->add_option("--json", bench.json_out, "also write the figures as JSON");
  bench_cmd->add_flag("--profile", bench.profile, "also print the time of each stage (transform, backbone, RPN, heads, ...)");
  bench_cmd->add_option("--allocation-trace", bench.allocation_trace,
                        "CPU: write every tensor allocation and release (model construction, train steps, inference) "
                        "to this file, for bench/allocator_replay");

  mrcnn::apps::SplitOptions split;
  auto* split_cmd = app.add_subcommand("split", "split a COCO file into train/val with no patient in both");
  split_cmd->add_option("--data", split.data, "COCO JSON with every image")->required();
  split_cmd->add_option("--val-fraction", split.val_fraction, "share of images for validation (default 0.15)");
  split_cmd->add_option("--group-regex", split.group_regex,
                        "first capture group of this on file_name = the patient (default '^([^_]+)_')");
  split_cmd->add_option("--seed", split.seed, "which patients go to val (default 0)");
  split_cmd->add_option("--train-out", split.train_out, "default: <data>.train.json next to the input");
  split_cmd->add_option("--val-out", split.val_out, "default: <data>.val.json next to the input");

  mrcnn::apps::TrainOptions train;
  auto* train_cmd = app.add_subcommand("train", "train on COCO data; RUN/ gets logs, metrics, checkpoints, curves.png");
  train_cmd->add_option("--config", train.config, "recipe: model config + \"train\" settings (e.g. configs/brain_tumor_cpu.json)");
  train_cmd->add_option("--train", train.train, "COCO JSON of the training images");
  train_cmd->add_option("--val", train.val, "COCO JSON of the validation images");
  train_cmd->add_option("--val-fraction", train.val_fraction, "instead of --val: hold out whole patients of --train");
  train_cmd->add_option("--group-regex", train.group_regex, "patient = first capture group on file_name (default '^([^_]+)_')");
  train_cmd->add_option("--images", train.images, "folder holding the images");
  train_cmd->add_option("--out", train.out, "run folder")->required();
  train_cmd->add_option("--weights", train.weights, "start from these weights (ours or exported torchvision)");
  train_cmd->add_flag("--resume", train.resume, "continue RUN/last.safetensors exactly where it stopped");
  train_cmd->add_option("--epochs", train.epochs, "override the recipe's train.epochs")->check(kAtLeastOne);
  train_cmd->add_option("--stop-after-epochs", train.stop_after_epochs, "save and exit after this many epochs")
      ->check(kAtLeastOne);
  train_cmd->add_option("--device", train.device, "cpu (default), cuda or cuda:N");

  mrcnn::apps::EvalOptions eval;
  auto* eval_cmd = app.add_subcommand("eval", "COCO AP, Dice/IoU/HD95 per image and patient, lesion counts, HTML report");
  eval_cmd->add_option("--weights", eval.weights, "checkpoint (.safetensors) to run on the images");
  eval_cmd->add_option("--results", eval.results,
                       "instead of --weights: score these detections, a COCO results JSON with masks (from mrcnn "
                       "predict or another tool; entries with a file_name are matched by it, others by image_id)");
  eval_cmd->add_option("--config", eval.config, "model config JSON (default: the checkpoint's)");
  eval_cmd->add_option("--data", eval.data, "COCO JSON with the truth")->required();
  eval_cmd->add_option("--images", eval.images, "folder holding the images")->required();
  eval_cmd->add_option("--score-thresh", eval.score_thresh, "detections in the Dice/lesion metrics (default 0.5; AP uses all)")
      ->check(kUnitInterval);
  eval_cmd->add_option("--lesion-iou", eval.lesion_iou, "mask IoU for a lesion to count as found (default 0.5)")
      ->check(kPositiveFraction);
  eval_cmd->add_option("--pixel-mm", eval.pixel_mm,
                       "millimetres per pixel in the slices' plane: HD95 also in mm (table, report, JSON hd95_mm)")
      ->check(kPositive);
  eval_cmd->add_option("--group-regex", eval.group_regex, "patient = first capture group on file_name (default '^([^_]+)_')");
  eval_cmd->add_option("--json", eval.json_out, "write every figure, per image and per patient, as JSON");
  eval_cmd->add_option("--detections", eval.detections_out, "write the detections as COCO results JSON");
  eval_cmd->add_option("--report", eval.report_dir, "write an HTML report with overlays here");
  eval_cmd->add_flag("--cams", eval.cams, "with --report and --weights: a heat map of why each image's best detection scored");
  eval_cmd->add_option("--device", eval.device, "cpu (default), cuda or cuda:N");
  add_flip_test_flags(eval_cmd, eval.flip_test);

  mrcnn::apps::CompareOptions compare;
  auto* compare_cmd = app.add_subcommand(
      "compare", "two eval --json files of the same images: each figure's difference with a paired patient-bootstrap interval");
  compare_cmd->add_option("a", compare.a, "the first evaluation (mrcnn eval --json)")->required();
  compare_cmd->add_option("b", compare.b, "the second evaluation, of the same images")->required();
  compare_cmd->add_option("--json", compare.json_out, "also write the figures as JSON");
  compare_cmd->add_option("--level", compare.level, "interval level (default 0.95)")->check(kOpenUnitInterval);
  compare_cmd->add_option("--resamples", compare.resamples, "bootstrap resamples (default 2000)")->check(kAtLeastOne);
  compare_cmd->add_option("--seed", compare.seed, "bootstrap seed (default 0)");

  mrcnn::apps::SynthOptions synth;
  auto* synth_cmd = app.add_subcommand("synth", "write a synthetic MRI-like COCO dataset (demo and tests)");
  synth_cmd->add_option("--out", synth.out, "folder: images/, train.json, val.json")->required();
  synth_cmd->add_option("--patients", synth.patients, "patients (default 12)");
  synth_cmd->add_option("--slices", synth.slices, "slices per patient (default 8)");
  synth_cmd->add_option("--val-patients", synth.val_patients, "patients in val.json (default 3)");
  synth_cmd->add_option("--height", synth.height, "image height (default 128)");
  synth_cmd->add_option("--width", synth.width, "image width (default 128)");
  synth_cmd->add_option("--negative-fraction", synth.negative_fraction, "share of slices without tumour (default 0.15)");
  synth_cmd->add_option("--seed", synth.seed, "random seed (default 0)");

  std::string curves_run;
  auto* curves_cmd = app.add_subcommand("curves", "redraw RUN/curves.png from a run's epochs.jsonl and metrics.jsonl");
  curves_cmd->add_option("run", curves_run, "run folder (mrcnn train --out)")->required();
  auto* selftest_cmd = app.add_subcommand("selftest", "check every op's gradients, this CPU's float32 kernels (and CUDA vs CPU) on this machine");

  bool tf32 = false;
  app.add_flag("--tf32", tf32,
               "CUDA: float32 matrix products and convolutions on TF32 tensor cores (faster; 10-bit mantissa)");
  int64_t workspace_limit_mb = -1;
  app.add_option("--cudnn-workspace-limit", workspace_limit_mb,
                 "CUDA: the most workspace memory (MB) one cuDNN convolution may take; by default its fastest "
                 "algorithm, whatever it needs")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  bool deterministic = false;
  app.add_flag("--deterministic", deterministic,
               "CUDA: RoIAlign backward without atomic adds (bit-identical run to run, slower)");
  {
    const auto word = command_word(argc, argv, app);
    std::string commands;
    bool known = false;
    for (const CLI::App* command : app.get_subcommands([](CLI::App*) { return true; })) {
      commands += (commands.empty() ? "" : ", ") + command->get_name();
      known = known || (word && command->get_name() == *word);
    }
    const bool help = std::any_of(argv + 1, argv + argc, [](const char* a) { return a == std::string("--help") || a == std::string("-h"); });
    if (!known && !(help && !word)) {
      std::cerr << "mrcnn: error: " << (word ? "unknown command \"" + *word + "\"" : std::string("no command given"))
                << " (commands: " << commands << ")\n";
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line in the same form as every other error; 2 is the usual exit status for bad usage.
    std::cerr << "mrcnn: error: " << e.what() << " (--help lists the options)\n";
    return 2;
  }
  mrcnn::cuda::set_allow_tf32(tf32);
  mrcnn::cuda::set_deterministic(deterministic);
  if (workspace_limit_mb >= 0) mrcnn::cuda::set_conv_workspace_limit(static_cast<size_t>(workspace_limit_mb) << 20);
  try {
    if (*version) {
      std::cout << "mrcnn 0.1\n"
                << "cuda: " << (mrcnn::cuda::built_with_cuda() ? "built" : "not built") << ", "
                << (mrcnn::cuda::is_available() ? "device " + mrcnn::cuda::device_name(0) : mrcnn::cuda::unavailable_reason())
                << "\nthreads: " << mrcnn::num_threads() << "\n";
    } else if (*inspect) {
      const auto file = mrcnn::safetensors::load(path);
      for (const auto& [key, value] : file.metadata) std::cout << "metadata " << key << " = " << value << "\n";
      int64_t elements = 0, bytes = 0;
      for (const auto& [name, tensor] : file.tensors) {
        std::cout << name << " " << mrcnn::dtype_name(tensor.dtype()) << " " << mrcnn::shape_str(tensor.sizes()) << "\n";
        elements += tensor.numel();
        bytes += tensor.numel() * static_cast<int64_t>(mrcnn::dtype_size(tensor.dtype()));
      }
      std::printf("%zu tensors, %lld elements, %.1f MB\n", file.tensors.size(), static_cast<long long>(elements), bytes / 1e6);
    } else if (*predict_cmd) {
      return mrcnn::apps::predict(predict);
    } else if (*features_cmd) {
      return mrcnn::apps::features(features);
    } else if (*bench_cmd) {
      return mrcnn::apps::bench(bench);
    } else if (*split_cmd) {
      return mrcnn::apps::split(split);
    } else if (*curves_cmd) {
      mrcnn::apps::draw_training_curves(curves_run);
      std::printf("wrote %s/curves.png\n", curves_run.c_str());
    } else if (*selftest_cmd) {
      return mrcnn::apps::selftest();
    } else if (*synth_cmd) {
      return mrcnn::apps::synth(synth);
    } else if (*eval_cmd) {
      return mrcnn::apps::eval(eval);
    } else if (*compare_cmd) {
      return mrcnn::apps::compare(compare);
    } else if (*train_cmd) {
      return mrcnn::apps::train(train);
    }
  } catch (const std::bad_alloc&) {  // its what() is only "std::bad_alloc"
    std::cerr << "mrcnn: error: out of host memory (a standard-library allocation failed)\n";
    return 1;
  } catch (const std::length_error& e) {  // what() names only the container's function
    std::cerr << "mrcnn: error: a size beyond what memory can hold was asked for (" << e.what() << ")\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "mrcnn: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
