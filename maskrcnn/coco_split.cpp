// Patient-grouped train/val split of a COCO file (`mrcnn split`). In its own file because GCC 12
// warns falsely inside libstdc++'s <regex> under the sanitizer build (GCC bug 105562); CMake turns
// that one warning off for this file only.
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "maskrcnn/coco.h"
#include "maskrcnn/dataset.h"
#include "tensor/random.h"

namespace mrcnn::detection {

using nlohmann::json;

std::vector<std::string> file_groups(const std::vector<std::string>& file_names, const std::string& group_regex,
                                     const std::string& name) {
  std::regex pattern;
  try {
    pattern = std::regex(group_regex);
  } catch (const std::regex_error& e) {
    throw Error(str_cat("bad --group-regex '", group_regex, "': ", e.what()));
  }
  std::vector<std::string> groups;
  for (const std::string& file : file_names) {
    std::smatch match;
    check(std::regex_search(file, match, pattern), name, ": file_name '", file, "' does not match --group-regex '",
          group_regex, "'");
    groups.push_back(match.size() > 1 ? match[1].str() : match[0].str());
  }
  return groups;
}

CocoSplit split_coco(const std::string& json_text, const std::string& name, double val_fraction,
                     const std::string& group_regex, uint64_t seed) {
  check(val_fraction > 0 && val_fraction < 1, "split: --val-fraction must be in (0, 1), got ", val_fraction);
  parse_coco(json_text, name);  // the same validation as training will apply
  const json root = json::parse(json_text);
  // Groups in order of first appearance, then shuffled by random keys from the seed.
  std::vector<std::string> file_names;
  for (const json& image : root["images"]) file_names.push_back(image["file_name"].get<std::string>());
  const auto groups = file_groups(file_names, group_regex, name);
  std::map<std::string, std::vector<int64_t>> members;
  std::vector<std::string> order;
  for (size_t i = 0; i < groups.size(); ++i) {
    if (!members.count(groups[i])) order.push_back(groups[i]);
    members[groups[i]].push_back(root["images"][i]["id"].get<int64_t>());
  }
  Generator generator(seed);
  const auto keys = to_vector<double>(rand({static_cast<int64_t>(order.size())}, kFloat64, kCPU, &generator));
  std::vector<size_t> shuffled(order.size());
  for (size_t i = 0; i < shuffled.size(); ++i) shuffled[i] = i;
  std::stable_sort(shuffled.begin(), shuffled.end(), [&](size_t a, size_t b) { return keys[a] < keys[b]; });
  const double total = static_cast<double>(root["images"].size());
  std::set<int64_t> val_ids;
  CocoSplit split;
  for (size_t i : shuffled) {
    if (static_cast<double>(val_ids.size()) >= val_fraction * total) break;
    for (int64_t id : members[order[i]]) val_ids.insert(id);
    ++split.val_groups;
  }
  split.train_groups = static_cast<int64_t>(order.size()) - split.val_groups;
  check(split.train_groups > 0, "split: ", order.size(), " group(s) only: nothing left for training");
  json train = root, val = root;
  for (json* half : {&train, &val}) (*half)["images"] = json::array(), (*half)["annotations"] = json::array();
  for (const json& image : root["images"])
    (val_ids.count(image["id"].get<int64_t>()) ? val : train)["images"].push_back(image);
  for (const json& a : root["annotations"])
    (val_ids.count(a["image_id"].get<int64_t>()) ? val : train)["annotations"].push_back(a);
  split.train_images = static_cast<int64_t>(train["images"].size());
  split.val_images = static_cast<int64_t>(val["images"].size());
  split.train_json = train.dump(1);
  split.val_json = val.dump(1);
  return split;
}

}  // namespace mrcnn::detection
