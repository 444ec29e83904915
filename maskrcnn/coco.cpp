// COCO JSON reading with one clear message per problem.
#include "maskrcnn/coco.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tensor/json_number.h"

namespace mrcnn::detection {

namespace {

using nlohmann::json;

// Typed access that names the file, the entry and the key on failure.
struct Reader {
  const std::string& name;
  const json& get(const json& object, const char* key, const std::string& where) const {
    check(object.is_object(), name, ": ", where, " is not an object");
    const auto it = object.find(key);
    check(it != object.end(), name, ": ", where, ": missing key '", key, "'");
    return *it;
  }
  double number(const json& object, const char* key, const std::string& where) const {
    const json& v = get(object, key, where);
    check(v.is_number(), name, ": ", where, ": '", key, "' must be a number, got ", v.type_name());
    return v.get<double>();
  }
  int64_t integer(const json& object, const char* key, const std::string& where) const {
    const json& v = get(object, key, where);
    check(v.is_number_integer(), name, ": ", where, ": '", key, "' must be an integer, got ", v.type_name());
    return json_number<int64_t>(v, str_cat(name, ": ", where, ": '", key, "'"));
  }
  std::string string(const json& object, const char* key, const std::string& where) const {
    const json& v = get(object, key, where);
    check(v.is_string(), name, ": ", where, ": '", key, "' must be a string, got ", v.type_name());
    return v.get<std::string>();
  }
  const json& array(const json& object, const char* key, const std::string& where) const {
    const json& v = get(object, key, where);
    check(v.is_array(), name, ": ", where, ": '", key, "' must be an array, got ", v.type_name());
    return v;
  }
};

}  // namespace

CocoDataset parse_coco(const std::string& json_text, const std::string& name) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    throw Error(str_cat(name, ": not valid JSON (", e.what(), ")"));
  }
  const Reader r{name};
  CocoDataset data;
  // Categories sorted by id -> labels 1..K.
  for (const json& c : r.array(root, "categories", "top level")) {
    data.categories.push_back({r.integer(c, "id", "category"), r.string(c, "name", "category")});
  }
  std::sort(data.categories.begin(), data.categories.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  std::map<int64_t, int64_t> label_of;
  for (size_t i = 0; i < data.categories.size(); ++i) {
    check(!label_of.count(data.categories[i].id), name, ": category id ", data.categories[i].id, " appears twice");
    label_of[data.categories[i].id] = static_cast<int64_t>(i) + 1;
  }
  std::map<int64_t, size_t> image_index;
  const json& images = r.array(root, "images", "top level");
  for (size_t i = 0; i < images.size(); ++i) {
    const std::string where = str_cat("images[", i, "]");
    CocoImage image;
    image.id = r.integer(images[i], "id", where);
    image.file_name = r.string(images[i], "file_name", where);
    image.width = r.integer(images[i], "width", where);
    image.height = r.integer(images[i], "height", where);
    check(image.width > 0 && image.height > 0, name, ": ", where, " (", image.file_name, "): size ", image.width, "x",
          image.height, " is not positive");
    check(!image_index.count(image.id), name, ": ", where, ": image id ", image.id, " appears twice");
    image_index[image.id] = data.images.size();
    data.images.push_back(std::move(image));
  }
  const json& annotations = r.array(root, "annotations", "top level");
  for (size_t i = 0; i < annotations.size(); ++i) {
    const json& a = annotations[i];
    const std::string where = str_cat("annotations[", i, "]");
    CocoAnnotation ann;
    ann.id = a.contains("id") ? r.integer(a, "id", where) : static_cast<int64_t>(i);
    const int64_t image_id = r.integer(a, "image_id", where);
    ann.category_id = r.integer(a, "category_id", where);
    const json& box = r.array(a, "bbox", where);
    check(box.size() == 4 && std::all_of(box.begin(), box.end(), [](const json& v) { return v.is_number(); }), name, ": ",
          where, ": 'bbox' must be 4 numbers [x, y, w, h]");
    for (int k = 0; k < 4; ++k) ann.bbox[k] = box[k].get<double>();
    ann.iscrowd = a.contains("iscrowd") && r.integer(a, "iscrowd", where) != 0;
    ann.area = a.contains("area") ? r.number(a, "area", where) : -1;  // -1: filled in from the mask below
    const auto image_it = image_index.find(image_id);
    check(image_it != image_index.end(), name, ": ", where, ": image_id ", image_id, " is not in 'images'");
    CocoImage& image = data.images[image_it->second];
    const std::string context = str_cat(name, ": ", where, " (", image.file_name, "): ");
    const auto skip = [&](const std::string& why) { data.warnings.push_back(context + why + "; skipped"); };
    const auto label = label_of.find(ann.category_id);
    if (label == label_of.end()) {
      skip(str_cat("unknown category_id ", ann.category_id));
      continue;
    }
    ann.label = label->second;
    const json& seg = r.get(a, "segmentation", where);
    bool bad_polygon = false;
    if (seg.is_array()) {
      for (const json& polygon : seg) {
        check(polygon.is_array() && std::all_of(polygon.begin(), polygon.end(), [](const json& v) { return v.is_number(); }),
              context, "each polygon must be an array of numbers");
        if (polygon.size() < 6 || polygon.size() % 2) bad_polygon = true;
        else ann.polygons.push_back(polygon.get<std::vector<double>>());
      }
      if (bad_polygon || ann.polygons.empty()) {
        skip(ann.polygons.empty() && !bad_polygon ? "no polygon" : "polygon with fewer than 3 points");
        continue;
      }
      // A vertex far outside the image is a labelling or export error, and rasterising its edge
      // would walk (and allocate) one step per 1/5 pixel of its length.
      const double extent = static_cast<double>(std::max(image.width, image.height));
      const bool far_outside = std::any_of(ann.polygons.begin(), ann.polygons.end(), [&](const std::vector<double>& p) {
        return std::any_of(p.begin(), p.end(), [&](double v) { return !(v >= -extent && v <= 2 * extent); });
      });
      if (far_outside) {
        skip(str_cat("polygon vertex far outside the ", image.width, "x", image.height, " image"));
        continue;
      }
    } else if (seg.is_object()) {
      const json& size = r.array(seg, "size", where + ".segmentation");
      check(size.size() == 2 && size[0] == image.height && size[1] == image.width, context, "RLE size ", size.dump(),
            " differs from the image's [", image.height, ", ", image.width, "]");
      const json& counts = r.get(seg, "counts", where + ".segmentation");
      try {
        if (counts.is_string()) {
          ann.rle = rle_from_string(counts.get<std::string>(), image.height, image.width);
        } else {
          check(counts.is_array(), "RLE counts must be a string or a list of integers");
          ann.rle = {image.height, image.width, {}};
          for (const json& count : counts) ann.rle.counts.push_back(json_number<uint32_t>(count, "each RLE count"));
          int64_t total = 0;
          for (uint32_t c : ann.rle.counts) total += c;
          check(total == image.height * image.width, "RLE runs cover ", total, " of ", image.height * image.width, " pixels");
        }
      } catch (const std::exception& e) {
        throw Error(context + e.what());
      }
    } else {
      throw Error(context + "'segmentation' must be polygons or an RLE object, got " + seg.type_name());
    }
    const double x = ann.bbox[0], y = ann.bbox[1], w = ann.bbox[2], h = ann.bbox[3];
    if (!(w > 0 && h > 0)) {
      skip(str_cat("zero-area bbox [", x, ", ", y, ", ", w, ", ", h, "]"));
      continue;
    }
    if (x >= image.width || y >= image.height || x + w <= 0 || y + h <= 0) {
      skip(str_cat("bbox [", x, ", ", y, ", ", w, ", ", h, "] lies outside the ", image.width, "x", image.height, " image"));
      continue;
    }
    // Boxes reaching past the border are clipped to it (Make Sense can export a vertex a hair outside).
    const double x1 = std::max(0.0, x), y1 = std::max(0.0, y);
    ann.bbox = {x1, y1, std::min<double>(image.width, x + w) - x1, std::min<double>(image.height, y + h) - y1};
    const int64_t mask_area = rle_area(ann.polygons.empty() ? ann.rle : rle_union([&] {
      std::vector<Rle> parts;
      for (const auto& p : ann.polygons) parts.push_back(rle_from_polygon(p, image.height, image.width));
      return parts;
    }()));
    if (mask_area == 0) {
      skip("mask covers no pixel");
      continue;
    }
    if (ann.area < 0) ann.area = static_cast<double>(mask_area);
    image.annotations.push_back(std::move(ann));
  }
  return data;
}

CocoDataset load_coco(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(static_cast<bool>(in), path, ": cannot open");
  std::stringstream text;
  text << in.rdbuf();
  return parse_coco(text.str(), path);
}

std::vector<uint8_t> annotation_mask(const CocoAnnotation& annotation, int64_t height, int64_t width) {
  if (annotation.polygons.empty()) return rle_decode(annotation.rle);
  std::vector<Rle> parts;
  for (const auto& p : annotation.polygons) parts.push_back(rle_from_polygon(p, height, width));
  return rle_decode(rle_union(parts));
}

Target coco_target(const CocoImage& image) {
  std::vector<float> boxes;
  std::vector<int64_t> labels;
  std::vector<uint8_t> masks;
  for (const auto& a : image.annotations) {
    if (a.iscrowd) continue;
    boxes.insert(boxes.end(), {static_cast<float>(a.bbox[0]), static_cast<float>(a.bbox[1]),
                               static_cast<float>(a.bbox[0] + a.bbox[2]), static_cast<float>(a.bbox[1] + a.bbox[3])});
    labels.push_back(a.label);
    const auto m = annotation_mask(a, image.height, image.width);
    masks.insert(masks.end(), m.begin(), m.end());
  }
  const int64_t n = static_cast<int64_t>(labels.size());
  return {from_vector(boxes, {n, 4}), from_vector(labels, {n}), from_vector(masks, {n, image.height, image.width})};
}

}  // namespace mrcnn::detection
