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

// A CSV field as RFC 4180 writes it: quoted, quotes doubled, when it holds a comma, quote or line break.
std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

double mm2(int64_t pixels, double pixel_mm) { return static_cast<double>(pixels) * pixel_mm * pixel_mm; }

// What the written detections of one image cover together.
struct SliceArea {
  std::string file_name;
  int64_t covered;  // pixels
};

// Per patient: how many slices, how many with a detection, the largest covered area (and its
// slice), the areas' sum and, with the slice spacing, a volume by Cavalieri's rule (sum of areas x
// spacing): right only when the patient's slices are all of the scan's, evenly spaced.
struct PatientArea {
  std::string patient, largest_slice;  // largest_slice: empty when no slice has a detection
  int64_t slices = 0, with_detection = 0, largest = 0, total = 0;
};

std::vector<PatientArea> patient_areas(const std::vector<SliceArea>& slices, const std::vector<std::string>& patients) {
  std::vector<PatientArea> rows;
  std::map<std::string, size_t> row_of;
  for (size_t i = 0; i < slices.size(); ++i) {
    const auto [it, fresh] = row_of.emplace(patients[i], rows.size());
    if (fresh) rows.push_back({patients[i], ""});
    PatientArea& row = rows[it->second];
    ++row.slices;
    row.with_detection += slices[i].covered > 0;
    row.total += slices[i].covered;
    if (slices[i].covered > row.largest) row.largest = slices[i].covered, row.largest_slice = slices[i].file_name;
  }
  return rows;
}

// The rows as CSV (for a spreadsheet) and as a table on stdout.
void write_patient_summary(const PredictOptions& o, const std::vector<PatientArea>& rows) {
  const bool mm = o.pixel_mm > 0, volume = o.slice_mm > 0;
  const auto volume_ml = [&](const PatientArea& r) { return mm2(r.total, o.pixel_mm) * o.slice_mm / 1000.0; };
  std::string csv = "patient,slices,slices_with_detection,largest_px,largest_slice,total_px";
  if (mm) csv += ",largest_mm2,total_mm2";
  if (volume) csv += ",volume_ml";
  csv += "\n";
  for (const PatientArea& r : rows) {
    csv += str_cat(csv_field(r.patient), ",", r.slices, ",", r.with_detection, ",", r.largest, ",",
                   csv_field(r.largest_slice), ",", r.total);
    if (mm) csv += str_cat(",", fmt(mm2(r.largest, o.pixel_mm), "%.2f"), ",", fmt(mm2(r.total, o.pixel_mm), "%.2f"));
    if (volume) csv += str_cat(",", fmt(volume_ml(r), "%.3f"));
    csv += "\n";
  }
  write_file_atomically(o.summary, csv);
  const char* unit = mm ? "mm^2" : "px";
  std::printf("Per patient (%s), detections scoring >= %.2f:\n", o.group_regex.c_str(), o.score_thresh);
  std::printf("%-12s %6s %15s %14s  %-24s %14s%s\n", "patient", "slices", "with detection", str_cat("largest ", unit).c_str(),
              "on slice", str_cat("total ", unit).c_str(), volume ? "  volume (ml)" : "");
  for (const PatientArea& r : rows) {
    const auto area = [&](int64_t px) { return mm ? fmt(mm2(px, o.pixel_mm), "%.1f") : std::to_string(px); };
    std::printf("%-12s %6lld %15lld %14s  %-24s %14s", r.patient.c_str(), static_cast<long long>(r.slices),
                static_cast<long long>(r.with_detection), area(r.largest).c_str(), r.largest > 0 ? r.largest_slice.c_str() : "-",
                area(r.total).c_str());
    if (volume) std::printf("  %11.2f", volume_ml(r));
    std::printf("\n");
  }
  std::fprintf(stderr, "wrote the per-patient summary of %zu patients to %s\n", rows.size(), o.summary.c_str());
}

}  // namespace

int predict(const PredictOptions& given) {
  PredictOptions options = given;
  options.images = expand_image_arguments(given.images);
  const Device device = model_device(options.device);
  check(!options.images.empty(), "predict: no images given");
  check_output_file(options.json_out);
  // The summary's patients are known (and a file name that does not match refused) before any work.
  std::vector<std::string> patients;
  if (!options.summary.empty()) {
    check_output_file(options.summary);
    std::vector<std::string> names;
    for (const std::string& image : options.images) names.push_back(std::filesystem::path(image).filename().string());
    patients = file_groups(names, options.group_regex, "predict --summary");
  }
  check(options.slice_mm == 0 || (!options.summary.empty() && options.pixel_mm > 0),
        "predict: --slice-mm gives the --summary's volumes, which also need --pixel-mm (the in-plane spacing)");
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
  std::vector<SliceArea> slices;
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
      if (options.pixel_mm > 0) results.back()["area_mm2"] = static_cast<double>(area) * options.pixel_mm * options.pixel_mm;
      kept.push_back({det, prediction.masks[k]});
    }
    if (!options.out_dir.empty()) write_png(output_png(options.out_dir, path, "_overlay.png"), overlay(image, kept), h, w);
    // The label image: 0 where no written detection lies. One class: 255 inside (visible as it is).
    // Several: each pixel holds the label (1, 2, ...: the checkpoint's category order) of the
    // highest-scoring detection covering it. Its nonzero pixels are what the detections cover.
    std::vector<uint8_t> labels(static_cast<size_t>(h * w), 0);
    std::vector<double> best(labels.size(), -1.0);
    for (const Kept& k : kept) {
      const auto label = static_cast<uint8_t>(
          std::find(category_ids.begin(), category_ids.end(), k.detection.category_id) - category_ids.begin() + 1);
      const uint8_t value = category_ids.size() == 1 ? 255 : label;
      for (size_t i = 0; i < labels.size(); ++i)
        if (k.mask[i] && k.detection.score > best[i]) labels[i] = value, best[i] = k.detection.score;
    }
    if (!options.masks_dir.empty()) write_png(output_png(options.masks_dir, path, "_mask.png"), labels, h, w, 1);
    const int64_t covered = std::count_if(labels.begin(), labels.end(), [](uint8_t v) { return v != 0; });
    slices.push_back({file_name, covered});
    const std::string area = options.pixel_mm > 0 ? str_cat(covered, " px = ", fmt(mm2(covered, options.pixel_mm), "%.1f"), " mm^2")
                                                  : str_cat(covered, " px");
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "[%zu/%zu] %s: %zu detections covering %s (%.0f ms)\n", index + 1, options.images.size(),
                 file_name.c_str(), kept.size(), area.c_str(), ms);
  }
  write_file_atomically(options.json_out, results.dump());
  std::fprintf(stderr, "wrote %zu detections to %s\n", results.size(), options.json_out.c_str());
  if (!options.summary.empty()) write_patient_summary(options, patient_areas(slices, patients));
  return 0;
}

}  // namespace mrcnn::apps
