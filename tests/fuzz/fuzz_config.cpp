// libFuzzer target: model configs (`--config`; maskrcnn/config.h) and the "train" settings a recipe
// keeps beside them (apps/train_settings.h), on arbitrary bytes. Every input must either load or be
// refused with mrcnn::Error (one message naming the key); a nlohmann exception escaping, a crash, a
// hang or a sanitizer report is a bug. A config that loads must also survive its own round trip
// (checkpoints store the config as config_to_json writes it, and load it back): the JSON it writes
// loads again, to a config that writes the same JSON.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "apps/train_settings.h"
#include "maskrcnn/config.h"
#include "tensor/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(data, data + size);
  } catch (const nlohmann::json::exception&) {
    return 0;  // not JSON: read_json_file reports it before any field is read
  }
  try {
    const mrcnn::detection::Config config = mrcnn::detection::config_from_json(json);
    const nlohmann::json written = mrcnn::detection::config_to_json(config);
    if (mrcnn::detection::config_to_json(mrcnn::detection::config_from_json(written)) != written) std::abort();
    for (size_t level = 0; level < config.anchor_sizes.size(); ++level) (void)config.aspect_ratios_for_level(level);
  } catch (const mrcnn::Error&) {
  }
  if (json.is_object() && json.contains("train")) {
    try {
      (void)mrcnn::apps::train_settings_from_json(json["train"]);
    } catch (const mrcnn::Error&) {
    }
  }
  return 0;
}
