// `mrcnn predict` end to end: COCO results that agree with the library's own detections (boxes in
// original pixels, RLE masks binarised at 0.5), areas, overlays and label images, folders, flip
// test, and the per-patient summary.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "maskrcnn/image_io.h"
#include "maskrcnn/model_io.h"
#include "maskrcnn/rle.h"
#include "tests/helpers.h"

using namespace mrcnn;
using namespace mrcnn::detection;
namespace fs = std::filesystem;

TEST_CASE("mrcnn predict: COCO results equal the library's detections") {
  const fs::path dir = test::scratch_dir("mrcnn_cli_predict");
  const std::string weights = test::save_tiny_detector(dir, 11);
  auto loaded = load_model(weights);
  MaskRCNN& model = *loaded;
  // inspect: one line per tensor, then the totals.
  const test::Run inspected = test::run_mrcnn("inspect " + weights);
  REQUIRE(inspected.status == 0);
  int64_t elements = 0;
  const auto state = model.state_dict();
  for (const auto& [name, t] : state) elements += t.numel();
  char totals[96];
  std::snprintf(totals, sizeof totals, "\n%zu tensors, %lld elements, %.1f MB\n", state.size(), static_cast<long long>(elements),
                elements * 4 / 1e6);
  CHECK(inspected.output.size() > std::string(totals).size());
  CHECK(inspected.output.substr(inspected.output.size() - std::string(totals).size()) == totals);
  CHECK(inspected.output.find("\nbackbone.body.conv1.weight float32 [") != std::string::npos);
  // A 70x90 gray image with a bright blob, written as PNG (8-bit, so reading it back is exact).
  std::vector<uint8_t> rgb(70 * 90 * 3);
  for (int y = 0; y < 70; ++y)
    for (int x = 0; x < 90; ++x)
      for (int k = 0; k < 3; ++k) rgb[(y * 90 + x) * 3 + k] = (y - 30) * (y - 30) + (x - 50) * (x - 50) < 150 ? 220 : 60 + (x % 7);
  const std::string image = (dir / "slice_1.png").string();
  write_png(image, rgb, 70, 90);

  const std::string json = (dir / "out.json").string();
  const test::Run run = test::run_mrcnn("predict --weights " + weights + " " + image + " --json " + json + " --out " + (dir / "png").string());
  INFO(run.output);
  REQUIRE(run.status == 0);
  CHECK(fs::exists(dir / "png" / "slice_1_overlay.png"));
  nlohmann::json results;
  std::ifstream(json) >> results;

  model.eval();
  autograd::NoGradGuard no_grad;
  const auto out = model.forward({load_image(image, 1)});
  const Detections& d = out.detections[0];
  REQUIRE(d.scores.size(0) > 0);
  REQUIRE(results.size() == static_cast<size_t>(d.scores.size(0)));
  const auto boxes = to_vector<float>(d.boxes);
  const Tensor masks = ops::contiguous(d.masks);
  for (size_t k = 0; k < results.size(); ++k) {
    const auto& r = results[k];
    CHECK(r["file_name"] == "slice_1.png");
    CHECK(r["image_id"] == 1);
    CHECK(r["category_id"] == 1);
    CHECK(r["score"].get<float>() == to_vector<float>(d.scores)[k]);
    CHECK(r["bbox"][0].get<float>() == boxes[k * 4]);
    CHECK(r["bbox"][2].get<float>() == doctest::Approx(boxes[k * 4 + 2] - boxes[k * 4]));
    CHECK(r["segmentation"]["size"] == nlohmann::json({70, 90}));
    const auto decoded = rle_decode(rle_from_string(r["segmentation"]["counts"], 70, 90));
    const float* m = masks.data<float>() + k * 70 * 90;
    int64_t mismatches = 0;
    for (size_t i = 0; i < decoded.size(); ++i) mismatches += decoded[i] != (m[i] >= 0.5f);
    CHECK(mismatches == 0);
    CHECK(r["area"] == std::count(decoded.begin(), decoded.end(), 1));
    CHECK(!r.contains("area_mm2"));
  }
  // The progress line: how many pixels the written detections cover together.
  std::vector<uint8_t> covered(70 * 90, 0);
  for (const auto& r : results) {
    const auto decoded = rle_decode(rle_from_string(r["segmentation"]["counts"], 70, 90));
    for (size_t i = 0; i < decoded.size(); ++i) covered[i] |= decoded[i];
  }
  const int64_t covered_pixels = std::count(covered.begin(), covered.end(), 1);
  CHECK(run.output.find("[1/1] slice_1.png: " + std::to_string(results.size()) + (results.size() == 1 ? " detection" : " detections") +
                        " covering " +
                        std::to_string(covered_pixels) + " px (") != std::string::npos);
  // With the pixel spacing, areas in mm^2 too.
  const test::Run spaced = test::run_mrcnn("predict --weights " + weights + " " + image + " --json " + json + " --pixel-mm 0.5");
  REQUIRE(spaced.status == 0);
  nlohmann::json with_mm;
  std::ifstream(json) >> with_mm;
  REQUIRE(with_mm.size() == results.size());
  for (size_t k = 0; k < with_mm.size(); ++k) CHECK(with_mm[k]["area_mm2"].get<double>() == results[k]["area"].get<double>() * 0.25);
  char mm2[32];
  std::snprintf(mm2, sizeof mm2, "%.1f", covered_pixels * 0.25);
  CHECK(spaced.output.find("covering " + std::to_string(covered_pixels) + " px = " + mm2 + " mm^2 (") != std::string::npos);
  CHECK(test::run_mrcnn("predict --weights " + weights + " " + image + " --json " + json + " --pixel-mm 0").output ==
        "mrcnn: error: --pixel-mm: must be > 0, got 0 (--help lists the options)\n");
  // --score-thresh filters further.
  const float median_score = results[results.size() / 2]["score"];
  REQUIRE(test::run_mrcnn("predict --weights " + weights + " " + image + " --json " + json + " --score-thresh " +
                    std::to_string(median_score)).status == 0);
  nlohmann::json filtered;
  std::ifstream(json) >> filtered;
  CHECK(filtered.size() < results.size());
  for (const auto& r : filtered) CHECK(r["score"].get<float>() >= median_score);
  // --masks: one gray PNG per image, 255 exactly where a written detection's mask lies.
  REQUIRE(test::run_mrcnn("predict --weights " + weights + " " + image + " --json " + json + " --score-thresh " +
                          std::to_string(median_score) + " --masks " + (dir / "masks").string()).status == 0);
  std::vector<uint8_t> expected(70 * 90, 0);
  for (const auto& r : filtered) {
    const auto decoded = rle_decode(rle_from_string(r["segmentation"]["counts"], 70, 90));
    for (size_t i = 0; i < expected.size(); ++i) expected[i] |= decoded[i];
  }
  const Tensor mask_png = load_image((dir / "masks" / "slice_1_mask.png").string(), 1);
  REQUIRE(mask_png.sizes() == Shape{1, 70, 90});
  const float* mask_px = mask_png.data<float>();
  int64_t inside = 0, wrong = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    inside += expected[i];
    wrong += mask_px[i] != (expected[i] ? 1.0f : 0.0f);
  }
  CHECK(inside > 0);
  CHECK(wrong == 0);
  // --flip-test: the library's detections with both views combined.
  REQUIRE(test::run_mrcnn("predict --weights " + weights + " " + image + " --json " + json + " --flip-test").status == 0);
  nlohmann::json flipped;
  std::ifstream(json) >> flipped;
  model.set_flip_test(true);
  const Detections both = model.forward({load_image(image, 1)}).detections[0];
  REQUIRE(flipped.size() == static_cast<size_t>(both.scores.size(0)));
  const auto both_scores = to_vector<float>(both.scores), both_boxes = to_vector<float>(both.boxes);
  for (size_t k = 0; k < flipped.size(); ++k) {
    CHECK(flipped[k]["score"].get<float>() == both_scores[k]);
    CHECK(flipped[k]["bbox"][1].get<float>() == both_boxes[k * 4 + 1]);
  }
  CHECK(flipped[0]["score"].get<float>() != results[0]["score"].get<float>());  // scores are means over the views
  // A config with "flip_test": true makes it the default; --no-flip-test overrides that.
  auto asks = config_to_json(test::tiny_detector_config());
  asks["flip_test"] = true;
  std::ofstream(dir / "flip.json") << asks.dump();
  const std::string with_config = "predict --weights " + weights + " --config " + (dir / "flip.json").string() + " " + image + " --json " + json;
  REQUIRE(test::run_mrcnn(with_config).status == 0);
  nlohmann::json by_default;
  std::ifstream(json) >> by_default;
  CHECK(by_default == flipped);
  REQUIRE(test::run_mrcnn(with_config + " --no-flip-test").status == 0);
  nlohmann::json overridden;
  std::ifstream(json) >> overridden;
  CHECK(overridden == results);
  const test::Run both_flags = test::run_mrcnn(with_config + " --flip-test --no-flip-test");
  CHECK(both_flags.status != 0);
  CHECK(both_flags.output.find("--flip-test excludes --no-flip-test") != std::string::npos);
  // A folder stands for its image files in name order (not other files, not subfolders).
  const fs::path folder = dir / "slices";
  fs::create_directories(folder / "sub");
  fs::copy_file(image, folder / "b.PNG");
  fs::copy_file(image, folder / "a.png");
  fs::copy_file(image, folder / "sub" / "c.png");
  std::ofstream(folder / "notes.txt") << "not an image";
  const test::Run listed = test::run_mrcnn("predict --weights " + weights + " " + folder.string() + " --json " + json);
  INFO(listed.output);
  REQUIRE(listed.status == 0);
  CHECK(listed.output.find("[1/2] a.png: ") != std::string::npos);
  CHECK(listed.output.find("[2/2] b.PNG: ") != std::string::npos);
  nlohmann::json from_folder;
  std::ifstream(json) >> from_folder;
  REQUIRE(from_folder.size() == 2 * results.size());
  CHECK(from_folder[0]["file_name"] == "a.png");
  CHECK(from_folder[results.size()]["file_name"] == "b.PNG");
  CHECK(from_folder[results.size()]["image_id"] == 2);
  CHECK(from_folder[results.size()]["segmentation"] == results[0]["segmentation"]);
  // Two images with one stem would write one overlay: refused before any work.
  fs::copy_file(image, folder / "sub" / "a.png");
  const test::Run clash = test::run_mrcnn("predict --weights " + weights + " " + folder.string() + " " + (folder / "sub" / "a.png").string() +
                                          " --json " + json + " --out " + (dir / "png").string());
  CHECK(clash.status == 1);
  CHECK(clash.output == "mrcnn: error: predict: " + (folder / "a.png").string() + " and " + (folder / "sub" / "a.png").string() +
                            " would both write " + (dir / "png" / "a_overlay.png").string() + "; give them different names\n");
  fs::create_directories(dir / "nothing");
  const test::Run none = test::run_mrcnn("predict --weights " + weights + " " + (dir / "nothing").string() + " --json " + json);
  CHECK(none.status == 1);
  CHECK(none.output == "mrcnn: error: " + (dir / "nothing").string() +
                           ": a folder with no image files (.jpg, .jpeg, .png, .bmp, .pgm, .ppm, .pnm, .tga, .gif)\n");
  fs::remove_all(dir);
}

namespace {

// A 70x90 gray PNG with a bright disc at (cx, cy).
void write_disc(const fs::path& path, int cx, int cy) {
  std::vector<uint8_t> rgb(70 * 90 * 3);
  for (int y = 0; y < 70; ++y)
    for (int x = 0; x < 90; ++x)
      for (int k = 0; k < 3; ++k) rgb[(y * 90 + x) * 3 + k] = (y - cy) * (y - cy) + (x - cx) * (x - cx) < 150 ? 220 : 60 + (x % 7);
  write_png(path.string(), rgb, 70, 90);
}

std::string printed(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

// A CSV field holding a comma, quoted.
std::string csv_quoted(const std::string& field) { return field.find(',') == std::string::npos ? field : "\"" + field + "\""; }

}  // namespace

TEST_CASE("mrcnn predict --summary: per patient, the slices, those with a detection, the largest and total covered area") {
  const fs::path dir = test::scratch_dir("mrcnn_cli_predict_summary");
  const std::string weights = test::save_tiny_detector(dir, 13);
  // Three slices of patient p1 (given out of order), one of "p,2" (a comma, quoted in the CSV).
  const std::vector<std::string> names = {"p1_10.png", "p1_9.png", "p,2_1.png", "p1_011.png"};
  const int centres[][2] = {{50, 30}, {30, 40}, {60, 45}, {20, 20}};
  std::string images;
  for (size_t i = 0; i < names.size(); ++i) {
    write_disc(dir / names[i], centres[i][0], centres[i][1]);
    images += " '" + (dir / names[i]).string() + "'";
  }
  const std::string json = (dir / "out.json").string(), csv = (dir / "summary.csv").string();
  REQUIRE(test::run_mrcnn("predict --weights " + weights + images + " --json " + json).status == 0);
  nlohmann::json all;
  std::ifstream(json) >> all;
  // A threshold just above the weakest slice's best score: that slice has no written detection.
  std::vector<float> best(names.size(), 0.0f), scores;
  for (const auto& r : all) {
    const size_t slice = r["image_id"].get<size_t>() - 1;
    best[slice] = std::max(best[slice], r["score"].get<float>());
    scores.push_back(r["score"]);
  }
  const float weakest = *std::min_element(best.begin(), best.end());
  float above = 2.0f;
  for (float s : scores)
    if (s > weakest) above = std::min(above, s);
  REQUIRE(above <= 1.0f);
  const double threshold = (static_cast<double>(weakest) + above) / 2;
  // Each slice's covered pixels: the union of its detections scoring >= threshold.
  std::vector<int64_t> covered(names.size(), 0);
  for (size_t slice = 0; slice < names.size(); ++slice) {
    std::vector<uint8_t> mask(70 * 90, 0);
    for (const auto& r : all)
      if (r["image_id"].get<size_t>() == slice + 1 && r["score"].get<float>() >= threshold) {
        const auto decoded = rle_decode(rle_from_string(r["segmentation"]["counts"], 70, 90));
        for (size_t i = 0; i < mask.size(); ++i) mask[i] |= decoded[i];
      }
    covered[slice] = std::count(mask.begin(), mask.end(), 1);
  }
  REQUIRE(std::count(covered.begin(), covered.end(), 0) >= 1);
  const auto row = [&](const std::string& patient, const std::vector<size_t>& slices) {
    int64_t with = 0, largest = 0, total = 0;
    std::string largest_slice;
    for (size_t s : slices) {
      with += covered[s] > 0, total += covered[s];
      if (covered[s] > largest) largest = covered[s], largest_slice = names[s];
    }
    return csv_quoted(patient) + "," + std::to_string(slices.size()) + "," + std::to_string(with) + "," +
           std::to_string(largest) + "," + csv_quoted(largest_slice) + "," + std::to_string(total) + "," +
           printed("%.2f", largest * 0.25) + "," + printed("%.2f", total * 0.25) + "," +
           printed("%.3f", total * 0.25 * 4 / 1000) + "\n";
  };
  const std::string options = " --json " + json + " --score-thresh " + printed("%.17g", threshold) + " --pixel-mm 0.5";
  const fs::path report = dir / "report";
  const test::Run run = test::run_mrcnn("predict --weights " + weights + images + options + " --summary " + csv +
                                        " --slice-mm 4 --report " + report.string());
  INFO(run.output);
  REQUIRE(run.status == 0);
  std::ifstream in(csv);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text == "patient,slices,slices_with_detection,largest_px,largest_slice,total_px,largest_mm2,total_mm2,volume_ml\n" +
                    row("p1", {0, 1, 3}) + row("p,2", {2}));
  CHECK(run.output.find("Per patient (^([^_]+)_), detections scoring >= " + printed("%.2f", threshold) + ":\n") != std::string::npos);
  CHECK(run.output.find("\np1                3 ") != std::string::npos);
  CHECK(run.output.find("wrote the per-patient summary of 2 patients to " + csv + "\n") != std::string::npos);
  // The report: the same rows, then every slice by patient in numeric order, each with its overlay.
  std::ifstream report_file(report / "index.html");
  const std::string html((std::istreambuf_iterator<char>(report_file)), std::istreambuf_iterator<char>());
  const auto html_row = [&](const std::string& patient, const std::vector<size_t>& slices) {
    int64_t with = 0, largest = 0, total = 0;
    std::string largest_slice = "-";
    for (size_t s : slices) {
      with += covered[s] > 0, total += covered[s];
      if (covered[s] > largest) largest = covered[s], largest_slice = names[s];
    }
    return "<tr><td class=l>" + patient + "</td><td>" + std::to_string(slices.size()) + "</td><td>" + std::to_string(with) +
           "</td><td>" + printed("%.1f", largest * 0.25) + "</td><td class=l>" + largest_slice + "</td><td>" +
           printed("%.1f", total * 0.25) + "</td><td>" + printed("%.2f", total * 0.25 * 4 / 1000) + "</td></tr>";
  };
  CHECK(html.find(html_row("p1", {0, 1, 3})) != std::string::npos);
  CHECK(html.find(html_row("p,2", {2})) != std::string::npos);
  const size_t slices_at = html.find("<h2>Slices, by patient");
  REQUIRE(slices_at != std::string::npos);
  const auto slice_at = [&](const std::string& name) { return html.find("<td class=l>" + name + "</td>", slices_at); };
  CHECK(slice_at("p1_9.png") < slice_at("p1_10.png"));
  CHECK(slice_at("p1_10.png") < slice_at("p1_011.png"));
  CHECK(slice_at("p1_011.png") < slice_at("p,2_1.png"));
  CHECK(slice_at("p,2_1.png") != std::string::npos);
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string png = "images/" + std::to_string(i + 1) + "_" + names[i].substr(0, names[i].size() - 4) + ".png";
    CHECK(html.find("<img src=\"" + png + "\" width=90>") != std::string::npos);
    REQUIRE(fs::exists(report / png));
    CHECK(load_image((report / png).string(), 3).sizes() == Shape{3, 70, 90});
  }
  CHECK(html.find("It is not a diagnosis") != std::string::npos);
  CHECK(html.find("by Cavalieri's rule") != std::string::npos);
  // --cams: beside each overlay, why the slice's best written detection scored; "-" without one.
  const fs::path with_cams = dir / "report_cams", cams_out = dir / "cams";
  const test::Run cams = test::run_mrcnn("predict --weights " + weights + images + options + " --report " + with_cams.string() +
                                         " --out " + cams_out.string() + " --cams");
  INFO(cams.output);
  REQUIRE(cams.status == 0);
  std::ifstream cams_file(with_cams / "index.html");
  const std::string cams_html((std::istreambuf_iterator<char>(cams_file)), std::istreambuf_iterator<char>());
  CHECK(cams_html.find("<th class=l>why the best detection scored</th>") != std::string::npos);
  CHECK(cams_html.find("<dt>Why the best detection scored</dt>") != std::string::npos);
  CHECK(html.find("why the best detection scored") == std::string::npos);  // only when asked for
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string stem = names[i].substr(0, names[i].size() - 4);
    const std::string png = "images/" + std::to_string(i + 1) + "_" + stem + "_cam.png";
    const bool written = best[i] >= threshold;
    CHECK(fs::exists(with_cams / png) == written);
    CHECK(fs::exists(cams_out / (stem + "_cam.png")) == written);
    if (written) {
      CHECK(cams_html.find("<img src=\"" + png + "\" width=90>") != std::string::npos);
      CHECK(load_image((with_cams / png).string(), 3).sizes() == Shape{3, 70, 90});
    }
  }
  CHECK(cams_html.find("<td class=l>-</td></tr>") != std::string::npos);  // the slice without a written detection
  const test::Run cams_alone = test::run_mrcnn("predict --weights " + weights + images + " --json " + json + " --cams");
  CHECK(cams_alone.status == 1);
  CHECK(cams_alone.output == "mrcnn: error: predict: --cams draws its maps beside the overlays: give --out or --report too\n");
  // Without the spacings: pixels only; another --group-regex groups differently (every slice its own patient).
  REQUIRE(test::run_mrcnn("predict --weights " + weights + images + " --json " + json + " --score-thresh " +
                          printed("%.17g", threshold) + " --summary " + csv + " --group-regex '^(.*)[.]png'").status == 0);
  std::ifstream in_px(csv);
  const std::string pixels((std::istreambuf_iterator<char>(in_px)), std::istreambuf_iterator<char>());
  std::string expected = "patient,slices,slices_with_detection,largest_px,largest_slice,total_px\n";
  for (size_t s = 0; s < names.size(); ++s) {
    const std::string stem = names[s].substr(0, names[s].size() - 4);
    expected += csv_quoted(stem) + ",1," + std::to_string(covered[s] > 0) + "," + std::to_string(covered[s]) + "," +
                (covered[s] > 0 ? csv_quoted(names[s]) : "") + "," + std::to_string(covered[s]) + "\n";
  }
  CHECK(pixels == expected);
  // Refused before any work: a file name outside the pattern, a volume without the in-plane spacing.
  write_disc(dir / "scan.png", 40, 30);
  const test::Run unmatched = test::run_mrcnn("predict --weights " + weights + images + " " + (dir / "scan.png").string() +
                                              " --json " + json + " --summary " + csv);
  CHECK(unmatched.status == 1);
  CHECK(unmatched.output == "mrcnn: error: predict --summary: file_name 'scan.png' does not match --group-regex '^([^_]+)_'\n");
  const test::Run no_plane =
      test::run_mrcnn("predict --weights " + weights + images + " --json " + json + " --summary " + csv + " --slice-mm 4");
  CHECK(no_plane.status == 1);
  CHECK(no_plane.output ==
        "mrcnn: error: predict: --slice-mm gives volumes in --summary and --report, which also need --pixel-mm (the in-plane "
        "spacing)\n");
  const test::Run report_unmatched = test::run_mrcnn("predict --weights " + weights + " " + (dir / "scan.png").string() +
                                                     " --json " + json + " --report " + (dir / "report2").string());
  CHECK(report_unmatched.output == "mrcnn: error: predict --report: file_name 'scan.png' does not match --group-regex '^([^_]+)_'\n");
  CHECK(!fs::exists(dir / "report2"));
  fs::remove_all(dir);
}

TEST_CASE("mrcnn eval --results: predict's detections score exactly as eval's own run of the model") {
  const fs::path dir = test::scratch_dir("mrcnn_cli_eval_results");
  const std::string weights = test::save_tiny_detector(dir, 17);
  fs::create_directories(dir / "images");
  const std::vector<std::string> names = {"p1_a.png", "p1_b.png", "p2_a.png"};
  const int centres[][2] = {{50, 30}, {40, 35}, {30, 40}};
  nlohmann::json coco = {{"images", nlohmann::json::array()}, {"annotations", nlohmann::json::array()},
                         {"categories", {{{"id", 1}, {"name", "tumor"}}}}};
  for (size_t i = 0; i < names.size(); ++i) {
    write_disc(dir / "images" / names[i], centres[i][0], centres[i][1]);
    const int x = centres[i][0] - 10, y = centres[i][1] - 10;
    // Ids that are not the images' places in predict's list, which names them in reverse.
    coco["images"].push_back({{"id", 10 + i}, {"file_name", names[i]}, {"width", 90}, {"height", 70}});
    coco["annotations"].push_back({{"id", i + 1}, {"image_id", 10 + i}, {"category_id", 1}, {"bbox", {x, y, 20, 20}},
                                   {"area", 400}, {"iscrowd", 0}, {"segmentation", {{x, y, x + 20, y, x + 20, y + 20, x, y + 20}}}});
  }
  const std::string data = (dir / "val.json").string(), images = (dir / "images").string();
  std::ofstream(data) << coco.dump();
  const std::string rules = " --data " + data + " --images " + images + " --score-thresh 0.3";
  REQUIRE(test::run_mrcnn("eval --weights " + weights + rules + " --json " + (dir / "own.json").string()).status == 0);
  const std::string predicted = (dir / "predicted.json").string();
  REQUIRE(test::run_mrcnn("predict --weights " + weights + " " + images + "/p2_a.png " + images + "/p1_b.png " + images +
                          "/p1_a.png --json " + predicted).status == 0);
  const test::Run scored = test::run_mrcnn("eval --results " + predicted + rules + " --json " + (dir / "scored.json").string() +
                                           " --report " + (dir / "report").string());
  INFO(scored.output);
  REQUIRE(scored.status == 0);
  nlohmann::json own, from_results, detections;
  std::ifstream(dir / "own.json") >> own;
  std::ifstream(dir / "scored.json") >> from_results;
  std::ifstream(predicted) >> detections;
  CHECK(scored.output.find(predicted + ": " + std::to_string(detections.size()) + " detections\n") != std::string::npos);
  REQUIRE(own["images"].size() == 3);
  REQUIRE(!detections.empty());
  for (const char* key : {"images", "patients", "dice", "iou", "hd95", "lesions", "segm", "bbox", "intervals", "operating_points",
                          "median_area_difference"}) {
    INFO(key);
    CHECK(from_results[key] == own[key]);
  }
  CHECK(from_results["results"] == predicted);
  CHECK(!from_results.contains("weights"));
  CHECK(from_results["flip_test"] == false);
  std::ifstream html_file(dir / "report" / "index.html");
  const std::string html((std::istreambuf_iterator<char>(html_file)), std::istreambuf_iterator<char>());
  CHECK(html.find("<p>Detections <code>" + predicted + "</code> on <code>") != std::string::npos);
  // The area chart: one orange dot per slice at (labelled, predicted) pixels, both axes 0 .. the
  // largest area, over x 56..464 and y 320..56.
  CHECK(html.find("<img src=\"area_agreement.png\" width=480>") != std::string::npos);
  const Tensor chart = load_image((dir / "report" / "area_agreement.png").string(), 3);
  REQUIRE(chart.sizes() == Shape{3, 360, 480});
  double largest = 0;
  for (const auto& image : from_results["images"])
    largest = std::max({largest, image["truth_pixels"].get<double>(), image["predicted_pixels"].get<double>()});
  REQUIRE(largest > 0);
  for (const auto& image : from_results["images"]) {
    const int64_t x = std::lround(56 + image["truth_pixels"].get<double>() / largest * 408);
    const int64_t y = std::lround(320 - image["predicted_pixels"].get<double>() / largest * 264);
    INFO(image["file_name"]);
    const auto byte = [&](int64_t c) { return std::lround(chart.data<float>()[(c * 360 + y) * 480 + x] * 255); };
    CHECK(byte(0) == 255);
    CHECK(byte(1) == 127);
    CHECK(byte(2) == 14);
  }
  // One source, and no model options without a model.
  const auto error_of = [&](const std::string& args) { return test::run_mrcnn("eval" + args + rules).output; };
  CHECK(error_of("") == "mrcnn: error: eval: give --weights (a model to run) or --results (detections to score)\n");
  CHECK(error_of(" --weights " + weights + " --results " + predicted) == "mrcnn: error: eval: --weights and --results exclude each other\n");
  CHECK(error_of(" --results " + predicted + " --flip-test") ==
        "mrcnn: error: eval: --config, --device and --flip-test/--no-flip-test run a model; --results scores detections already made\n");
  // Detections without masks, or of an image the data does not hold: one line naming the file and entry.
  nlohmann::json boxes_only = detections;
  boxes_only[0].erase("segmentation");
  std::ofstream(dir / "boxes.json") << boxes_only.dump();
  CHECK(error_of(" --results " + (dir / "boxes.json").string()) ==
        "mrcnn: error: " + (dir / "boxes.json").string() + ": [0]: no segmentation: Dice, IoU and HD95 need each detection's mask\n");
  nlohmann::json elsewhere = detections;
  elsewhere[1]["file_name"] = "p3_a.png";
  std::ofstream(dir / "elsewhere.json") << elsewhere.dump();
  CHECK(error_of(" --results " + (dir / "elsewhere.json").string()) ==
        "mrcnn: error: " + (dir / "elsewhere.json").string() + ": [1]: file_name 'p3_a.png' is not in the ground truth\n");
  // Without file names (plain COCO results), image_id decides.
  nlohmann::json by_id = detections;
  for (auto& d : by_id) {
    const std::string name = d["file_name"];
    d["image_id"] = 10 + (std::find(names.begin(), names.end(), name) - names.begin());
    d.erase("file_name");
  }
  std::ofstream(dir / "by_id.json") << by_id.dump();
  REQUIRE(test::run_mrcnn("eval --results " + (dir / "by_id.json").string() + rules + " --json " + (dir / "by_id_eval.json").string()).status == 0);
  nlohmann::json from_ids;
  std::ifstream(dir / "by_id_eval.json") >> from_ids;
  CHECK(from_ids["images"] == own["images"]);
  CHECK(from_ids["segm"] == own["segm"]);
  fs::remove_all(dir);
}
