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

#include "apps/activation_maps.h"
#include "apps/commands.h"
#include "apps/patient_summary.h"
#include "cuda/allocator.h"
#include "cuda/context.h"
#include "maskrcnn/dataset.h"
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

// A detection that passed --score-thresh, with its binarised mask.
struct Kept {
  const EvalDetection& detection;
  const std::vector<uint8_t>& mask;
};

// Overlay: the image in gray/colour, each kept mask tinted, its box (x, y, w, h) outlined.
std::vector<uint8_t> overlay(const Tensor& image, const std::vector<Kept>& kept) {
  const int64_t c = image.size(0), h = image.size(1), w = image.size(2);
  const float* px = image.data<float>();
  std::vector<uint8_t> rgb(static_cast<size_t>(h * w * 3));
  for (int64_t i = 0; i < h * w; ++i)
    for (int64_t k = 0; k < 3; ++k)
      rgb[i * 3 + k] = static_cast<uint8_t>(std::clamp(px[(c == 3 ? k : 0) * h * w + i], 0.0f, 1.0f) * 255.0f + 0.5f);
  static const uint8_t palette[][3] = {{255, 64, 64}, {64, 200, 255}, {255, 200, 0}, {120, 255, 120}, {255, 64, 255}};
  for (size_t d = 0; d < kept.size(); ++d) {
    const uint8_t* colour = palette[d % 5];
    for (int64_t i = 0; i < h * w; ++i)
      if (kept[d].mask[i])
        for (int k = 0; k < 3; ++k) rgb[i * 3 + k] = static_cast<uint8_t>((rgb[i * 3 + k] + colour[k]) / 2);
    const auto& b = kept[d].detection.bbox;
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
  // The patients of the summary and report are known (and a file name that does not match refused)
  // before any work.
  const bool per_patient = !options.summary.empty() || !options.report_dir.empty();
  std::vector<std::string> patients;
  if (!options.summary.empty()) check_output_file(options.summary);
  if (per_patient) {
    std::vector<std::string> names;
    for (const std::string& image : options.images) names.push_back(std::filesystem::path(image).filename().string());
    patients = file_groups(names, options.group_regex, options.summary.empty() ? "predict --report" : "predict --summary");
  }
  check(options.slice_mm == 0 || (per_patient && options.pixel_mm > 0),
        "predict: --slice-mm gives volumes in --summary and --report, which also need --pixel-mm (the in-plane spacing)");
  for (const std::string& dir : {options.out_dir, options.masks_dir, options.report_dir})
    if (!dir.empty()) check_output_folder(dir);
  check(!options.cams || !options.out_dir.empty() || !options.report_dir.empty(),
        "predict: --cams draws its maps beside the overlays: give --out or --report too");
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
  if (!options.report_dir.empty()) std::filesystem::create_directories(std::filesystem::path(options.report_dir) / "images");
  nlohmann::json results = nlohmann::json::array();
  std::vector<SliceResult> slices;
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
    std::vector<Kept> kept;
    for (size_t k = 0; k < prediction.detections.size(); ++k) {
      const EvalDetection& det = prediction.detections[k];
      if (det.score < options.score_thresh) continue;
      // Boxes and scores are float32 values: written as such, without float64 digits.
      const auto& b = det.bbox;
      const int64_t area = rle_area(det.segmentation);
      results.push_back({{"file_name", file_name},
                         {"image_id", det.image_id},
                         {"category_id", det.category_id},
                         {"bbox", {static_cast<float>(b[0]), static_cast<float>(b[1]), static_cast<float>(b[2]), static_cast<float>(b[3])}},
                         {"score", static_cast<float>(det.score)},
                         {"area", area},
                         {"segmentation", {{"size", {h, w}}, {"counts", rle_to_string(det.segmentation)}}}});
      if (options.pixel_mm > 0) results.back()["area_mm2"] = mm2(area, options.pixel_mm);
      kept.push_back({det, prediction.masks[k]});
    }
    SliceResult slice{file_name, per_patient ? patients[index] : "", static_cast<int64_t>(kept.size()), 0, 0.0, "", "", w};
    for (const Kept& k : kept) slice.best_score = std::max(slice.best_score, k.detection.score);
    // The report's images of this slice: the place in the list keeps two slices named alike
    // (p1/slice.jpg, p2/slice.jpg) apart.
    const std::string report_stem = str_cat("images/", index + 1, "_", std::filesystem::path(path).stem().string());
    if (!options.out_dir.empty() || !options.report_dir.empty()) {
      const std::vector<uint8_t> rgb = overlay(image, kept);
      if (!options.out_dir.empty()) write_png(output_png(options.out_dir, path, "_overlay.png"), rgb, h, w);
      if (!options.report_dir.empty()) {
        slice.overlay = report_stem + ".png";
        write_png((std::filesystem::path(options.report_dir) / slice.overlay).string(), rgb, h, w);
      }
    }
    if (options.cams) {
      // Why the best written detection scored: its HiResCAM over the slice.
      std::vector<EvalDetection> written;
      for (const Kept& k : kept) written.push_back(k.detection);
      if (const auto heat = best_detection_cam(*model, image, written, options.score_thresh, category_ids)) {
        if (!options.out_dir.empty()) write_png(output_png(options.out_dir, path, "_cam.png"), *heat, h, w);
        if (!options.report_dir.empty()) {
          slice.cam = report_stem + "_cam.png";
          write_png((std::filesystem::path(options.report_dir) / slice.cam).string(), *heat, h, w);
        }
      }
    }
    // The label image: 0 where no written detection lies. One class: 255 inside (visible as it is).
    // Several: each pixel holds the label (1, 2, ...: the checkpoint's category order) of the
    // highest-scoring detection covering it. Its nonzero pixels are what the detections cover.
    std::vector<uint8_t> labels(static_cast<size_t>(h * w), 0);
    std::vector<double> best(labels.size(), -1.0);
    for (const Kept& k : kept) {
      // Capped at 255 so that a pixel covered stays nonzero beyond 255 categories (no --masks there).
      const auto label = static_cast<uint8_t>(std::min<std::ptrdiff_t>(
          std::find(category_ids.begin(), category_ids.end(), k.detection.category_id) - category_ids.begin() + 1, 255));
      const uint8_t value = category_ids.size() == 1 ? 255 : label;
      for (size_t i = 0; i < labels.size(); ++i)
        if (k.mask[i] && k.detection.score > best[i]) labels[i] = value, best[i] = k.detection.score;
    }
    if (!options.masks_dir.empty()) write_png(output_png(options.masks_dir, path, "_mask.png"), labels, h, w, 1);
    const int64_t covered = std::count_if(labels.begin(), labels.end(), [](uint8_t v) { return v != 0; });
    slice.covered = covered;
    slices.push_back(slice);
    const std::string area = options.pixel_mm > 0 ? str_cat(covered, " px = ", fmt(mm2(covered, options.pixel_mm), "%.1f"), " mm^2")
                                                  : str_cat(covered, " px");
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "[%zu/%zu] %s: %s covering %s (%.0f ms)\n", index + 1, options.images.size(), file_name.c_str(),
                 counted(static_cast<int64_t>(kept.size()), "detection").c_str(), area.c_str(), ms);
  }
  write_file_atomically(options.json_out, results.dump());
  std::fprintf(stderr, "wrote %s to %s\n", counted(static_cast<int64_t>(results.size()), "detection").c_str(),
               options.json_out.c_str());
  if (per_patient) {
    const std::vector<PatientArea> rows = patient_areas(slices);
    if (!options.summary.empty()) write_patient_summary(options, rows);
    if (!options.report_dir.empty()) write_prediction_report(options, slices, rows, model->flip_test());
  }
  return 0;
}

}  // namespace mrcnn::apps
