// The `mrcnn` binary: one line per error on stderr and a non-zero exit, never a crash.
//   version   build and machine facts         inspect  tensors and metadata of a safetensors file
//   predict   detections as COCO results JSON  bench    train-step and inference timing
//   split     patient-grouped train/val split of a COCO file
#include <CLI/CLI.hpp>
#include <iostream>

#include "apps/commands.h"
#include "cuda/context.h"
#include "tensor/parallel.h"
#include "tensor/safetensors.h"

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
  predict_cmd->add_option("images", predict.images, "image files (JPEG, PNG, BMP, ...)")->required();
  predict_cmd->add_option("--json", predict.json_out, "output: COCO results JSON")->required();
  predict_cmd->add_option("--out", predict.out_dir, "also write an overlay PNG per image into this folder");
  predict_cmd->add_option("--score-thresh", predict.score_thresh, "drop detections scoring below this (default 0)");
  predict_cmd->add_option("--device", predict.device, "cpu (default)");

  mrcnn::apps::BenchOptions bench;
  auto* bench_cmd = app.add_subcommand("bench", "median train-step and inference time on a synthetic batch");
  bench_cmd->add_option("--config", bench.config, "model config JSON")->required();
  bench_cmd->add_option("--weights", bench.weights, "start from these weights instead of a random init");
  bench_cmd->add_option("--size", bench.size, "image size HxW (default 256x256)");
  bench_cmd->add_option("--batch", bench.batch, "images per step (default 2)");
  bench_cmd->add_option("--steps", bench.steps, "timed steps (default 10)");
  bench_cmd->add_option("--warmup", bench.warmup, "untimed steps first (default 2)");
  bench_cmd->add_option("--device", bench.device, "cpu (default)");
  bench_cmd->add_option("--json", bench.json_out, "also write the figures as JSON");

  mrcnn::apps::SplitOptions split;
  auto* split_cmd = app.add_subcommand("split", "split a COCO file into train/val with no patient in both");
  split_cmd->add_option("--data", split.data, "COCO JSON with every image")->required();
  split_cmd->add_option("--val-fraction", split.val_fraction, "share of images for validation (default 0.15)");
  split_cmd->add_option("--group-regex", split.group_regex,
                        "first capture group of this on file_name = the patient (default '^([^_]+)_')");
  split_cmd->add_option("--seed", split.seed, "which patients go to val (default 0)");
  split_cmd->add_option("--train-out", split.train_out, "default: <data>.train.json next to the input");
  split_cmd->add_option("--val-out", split.val_out, "default: <data>.val.json next to the input");

  CLI11_PARSE(app, argc, argv);
  try {
    if (*version) {
      std::cout << "mrcnn 0.1\n"
                << "cuda: " << (mrcnn::cuda::built_with_cuda() ? "built" : "not built") << ", "
                << (mrcnn::cuda::is_available() ? "device " + mrcnn::cuda::device_name(0) : mrcnn::cuda::unavailable_reason())
                << "\nthreads: " << mrcnn::num_threads() << "\n";
    } else if (*inspect) {
      const auto file = mrcnn::safetensors::load(path);
      for (const auto& [key, value] : file.metadata) std::cout << "metadata " << key << " = " << value << "\n";
      for (const auto& [name, tensor] : file.tensors)
        std::cout << name << " " << mrcnn::dtype_name(tensor.dtype()) << " " << mrcnn::shape_str(tensor.sizes()) << "\n";
    } else if (*predict_cmd) {
      return mrcnn::apps::predict(predict);
    } else if (*bench_cmd) {
      return mrcnn::apps::bench(bench);
    } else if (*split_cmd) {
      return mrcnn::apps::split(split);
    }
  } catch (const std::exception& e) {
    std::cerr << "mrcnn: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
