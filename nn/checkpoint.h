// Checkpoints as one safetensors file: the model's parameters and buffers under their torchvision
// names, the optimizer's state under "optimizer.<param>.<slot>", the weights the optimizer steps
// under "training.<name>" when the model tensors hold their moving average, and in __metadata__ the config
// JSON, the step and the random generators' states, so training resumes exactly. Written to a
// temporary file and renamed: an interrupted save never leaves a half-written checkpoint.
#pragma once
#include <map>
#include <string>

#include "nn/module.h"
#include "tensor/random.h"

namespace mrcnn::nn {

class Optimizer;

struct Checkpoint {
  std::map<std::string, Tensor> model;      // torchvision names
  std::map<std::string, Tensor> optimizer;  // "<param>.<slot>" and "step"; empty for weights only
  // With a moving average of the weights, `model` holds the average (what validation measured and
  // predict loads) and this the tensors training was stepping; empty otherwise.
  std::map<std::string, Tensor> training_weights;
  std::string config_json;                  // the model config ("" when absent)
  int64_t step = 0;
  std::map<std::string, std::pair<uint64_t, uint64_t>> generators;  // name -> (seed, offset)
  std::map<std::string, std::string> extra;                          // other metadata, kept as is
};

Checkpoint make_checkpoint(const Module& model, const Optimizer* optimizer, const std::string& config_json,
                           int64_t step, const std::map<std::string, const Generator*>& generators = {});
void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);
// What load_checkpoint reads: everything (to resume training), or only the model's tensors and
// the metadata (to predict or evaluate: the optimizer state and the stepped weights, as large as
// the model each, are left on disk).
enum class CheckpointParts { All, ModelOnly };
// Errors name the file; a file that is not a checkpoint (no model tensors) is rejected.
Checkpoint load_checkpoint(const std::string& path, CheckpointParts parts = CheckpointParts::All);
// Restores generator states saved by make_checkpoint (missing names are an error).
void restore_generators(const Checkpoint& checkpoint, const std::map<std::string, Generator*>& generators);

}  // namespace mrcnn::nn
