// Building a model from files: the config from --config or from the checkpoint's metadata, the
// weights loaded strictly (predict, eval, resume) or adapted (fine-tuning from torchvision weights:
// RGB conv1 summed to 1 channel, class-specific head layers re-initialised when num_classes differs).
#pragma once
#include <memory>
#include <string>

#include "maskrcnn/mask_rcnn.h"
#include "nn/checkpoint.h"

namespace mrcnn::detection {

// config_path empty: the checkpoint's own config (an error names the file when it has none).
Config resolve_config(const nn::Checkpoint& checkpoint, const std::string& weights_path, const std::string& config_path);
// A model with a random initialisation; a config too big to build (num_classes 10^12 asks for
// petabytes) fails as "<source>: cannot build the model it describes: out of host memory ...".
std::unique_ptr<MaskRCNN> build_model(const Config& config, const std::string& source);
// Every tensor must fit: errors say "<weights>: does not fit the config: ...".
std::unique_ptr<MaskRCNN> load_model(const std::string& weights_path, const std::string& config_path = "");
std::unique_ptr<MaskRCNN> load_model(const nn::Checkpoint& checkpoint, const std::string& weights_path,
                                     const std::string& config_path);
// Category ids and names by label (1..K-1) from the checkpoint's "categories" metadata, a JSON list
// [{"id": 1, "name": "tumor"}, ...]; without it label k is category k, named "class k".
std::vector<std::pair<int64_t, std::string>> checkpoint_categories(const nn::Checkpoint& checkpoint, int64_t num_classes);
// Loads what fits and adapts what torchvision's COCO weights need; returns one line per adaptation.
std::vector<std::string> load_pretrained(MaskRCNN& model, const std::map<std::string, Tensor>& state);

}  // namespace mrcnn::detection
