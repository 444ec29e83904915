// Model construction from checkpoint files.
#include "maskrcnn/model_io.h"

#include <nlohmann/json.hpp>

#include "nn/init.h"
#include "ops/ops.h"
#include "tensor/json_number.h"

namespace mrcnn::detection {

Config resolve_config(const nn::Checkpoint& checkpoint, const std::string& weights_path, const std::string& config_path) {
  if (!config_path.empty()) return load_config(config_path);
  check(!checkpoint.config_json.empty(), weights_path, ": has no config in its metadata; pass --config");
  try {
    return config_from_json(nlohmann::json::parse(checkpoint.config_json));
  } catch (const std::exception& e) {
    throw Error(str_cat(weights_path, ": bad config in metadata: ", e.what()));
  }
}

std::unique_ptr<MaskRCNN> build_model(const Config& config, const std::string& source) {
  try {
    return std::make_unique<MaskRCNN>(config);
  } catch (const Error& e) {
    throw Error(str_cat(source, ": cannot build the model it describes: ", e.what()));
  }
}

std::unique_ptr<MaskRCNN> load_model(const std::string& weights_path, const std::string& config_path) {
  return load_model(nn::load_checkpoint(weights_path, nn::CheckpointParts::ModelOnly), weights_path, config_path);
}

std::vector<std::pair<int64_t, std::string>> checkpoint_categories(const nn::Checkpoint& checkpoint, int64_t num_classes) {
  std::vector<std::pair<int64_t, std::string>> categories;
  const auto it = checkpoint.extra.find("categories");
  if (it != checkpoint.extra.end()) {
    try {
      for (const auto& c : nlohmann::json::parse(it->second)) categories.emplace_back(json_number<int64_t>(c.at("id"), "category id"), c.at("name").get<std::string>());
    } catch (const std::exception& e) {
      throw Error(str_cat("checkpoint: bad \"categories\" metadata: ", e.what()));
    }
  }
  if (static_cast<int64_t>(categories.size()) != num_classes - 1) {
    categories.clear();
    for (int64_t k = 1; k < num_classes; ++k) categories.emplace_back(k, "class " + std::to_string(k));
  }
  return categories;
}

std::unique_ptr<MaskRCNN> load_model(const nn::Checkpoint& checkpoint, const std::string& weights_path,
                                     const std::string& config_path) {
  std::unique_ptr<MaskRCNN> model;
  {
    // No random initialisation: the strict load below overwrites every tensor or throws.
    const nn::init::SkipInit skip_init;
    model = build_model(resolve_config(checkpoint, weights_path, config_path), config_path.empty() ? weights_path : config_path);
  }
  try {
    model->load_state_dict(checkpoint.model);
  } catch (const Error& e) {
    throw Error(str_cat(weights_path, ": does not fit the config: ", e.what()));
  }
  model->eval();
  return model;
}

std::vector<std::string> load_pretrained(MaskRCNN& model, const std::map<std::string, Tensor>& state) {
  std::vector<std::string> notes;
  std::map<std::string, Tensor> usable;
  const auto own = model.state_dict();
  for (const auto& [name, t] : state) {
    const auto it = own.find(name);
    if (it == own.end()) {
      notes.push_back("ignored " + name + " (not in this model)");
      continue;
    }
    const Shape& want = it->second.sizes();
    if (t.sizes() == want) {
      usable[name] = t;
    } else if (name == "backbone.body.conv1.weight" && want.size() == 4 && want[1] == 1 && t.dim() == 4 && t.size(1) == 3 &&
               t.size(0) == want[0]) {
      // A gray image is R = G = B, so summing the RGB filters gives the same response.
      usable[name] = ops::sum(t, {1}, true);
      notes.push_back("summed the RGB filters of " + name + " for 1-channel input");
    } else {
      notes.push_back(str_cat("re-initialised ", name, " (", shape_str(t.sizes()), " in the weights, ", shape_str(want),
                              " here: a different num_classes)"));
    }
  }
  for (const auto& [name, t] : own)
    if (!usable.count(name) && !state.count(name)) notes.push_back("kept the initial " + name + " (not in the weights)");
  model.load_state_dict(usable, false);
  return notes;
}

}  // namespace mrcnn::detection
