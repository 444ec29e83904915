// Reading a JSON file, and a settings struct from a JSON object through a field visitor
// (`for_each_field(object, [](const char* key, auto& field) {...})`): each present, non-null key is
// converted to its field's type; a wrong type or a key the visitor does not declare is an error that
// names the key as `prefix + key`. Used for the model config and a recipe's "train" section.
#pragma once
#include <algorithm>
#include <fstream>
#include <string>
#include <vector>
#include <nlohmann/json.hpp>

#include "tensor/error.h"
#include "tensor/json_number.h"

namespace mrcnn::detection {

// The parsed file, or one error naming it: "<path>: cannot open <what>" / "<path>: not valid JSON (...)".
inline nlohmann::json read_json_file(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  check(static_cast<bool>(in), path, ": cannot open ", what);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(path, ": not valid JSON (", e.what(), ")"));
  }
}

template <typename Object, typename ForEachField>
void read_json_fields(const nlohmann::json& json, Object& object, ForEachField&& for_each_field, const std::string& prefix,
                      const std::vector<std::string>& other_keys = {}) {
  std::vector<std::string> known = other_keys;
  for_each_field(object, [&](const char* key, auto& field) {
    known.push_back(key);
    const auto it = json.find(key);
    if (it == json.end() || it->is_null()) return;
    using Field = std::decay_t<decltype(field)>;
    check(json_numbers_fit<Field>(*it), "config: ", prefix, key, " has a number out of range (", it->dump(), ")");
    try {
      field = it->template get<Field>();
    } catch (const nlohmann::json::exception&) {
      throw Error(str_cat("config: ", prefix, key, " has the wrong type (", it->type_name(), ")"));
    }
  });
  for (const auto& [key, value] : json.items())
    check(std::find(known.begin(), known.end(), key) != known.end(), "config: unknown key \"", prefix, key, "\"");
}

}  // namespace mrcnn::detection
