// `mrcnn predict`: images in, COCO results JSON out (bbox in original pixels, masks as compressed
// RLE binarised at 0.5), and optionally an overlay PNG per image.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cctype>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "cuda/allocator.h"
#include "cuda/context.h"
#include "maskrcnn/evaluate.h"
#include "maskrcnn/image_io.h"
#include "maskrcnn/model_io.h"
#include "maskrcnn/rle.h"

namespace mrcnn::apps {

using namespace detection;

Device model_device(const std::string& device) {
  const Device d = parse_device(device);
  if (d.is_cuda())
    check(cuda::is_available() && d.index < cuda::device_count(), "--device ", device, ": ",
          cuda::is_available() ? str_cat("this machine has ", cuda::device_count(), " CUDA device(s)") : cuda::unavailable_reason());
  return d;
}

namespace {

// Overlay: the image in gray/colour, each kept mask tinted, its box (x, y, w, h) outlined.
std::vector<uint8_t> overlay(const Tensor& image, const std::vector<std::vector<uint8_t>>& masks,
                             const std::vector<std::array<double, 4>>& boxes) {
  const int64_t c = image.size(0), h = image.size(1), w = image.size(2);
  const float* px = image.data<float>();
  std::vector<uint8_t> rgb(static_cast<size_t>(h * w * 3));
  for (int64_t i = 0; i < h * w; ++i)
    for (int64_t k = 0; k < 3; ++k)
      rgb[i * 3 + k] = static_cast<uint8_t>(std::clamp(px[(c == 3 ? k : 0) * h * w + i], 0.0f, 1.0f) * 255.0f + 0.5f);
  static const uint8_t palette[][3] = {{255, 64, 64}, {64, 200, 255}, {255, 200, 0}, {120, 255, 120}, {255, 64, 255}};
  for (size_t d = 0; d < masks.size(); ++d) {
    const uint8_t* colour = palette[d % 5];
    for (int64_t i = 0; i < h * w; ++i)
      if (masks[d][i])
        for (int k = 0; k < 3; ++k) rgb[i * 3 + k] = static_cast<uint8_t>((rgb[i * 3 + k] + colour[k]) / 2);
    const auto& b = boxes[d];
    const int64_t x0 = std::clamp<int64_t>(static_cast<int64_t>(b[0]), 0, w - 1);
    const int64_t y0 = std::clamp<int64_t>(static_cast<int64_t>(b[1]), 0, h - 1);
    const int64_t x1 = std::clamp<int64_t>(static_cast<int64_t>(b[0] + b[2]), 0, w - 1);
    const int64_t y1 = std::clamp<int64_t>(static_cast<int64_t>(b[1] + b[3]), 0, h - 1);
    auto paint = [&](int64_t y, int64_t x) {
      for (int k = 0; k < 3; ++k) rgb[(y * w + x) * 3 + k] = colour[k];
    };
    for (int64_t x = x0; x <= x1; ++x) paint(y0, x), paint(y1, x);
    for (int64_t y = y0; y <= y1; ++y) paint(y, x0), paint(y, x1);
  }
  return rgb;
}

// The images the arguments name: a folder stands for its image files (by extension, not its
// subfolders), in name order, so `predict slices/` works as the shell's `slices/*.jpg` would.
std::vector<std::string> expand_image_arguments(const std::vector<std::string>& arguments) {
  namespace fs = std::filesystem;
  static const char* const kExtensions[] = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pnm", ".tga", ".gif"};
  std::vector<std::string> images;
  for (const std::string& argument : arguments) {
    std::error_code error;
    if (!fs::is_directory(argument, error)) {
      images.push_back(argument);
      continue;
    }
    std::vector<std::string> found;
    for (const auto& entry : fs::directory_iterator(argument, error)) {
      std::string extension = entry.path().extension().string();
      std::transform(extension.begin(), extension.end(), extension.begin(), [](unsigned char c) { return std::tolower(c); });
      if (entry.is_regular_file() && std::find(std::begin(kExtensions), std::end(kExtensions), extension) != std::end(kExtensions))
        found.push_back(entry.path().string());
    }
    check(!error, argument, ": cannot list the folder (", error.message(), ")");
    check(!found.empty(), argument, ": a folder with no image files (.jpg, .jpeg, .png, .bmp, .pgm, .ppm, .pnm, .tga, .gif)");
    std::sort(found.begin(), found.end());
    images.insert(images.end(), found.begin(), found.end());
  }
  return images;
}

// dir/<image's stem><suffix>: where an image's overlay or mask goes.
std::string output_png(const std::string& dir, const std::string& image, const char* suffix) {
  return (std::filesystem::path(dir) / (std::filesystem::path(image).stem().string() + suffix)).string();
}

}  // namespace

int predict(const PredictOptions& given) {
  PredictOptions options = given;
  options.images = expand_image_arguments(given.images);
  const Device device = model_device(options.device);
  check(!options.images.empty(), "predict: no images given");
  check_output_file(options.json_out);
  for (const std::string& dir : {options.out_dir, options.masks_dir})
    if (!dir.empty()) check_output_folder(dir);
  // Two images with one stem (a.jpg, a.png) would share an overlay or mask file.
  for (const auto& [dir, suffix] : {std::pair{options.out_dir, "_overlay.png"}, std::pair{options.masks_dir, "_mask.png"}}) {
    if (dir.empty()) continue;
    std::map<std::string, std::string> writer;
    for (const std::string& image : options.images) {
      const auto [it, fresh] = writer.emplace(output_png(dir, image, suffix), image);
      check(fresh, "predict: ", it->second, " and ", image, " would both write ", it->first, "; give them different names");
    }
  }
  const nn::Checkpoint checkpoint = nn::load_checkpoint(options.weights, nn::CheckpointParts::ModelOnly);
  auto model = load_model(checkpoint, options.weights, options.config);
  model->to(device);
  if (options.flip_test) model->set_flip_test(*options.flip_test);
  std::vector<int64_t> category_ids;
  for (const auto& [id, name] : checkpoint_categories(checkpoint, model->config().num_classes)) category_ids.push_back(id);
  check(options.masks_dir.empty() || category_ids.size() <= 255, "predict: --masks writes 8-bit label images, which hold "
        "at most 255 categories; this model has ", category_ids.size());
  for (const std::string& dir : {options.out_dir, options.masks_dir})
    if (!dir.empty()) std::filesystem::create_directories(dir);
  nlohmann::json results = nlohmann::json::array();
  for (size_t index = 0; index < options.images.size(); ++index) {
    const std::string& path = options.images[index];
    const auto start = std::chrono::steady_clock::now();
    const Tensor image = load_image(path, model->config().in_channels);
    const int64_t h = image.size(1), w = image.size(2);
    const std::string file_name = std::filesystem::path(path).filename().string();
    // The same detections, masks (binarised at 0.5) and RLEs that `mrcnn eval` scores.
    ImagePrediction prediction;
    try {
      prediction = predict_image(*model, image, static_cast<int64_t>(index) + 1, category_ids);
    } catch (const std::exception& e) {  // say which image the model failed on
      throw Error(str_cat(path, ": ", e.what()));
    }
    std::vector<std::vector<uint8_t>> kept_masks;
    std::vector<std::array<double, 4>> kept_boxes;
    std::vector<const EvalDetection*> kept;
    for (size_t k = 0; k < prediction.detections.size(); ++k) {
      const EvalDetection& det = prediction.detections[k];
      if (det.score < options.score_thresh) continue;
      // Boxes and scores are float32 values: written as such, without float64 digits.
      const auto& b = det.bbox;
      results.push_back({{"file_name", file_name},
                         {"image_id", det.image_id},
                         {"category_id", det.category_id},
                         {"bbox", {static_cast<float>(b[0]), static_cast<float>(b[1]), static_cast<float>(b[2]), static_cast<float>(b[3])}},
                         {"score", static_cast<float>(det.score)},
                         {"area", rle_area(det.segmentation)},
                         {"segmentation", {{"size", {h, w}}, {"counts", rle_to_string(det.segmentation)}}}});
      if (options.pixel_mm > 0)
        results.back()["area_mm2"] = static_cast<double>(rle_area(det.segmentation)) * options.pixel_mm * options.pixel_mm;
      kept_masks.push_back(prediction.masks[k]);
      kept_boxes.push_back(b);
      kept.push_back(&det);
    }
    if (!options.out_dir.empty()) {
      write_png(output_png(options.out_dir, path, "_overlay.png"), overlay(image, kept_masks, kept_boxes), h, w);
    }
    if (!options.masks_dir.empty()) {
      // One class: 255 inside (visible as it is). Several: each pixel holds the label (1, 2, ...: the
      // checkpoint's category order) of the highest-scoring detection covering it.
      std::vector<uint8_t> mask(static_cast<size_t>(h * w), 0);
      std::vector<double> best(mask.size(), -1.0);
      for (size_t k = 0; k < kept.size(); ++k) {
        const auto label = static_cast<uint8_t>(
            std::find(category_ids.begin(), category_ids.end(), kept[k]->category_id) - category_ids.begin() + 1);
        const uint8_t value = category_ids.size() == 1 ? 255 : label;
        for (size_t i = 0; i < mask.size(); ++i)
          if (kept_masks[k][i] && kept[k]->score > best[i]) mask[i] = value, best[i] = kept[k]->score;
      }
      write_png(output_png(options.masks_dir, path, "_mask.png"), mask, h, w, 1);
    }
    // What the written detections cover together (the --masks image's nonzero pixels).
    int64_t covered = 0;
    for (size_t i = 0; i < static_cast<size_t>(h * w); ++i)
      covered += std::any_of(kept_masks.begin(), kept_masks.end(), [i](const std::vector<uint8_t>& m) { return m[i] != 0; });
    const double covered_mm2 = static_cast<double>(covered) * options.pixel_mm * options.pixel_mm;
    const std::string area =
        options.pixel_mm > 0 ? str_cat(covered, " px = ", fmt(covered_mm2, "%.1f"), " mm^2") : str_cat(covered, " px");
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "[%zu/%zu] %s: %zu detections covering %s (%.0f ms)\n", index + 1, options.images.size(),
                 file_name.c_str(), kept_masks.size(), area.c_str(), ms);
  }
  write_file_atomically(options.json_out, results.dump());
  std::fprintf(stderr, "wrote %zu detections to %s\n", results.size(), options.json_out.c_str());
  return 0;
}

}  // namespace mrcnn::apps
