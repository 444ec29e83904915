// Checkpoint <-> safetensors: tensors by name, everything else as strings in __metadata__.
#include "nn/checkpoint.h"

#include <nlohmann/json.hpp>

#include "nn/optim.h"
#include "tensor/json_number.h"
#include "tensor/safetensors.h"

namespace mrcnn::nn {

namespace {
constexpr const char* kFormat = "mrcnn-checkpoint/1";
constexpr const char* kOptimizerPrefix = "optimizer.";
constexpr const char* kTrainingPrefix = "training.";

bool starts_with(const std::string& name, const char* prefix) { return name.rfind(prefix, 0) == 0; }
}  // namespace

Checkpoint make_checkpoint(const Module& model, const Optimizer* optimizer, const std::string& config_json,
                           int64_t step, const std::map<std::string, const Generator*>& generators) {
  Checkpoint c;
  c.model = model.state_dict();
  if (optimizer != nullptr) c.optimizer = optimizer->state_dict();
  c.config_json = config_json;
  c.step = step;
  for (const auto& [name, g] : generators) c.generators[name] = {g->seed(), g->offset()};
  return c;
}

void save_checkpoint(const std::string& path, const Checkpoint& c) {
  safetensors::File file;
  for (const auto& [name, t] : c.model) {
    check(!starts_with(name, kOptimizerPrefix) && !starts_with(name, kTrainingPrefix), "checkpoint: model tensor name ", name,
          " collides with the optimizer. or training. prefix");
    file.tensors[name] = copy_as(t, t.dtype(), kCPU);
  }
  for (const auto& [name, t] : c.optimizer) file.tensors[kOptimizerPrefix + name] = copy_as(t, t.dtype(), kCPU);
  for (const auto& [name, t] : c.training_weights) file.tensors[kTrainingPrefix + name] = copy_as(t, t.dtype(), kCPU);
  file.metadata = c.extra;
  file.metadata["format"] = kFormat;
  if (!c.config_json.empty()) file.metadata["config"] = c.config_json;
  file.metadata["step"] = std::to_string(c.step);
  nlohmann::json rng = nlohmann::json::object();
  for (const auto& [name, state] : c.generators) rng[name] = {state.first, state.second};
  file.metadata["rng"] = rng.dump();
  safetensors::save(path, file);
}

Checkpoint load_checkpoint(const std::string& path, CheckpointParts parts) {
  safetensors::TensorFilter keep;
  if (parts == CheckpointParts::ModelOnly)
    keep = [](const std::string& name) { return !starts_with(name, kOptimizerPrefix) && !starts_with(name, kTrainingPrefix); };
  safetensors::File file = safetensors::load(path, keep);
  Checkpoint c;
  for (auto& [name, t] : file.tensors) {
    if (starts_with(name, kOptimizerPrefix)) c.optimizer[name.substr(std::char_traits<char>::length(kOptimizerPrefix))] = t;
    else if (starts_with(name, kTrainingPrefix)) c.training_weights[name.substr(std::char_traits<char>::length(kTrainingPrefix))] = t;
    else c.model[name] = t;
  }
  check(!c.model.empty(), path, ": holds no model tensors");
  auto take = [&](const char* key) {
    const auto it = file.metadata.find(key);
    if (it == file.metadata.end()) return std::string();
    std::string value = it->second;
    file.metadata.erase(it);
    return value;
  };
  take("format");
  c.config_json = take("config");
  const std::string step = take("step");
  try {
    c.step = step.empty() ? 0 : std::stoll(step);
    const std::string rng = take("rng");
    if (!rng.empty()) {
      const nlohmann::json states = nlohmann::json::parse(rng);  // must outlive the items() proxy
      for (const auto& [name, value] : states.items())
        c.generators[name] = {json_number<uint64_t>(value.at(0), "generator " + name + " seed"),
                              json_number<uint64_t>(value.at(1), "generator " + name + " offset")};
    }
  } catch (const std::exception& e) {
    throw Error(str_cat(path, ": malformed checkpoint metadata (step/rng): ", e.what()));
  }
  c.extra = file.metadata;
  return c;
}

void restore_generators(const Checkpoint& checkpoint, const std::map<std::string, Generator*>& generators) {
  for (const auto& [name, g] : generators) {
    const auto it = checkpoint.generators.find(name);
    check(it != checkpoint.generators.end(), "checkpoint: no state for random generator ", name);
    g->set_state(it->second.first, it->second.second);
  }
}

}  // namespace mrcnn::nn
