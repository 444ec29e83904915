// The `mrcnn` binary end to end (predict: test_apps_predict.cpp, features: test_apps_features.cpp):
// eval with several categories, compare, selftest, bench, curves; bad input gives one error line
// naming the file and a non-zero exit.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include <unistd.h>

#include "bench/allocator_replay.h"
#include "cuda/context.h"
#include "maskrcnn/bootstrap.h"
#include "maskrcnn/dataset.h"
#include "maskrcnn/evaluate.h"
#include "maskrcnn/image_io.h"
#include "maskrcnn/model_io.h"
#include "maskrcnn/mask_rcnn.h"
#include "maskrcnn/rle.h"
#include "autograd/node.h"
#include "tensor/safetensors.h"
#include "tests/helpers.h"

using namespace mrcnn;
using namespace mrcnn::detection;
namespace fs = std::filesystem;

TEST_CASE("mrcnn eval: with several categories, each is also scored on its own") {
  const fs::path dir = test::scratch_dir("mrcnn_cli_eval_categories");
  Config config = test::tiny_detector_config();
  config.num_classes = 3;
  manual_seed(5);
  MaskRCNN built(config);
  // Class 2 scores as class 1 does, so the random model's top detections hold both classes.
  for (const char* name : {"roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.cls_score.bias"}) {
    Tensor t = built.state_dict().at(name);
    const int64_t row = t.numel() / 3;
    std::copy_n(t.data<float>() + row, row, t.data<float>() + 2 * row);
  }
  const std::string weights = (dir / "model.safetensors").string();
  nn::save_checkpoint(weights, nn::make_checkpoint(built, nullptr, config_to_json(config).dump(), 0));
  fs::create_directories(dir / "images");
  std::vector<uint8_t> rgb(70 * 90 * 3);
  for (int y = 0; y < 70; ++y)
    for (int x = 0; x < 90; ++x)
      for (int k = 0; k < 3; ++k) rgb[(y * 90 + x) * 3 + k] = (y - 30) * (y - 30) + (x - 50) * (x - 50) < 150 ? 220 : 60 + (x % 7);
  write_png((dir / "images" / "p1_a.png").string(), rgb, 70, 90);
  write_png((dir / "images" / "p2_a.png").string(), rgb, 70, 90);
  const nlohmann::json coco = {
      {"images", {{{"id", 1}, {"file_name", "p1_a.png"}, {"width", 90}, {"height", 70}},
                  {{"id", 2}, {"file_name", "p2_a.png"}, {"width", 90}, {"height", 70}}}},
      {"categories", {{{"id", 1}, {"name", "tumor"}}, {{"id", 2}, {"name", "edema"}}}},
      {"annotations", {{{"id", 1}, {"image_id", 1}, {"category_id", 1}, {"bbox", {38, 18, 24, 24}}, {"area", 576}, {"iscrowd", 0}, {"segmentation", {{38, 18, 62, 18, 62, 42, 38, 42}}}},
                       {{"id", 2}, {"image_id", 1}, {"category_id", 2}, {"bbox", {5, 5, 15, 15}}, {"area", 225}, {"iscrowd", 0}, {"segmentation", {{5, 5, 20, 5, 20, 20, 5, 20}}}},
                       {{"id", 3}, {"image_id", 2}, {"category_id", 2}, {"bbox", {38, 18, 24, 24}}, {"area", 576}, {"iscrowd", 0}, {"segmentation", {{38, 18, 62, 18, 62, 42, 38, 42}}}}}}};
  std::ofstream(dir / "val.json") << coco.dump();
  const std::string json = (dir / "eval.json").string();
  const test::Run run = test::run_mrcnn("eval --weights " + weights + " --data " + (dir / "val.json").string() + " --images " +
                                        (dir / "images").string() + " --score-thresh 0.1 --json " + json + " --report " +
                                        (dir / "report").string());
  INFO(run.output);
  REQUIRE(run.status == 0);
  CHECK(run.output.find("Per category (each structure against its own annotations and detections; the figures above pool them)") !=
        std::string::npos);
  nlohmann::json e;
  std::ifstream(json) >> e;
  REQUIRE(e["categories"].size() == 2);
  CHECK(e["categories"][0]["name"] == "tumor");
  CHECK(e["categories"][1]["name"] == "edema");
  CHECK(e["categories"][0]["lesions"] == 1);
  CHECK(e["categories"][1]["lesions"] == 2);
  CHECK(e["lesions"]["total"] == 3);
  // The same figures as the library's, from the same detections.
  const CocoDataset truth = load_coco((dir / "val.json").string());
  auto model = load_model(weights);
  const auto samples = load_samples(truth, (dir / "images").string(), 1);
  const std::vector<std::string> patients = {"p1", "p2"};
  const auto evaluation = evaluate_dataset(*model, truth, samples, patients, 0.1, 0.5);
  const auto by = summarize_by_category(truth, evaluation.predictions, patients, 0.1, 0.5);
  REQUIRE(by.size() == 2);
  for (size_t k = 0; k < 2; ++k) {
    CHECK(e["categories"][k]["dice"].get<double>() == by[k].summary.mean_dice);
    CHECK(e["categories"][k]["detected"] == by[k].summary.detected);
    CHECK(e["categories"][k]["false_positives"] == by[k].summary.false_positives);
    // Both classes predicted something, so the split by category is exercised on both sides.
    CHECK(by[k].summary.detected + by[k].summary.false_positives > 0);
    // Each category's own interval, resampling the same patients.
    const PatientIntervals own = patient_bootstrap(by[k].summary);
    CHECK(e["categories"][k]["intervals"]["patients"] == 2);
    CHECK(e["categories"][k]["intervals"]["dice"] == nlohmann::json({own.dice.low, own.dice.high}));
    CHECK(e["categories"][k]["intervals"]["sensitivity"] ==
          nlohmann::json({own.sensitivity.low, own.sensitivity.high}));
  }
  // The table's interval column: tumour (one lesion, on p1's slice) and edema, each as the library has it.
  const auto interval_text = [](const Interval& i) {
    char text[32];
    std::snprintf(text, sizeof text, "%.3f-%.3f", i.low, i.high);
    return std::string(text);
  };
  CHECK(run.output.find("  category         lesions   Dice     Dice 95%    IoU") != std::string::npos);
  for (size_t k = 0; k < 2; ++k)
    CHECK(run.output.find(interval_text(patient_bootstrap(by[k].summary).dice)) != std::string::npos);
  // Two patients: the bootstrap interval of the pooled figures, as the library computes it.
  const PatientIntervals intervals = patient_bootstrap(evaluation.segmentation);
  REQUIRE(e["intervals"]["patients"] == 2);
  CHECK(e["intervals"]["resamples"] == 2000);
  CHECK(e["intervals"]["dice"] == nlohmann::json({intervals.dice.low, intervals.dice.high}));
  CHECK(e["intervals"]["dice"][0].get<double>() <= e["dice"].get<double>());
  CHECK(e["intervals"]["dice"][1].get<double>() >= e["dice"].get<double>());
  CHECK(run.output.find("  95% intervals, bootstrap over the 2 patients (2000 resamples): ") != std::string::npos);
  std::ifstream html_file(dir / "report" / "index.html");
  const std::string html((std::istreambuf_iterator<char>(html_file)), std::istreambuf_iterator<char>());
  CHECK(html.find("<h2>Per category</h2>") != std::string::npos);
  CHECK(html.find("<th>95% interval</th>") != std::string::npos);
  CHECK(html.find("<td class=l>edema</td><td>2</td>") != std::string::npos);
  // predict --masks with several classes: each pixel holds the label of the best detection on it.
  const test::Run predicted = test::run_mrcnn("predict --weights " + weights + " " + (dir / "images" / "p1_a.png").string() +
                                              " --json " + (dir / "p.json").string() + " --score-thresh 0.1 --masks " +
                                              (dir / "masks").string());
  REQUIRE(predicted.status == 0);
  nlohmann::json results;
  std::ifstream(dir / "p.json") >> results;
  std::vector<int> expected(70 * 90, 0);
  std::vector<double> best(expected.size(), -1.0);
  std::set<int> labels_seen;
  for (const auto& r : results) {
    const auto decoded = rle_decode(rle_from_string(r["segmentation"]["counts"], 70, 90));
    const int label = r["category_id"].get<int>();  // ids 1 and 2 are labels 1 and 2 here
    const double score = r["score"].get<float>();
    for (size_t i = 0; i < decoded.size(); ++i)
      if (decoded[i] && score > best[i]) expected[i] = label, best[i] = score;
  }
  const Tensor label_png = load_image((dir / "masks" / "p1_a_mask.png").string(), 1);
  int64_t wrong = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const int value = static_cast<int>(std::lround(label_png.data<float>()[i] * 255.0f));
    wrong += value != expected[i];
    labels_seen.insert(value);
  }
  CHECK(wrong == 0);
  CHECK(labels_seen == std::set<int>{0, 1, 2});
  fs::remove_all(dir);
}

TEST_CASE("mrcnn compare: two evaluations of the same slices, each difference with its paired interval") {
  const fs::path dir = test::scratch_dir("mrcnn_cli_compare");
  // Two evaluations as `eval --json` writes them: b's Dice is a's + 0.1 on every slice.
  auto evaluation = [](double shift, double score_thresh) {
    nlohmann::json images = nlohmann::json::array();
    for (int p = 0; p < 4; ++p)
      for (int k = 0; k < 2; ++k)
        images.push_back({{"file_name", "p" + std::to_string(p) + "_" + std::to_string(k) + ".png"},
                          {"patient", "p" + std::to_string(p)},
                          {"dice", 0.5 + 0.1 * p + shift},
                          {"iou", 0.3 + 0.1 * p},
                          {"hd95", k == 1 && p == 0 ? nlohmann::json(nullptr) : nlohmann::json(4.0 + p)},
                          {"lesions", 1},
                          {"detected", 1}});
    return nlohmann::json{{"score_thresh", score_thresh}, {"lesion_iou", 0.5}, {"images", images}};
  };
  std::ofstream(dir / "a.json") << evaluation(0.0, 0.5).dump();
  std::ofstream(dir / "b.json") << evaluation(0.1, 0.5).dump();
  std::ofstream(dir / "c.json") << evaluation(0.0, 0.3).dump();
  const std::string a = (dir / "a.json").string(), b = (dir / "b.json").string();
  test::Run run = test::run_mrcnn("compare " + a + " " + b + " --json " + (dir / "out.json").string());
  INFO(run.output);
  REQUIRE(run.status == 0);
  CHECK(run.output.find("8 images, 4 patients; 95% intervals of b - a, paired bootstrap over patients (2000 resamples;") !=
        std::string::npos);
  CHECK(run.output.find("  Dice            0.650    0.750   +0.100     +0.100..+0.100  b higher\n") != std::string::npos);
  CHECK(run.output.find("  IoU             0.450    0.450   +0.000     +0.000..+0.000  no difference shown\n") != std::string::npos);
  nlohmann::json out;
  std::ifstream(dir / "out.json") >> out;
  CHECK(out["patients"] == 4);
  CHECK(out["dice"]["difference"].get<double>() == doctest::Approx(0.1));
  CHECK(out["dice"]["interval"][0].get<double>() == doctest::Approx(0.1));
  CHECK(out["hd95"]["a"].get<double>() == doctest::Approx((4.0 + 5 * 2 + 6 * 2 + 7 * 2) / 7.0));  // one slice undefined
  // b's slices listed in another order: matched by name, the same table.
  nlohmann::json reversed = evaluation(0.1, 0.5);
  std::reverse(reversed["images"].begin(), reversed["images"].end());
  std::ofstream(dir / "reversed.json") << reversed.dump();
  const test::Run in_order = run;
  run = test::run_mrcnn("compare " + a + " " + (dir / "reversed.json").string());
  CHECK(run.status == 0);
  CHECK(run.output.substr(run.output.find("8 images")) == in_order.output.substr(in_order.output.find("8 images")));
  // Other rules: compared, with a warning that the difference mixes them in.
  run = test::run_mrcnn("compare " + a + " " + (dir / "c.json").string());
  CHECK(run.status == 0);
  CHECK(run.output.find("warning: the two evaluations used different rules (score >= 0.5 / 0.3, lesion IoU >= 0.5 / 0.5)") !=
        std::string::npos);
  // Not an evaluation; other images; an impossible level.
  std::ofstream(dir / "bad.json") << R"({"score_thresh": 0.5, "lesion_iou": 0.5, "images": [{"file_name": "x.png"}]})";
  run = test::run_mrcnn("compare " + a + " " + (dir / "bad.json").string());
  CHECK(run.status == 1);
  CHECK(run.output.rfind("mrcnn: error: " + (dir / "bad.json").string() + ": not an evaluation written by mrcnn eval --json (", 0) == 0);
  nlohmann::json impossible = evaluation(0.0, 0.5);
  impossible["images"][3]["detected"] = 2;
  std::ofstream(dir / "impossible.json") << impossible.dump();
  run = test::run_mrcnn("compare " + a + " " + (dir / "impossible.json").string());
  CHECK(run.output == "mrcnn: error: " + (dir / "impossible.json").string() + ": images[3]: needs 0 <= detected <= lesions\n");
  nlohmann::json fewer = evaluation(0.0, 0.5);
  fewer["images"].erase(fewer["images"].begin());
  std::ofstream(dir / "fewer.json") << fewer.dump();
  run = test::run_mrcnn("compare " + a + " " + (dir / "fewer.json").string());
  CHECK(run.output == "mrcnn: error: compare: 8 images against 7 (both evaluations must be of the same images)\n");
  run = test::run_mrcnn("compare " + a + " " + b + " --level 1");
  CHECK(run.status == 2);
  CHECK(run.output == "mrcnn: error: --level: must be in (0, 1), got 1 (--help lists the options)\n");
  fs::remove_all(dir);
}

TEST_CASE("mrcnn: bad input is one error line naming the file") {
  const fs::path dir = test::scratch_dir("mrcnn_cli_errors");
  const std::string weights = test::save_tiny_detector(dir, 12);
  const std::string json = (dir / "out.json").string();
  std::ofstream(dir / "broken.jpg") << "\xff\xd8\xff\xe0 truncated";

  test::Run run = test::run_mrcnn("predict --weights " + weights + " " + (dir / "missing.png").string() + " --json " + json);
  INFO("the last command printed: " << run.output);  // evaluated when a check fails: the current run
  CHECK(run.status == 1);
  CHECK(run.output == "mrcnn: error: " + (dir / "missing.png").string() + ": cannot read image (cannot open file)\n");
  run = test::run_mrcnn("predict --weights " + weights + " " + (dir / "broken.jpg").string() + " --json " + json);
  CHECK(run.status == 1);
  CHECK(run.output.rfind("mrcnn: error: " + (dir / "broken.jpg").string() + ": cannot read image (", 0) == 0);
  // A config that the weights do not fit (another class count).
  auto other = config_to_json(test::tiny_detector_config());
  other["num_classes"] = 3;
  std::ofstream(dir / "other.json") << other.dump();
  run = test::run_mrcnn("predict --weights " + weights + " --config " + (dir / "other.json").string() + " x.png --json " + json);
  CHECK(run.status == 1);
  CHECK(run.output.find(weights + ": does not fit the config: load_state_dict: roi_heads.box_predictor.bbox_pred.bias has shape [8] in the checkpoint but [12] in the model") != std::string::npos);
  std::ofstream(dir / "hostile.safetensors") << std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) << "{";
  run = test::run_mrcnn("predict --weights " + (dir / "hostile.safetensors").string() + " x.png --json " + json);
  CHECK(run.status == 1);
  CHECK(run.output.find((dir / "hostile.safetensors").string()) != std::string::npos);
  CHECK(std::count(run.output.begin(), run.output.end(), '\n') == 1);
  // A device that is not there: one line saying why (here: no GPU or no CUDA build).
  run = test::run_mrcnn("predict --weights " + weights + " x.png --json " + json + " --device cuda:7");
  CHECK(run.status == 1);
  CHECK(run.output.rfind("mrcnn: error: --device cuda:7: ", 0) == 0);
  CHECK(std::count(run.output.begin(), run.output.end(), '\n') == 1);
  CHECK(!fs::exists(json));  // nothing half-written
  run = test::run_mrcnn("predict --weights " + weights + " x.png --json " + json + " --device tpu");
  CHECK(run.output == "mrcnn: error: unknown device 'tpu': expected cpu, cuda or cuda:N\n");
  // `curves` on a folder that is not a run, or a run log with a broken line.
  run = test::run_mrcnn("curves " + (dir / "no_run").string());
  CHECK(run.status == 1);
  CHECK(run.output == "mrcnn: error: " + (dir / "no_run" / "epochs.jsonl").string() + ": cannot open (not a run folder of mrcnn train?)\n");
  fs::create_directories(dir / "run");
  std::ofstream(dir / "run" / "epochs.jsonl") << "{\"epoch\": 1, \"mean_loss\": 2.0}\n{\"epoch\": 2, \"mean_lo\n";
  run = test::run_mrcnn("curves " + (dir / "run").string());
  CHECK(run.status == 1);
  CHECK(run.output == "mrcnn: error: " + (dir / "run" / "epochs.jsonl").string() + ": line 2 is not JSON\n");
  CHECK(!fs::exists(dir / "run" / "curves.png"));
  // Usage errors: the same one-line form, exit status 2.
  run = test::run_mrcnn("pridict --weights " + weights);
  CHECK(run.status == 2);
  CHECK(run.output ==
        "mrcnn: error: unknown command \"pridict\" (commands: version, inspect, predict, features, bench, split, train, eval, "
        "compare, synth, curves, selftest)\n");
  // Global options (and their values) before a misspelt command do not hide it.
  for (const char* globals : {"--tf32 ", "--cudnn-workspace-limit 64 ", "--cudnn-workspace-limit=64 --deterministic "}) {
    run = test::run_mrcnn(std::string(globals) + "pridict");
    CHECK(run.status == 2);
    CHECK(run.output.rfind("mrcnn: error: unknown command \"pridict\" (commands: version, ", 0) == 0);
  }
  run = test::run_mrcnn("--tf32");
  CHECK(run.status == 2);
  CHECK(run.output.rfind("mrcnn: error: no command given (commands: version, ", 0) == 0);
  run = test::run_mrcnn("--cudnn-workspace-limit 64 version");
  CHECK(run.status == 0);
  CHECK(run.output.rfind("mrcnn 0.1\n", 0) == 0);
  run = test::run_mrcnn("eval --weights " + weights + " --data x.json --images . --lesion-iou 0");
  CHECK(run.status == 2);
  CHECK(run.output == "mrcnn: error: --lesion-iou: must be in (0, 1], got 0 (--help lists the options)\n");
  run = test::run_mrcnn("predict --weights " + weights + " x.png --json " + json + " --score-thresh -0.5");
  CHECK(run.status == 2);
  CHECK(run.output == "mrcnn: error: --score-thresh: must be in [0, 1], got -0.5 (--help lists the options)\n");
  run = test::run_mrcnn("predict x.png --json " + json);
  CHECK(run.status == 2);
  CHECK(run.output == "mrcnn: error: --weights is required (--help lists the options)\n");
  // Outputs that could not be written fail before the work, not after it.
  const std::string nowhere = (dir / "no_such_folder" / "out.json").string();
  run = test::run_mrcnn("predict --weights " + weights + " " + (dir / "broken.jpg").string() + " --json " + nowhere);
  CHECK(run.output == "mrcnn: error: " + nowhere + ": cannot write (no folder " + (dir / "no_such_folder").string() + ")\n");
  run = test::run_mrcnn("predict --weights " + weights + " x.png --json " + dir.string());
  CHECK(run.output == "mrcnn: error: " + dir.string() + ": cannot write (it is a folder)\n");
  // A full disk (/dev/full as the file being written) is an error, not a silently empty file.
  fs::create_symlink("/dev/full", dir / "full.json.tmp");
  std::ofstream(dir / "config.json") << config_to_json(test::tiny_detector_config()).dump();
  run = test::run_mrcnn("bench --config " + (dir / "config.json").string() + " --steps 1 --warmup 1 --json " + (dir / "full.json").string());
  CHECK(run.output.find("mrcnn: error: " + (dir / "full.json").string() + ": cannot write\n") != std::string::npos);
  CHECK(!fs::exists(dir / "full.json"));
  for (const char* option : {" --json ", " --allocation-trace "}) {
    run = test::run_mrcnn("bench --config " + (dir / "config.json").string() + option + nowhere);
    CHECK(run.status == 1);
    CHECK(run.output.find("mrcnn: error: " + nowhere + ": cannot write (no folder ") != std::string::npos);
    CHECK(run.output.find("train step") == std::string::npos);  // nothing was timed
  }
  // A file where an output folder should go: refused before any work, naming both.
  const std::string in_the_way = (dir / "config.json").string();
  const std::pair<std::string, std::string> folder_cases[] = {
      {"predict --weights " + weights + " x.png --json " + json + " --masks " + in_the_way + "/masks", in_the_way + "/masks"},
      {"eval --weights " + weights + " --data x.json --images . --report " + in_the_way, in_the_way},
      {"synth --out " + in_the_way, in_the_way},
      {"train --config " + in_the_way + " --train x.json --images . --out " + in_the_way, in_the_way}};
  run = test::run_mrcnn("synth --out " + (dir / "synth").string() + " --height 100000 --width 100000");
  CHECK(run.output == "mrcnn: error: synth: --height and --width must be in 64..4096, got 100000x100000\n");
  CHECK(!fs::exists(dir / "synth"));
  for (const auto& [command, folder] : folder_cases) {
    run = test::run_mrcnn(command);
    CHECK(run.status == 1);
    CHECK(run.output == "mrcnn: error: " + folder + ": cannot create the folder (" + in_the_way + " is a file)\n");
  }
  // A bench image bigger than any input image may be is refused before memory runs out.
  for (const char* size : {"99999x99999", "10001x10000", "99999999999x99999999999"}) {
    run = test::run_mrcnn("bench --config " + (dir / "config.json").string() + " --size " + size);
    CHECK(run.status == 1);
    CHECK(run.output == "mrcnn: error: --size " + std::string(size) + ": more than the 100 megapixels an image may have\n");
  }
  // A config whose model cannot exist (petabytes of class weights) names the file, not only the bytes.
  nlohmann::json absurd = config_to_json(test::tiny_detector_config());
  absurd["num_classes"] = 1'000'000'000'000;
  std::ofstream(dir / "absurd.json") << absurd.dump();
  run = test::run_mrcnn("bench --config " + (dir / "absurd.json").string() + " --steps 1");
  CHECK(run.status == 1);
  CHECK(run.output.rfind("mrcnn: error: " + (dir / "absurd.json").string() +
                             ": cannot build the model it describes: out of host memory allocating ", 0) == 0);
  CHECK(std::count(run.output.begin(), run.output.end(), '\n') == 1);
  fs::remove_all(dir);
}

TEST_CASE("mrcnn --cudnn-workspace-limit: megabytes, 0 .. 1048576") {
  const test::Run bad = test::run_mrcnn("--cudnn-workspace-limit -3 version");
  CHECK(bad.status != 0);
  CHECK(bad.output.find("--cudnn-workspace-limit: Value -3 not in range 0 to 1048576") != std::string::npos);
  const test::Run good = test::run_mrcnn("--cudnn-workspace-limit 64 version");
  CHECK(good.status == 0);
  CHECK(good.output.rfind("mrcnn ", 0) == 0);
}

TEST_CASE("mrcnn selftest: every op family's gradcheck passes, with a table") {
  const test::Run run = test::run_mrcnn("selftest");
  INFO(run.output);
  CHECK(run.status == 0);
  for (const char* op : {"conv2d 3x3 pad 1 + bias", "conv_transpose2d 2x2 stride 2", "roi_align 3x3 sampling 2",
                         "group_norm 2 groups", "cross_entropy", "max_pool2d 3x3 stride 2 pad 1"})
    CHECK(run.output.find(op) != std::string::npos);
  CHECK(run.output.find("FAIL") == std::string::npos);
  // The float32 kernels this CPU selects, each row naming the kernels that ran.
  CHECK(run.output.find("float32 kernels of this CPU (AVX2/FMA ") != std::string::npos);
  CHECK(run.output.find("conv 3x3, 256 channels, 64 x 64 maps") != std::string::npos);
  CHECK(run.output.find("(forward: ") != std::string::npos);
  CHECK(run.output.find("weight grad: ") != std::string::npos);
  // 23 gradcheck cases and 13 float32 cases; with a device each gradcheck case also runs on the
  // GPU, without one the table says why not.
  if (cuda::is_available()) {
    CHECK(run.output.find("59 passed, 0 failed") != std::string::npos);
  } else {
    CHECK(run.output.find("36 passed, 0 failed") != std::string::npos);
    CHECK(run.output.find("CUDA vs CPU: skipped (") != std::string::npos);
  }
}

TEST_CASE("mrcnn bench --allocation-trace: every release matches a live allocation, peaks agree with bench's") {
  const fs::path dir = test::scratch_dir("mrcnn_cli_trace");
  const std::string config = (dir / "config.json").string(), trace_path = (dir / "trace.txt").string();
  std::ofstream(config) << config_to_json(test::tiny_detector_config()).dump();
  const test::Run run = test::run_mrcnn("bench --config " + config + " --size 64x96 --batch 2 --steps 2 --warmup 1 --allocation-trace " + trace_path);
  INFO(run.output);
  REQUIRE(run.status == 0);
  std::ifstream in(trace_path);
  std::string line, kind;
  std::vector<std::string> phases;
  std::map<uintptr_t, size_t> live;
  int64_t made = 0, made_twice = 0, unmatched = 0, blank_lines = 0;
  while (std::getline(in, line)) {
    blank_lines += line.empty();
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    fields >> kind;
    if (kind == "phase") {
      phases.emplace_back();
      fields >> phases.back();
      continue;
    }
    uintptr_t id = 0;
    size_t bytes = 0;
    REQUIRE(static_cast<bool>(fields >> id >> bytes));
    if (kind == "+") {
      made_twice += !live.emplace(id, bytes).second;
      ++made;
    } else {
      REQUIRE(kind == "-");
      auto it = live.find(id);
      if (it == live.end() || it->second != bytes) ++unmatched;
      else live.erase(it);
    }
  }
  CHECK(phases == std::vector<std::string>{"construction", "train", "inference"});
  CHECK(blank_lines == 0);  // the file ends in one newline, not two
  CHECK(made > 1000);
  CHECK(made_twice == 0);
  CHECK(unmatched == 0);  // the trace starts before the first tensor of the run
  // The replay's peaks as requested are the host's own counts, which bench prints (in whole MB).
  std::ifstream again(trace_path);
  const std::vector<bench::ReplayedPhase> replayed = bench::replay_allocation_trace(again, trace_path);
  REQUIRE(replayed.size() == 3);
  const auto mb = [](size_t bytes) { return static_cast<long long>(std::lround(static_cast<double>(bytes) / (1 << 20))); };
  CHECK(run.output.find(str_cat("peak memory held by tensors: train ", mb(replayed[1].best_fit.peak_requested), " MB, inference ",
                                mb(replayed[2].best_fit.peak_requested), " MB")) != std::string::npos);
  for (const bench::ReplayedPhase& p : replayed) {
    CHECK(p.size_classes.peak_requested == p.best_fit.peak_requested);
    CHECK(p.best_fit.peak_in_use >= p.best_fit.peak_requested);
    CHECK(p.best_fit.peak_in_use <= p.size_classes.peak_in_use);
  }
  const test::Run on_gpu = test::run_mrcnn("bench --config " + config + " --device cuda --allocation-trace " + trace_path);
  CHECK(on_gpu.status != 0);
  CHECK(on_gpu.output.find(cuda::is_available() ? "bench: --allocation-trace records CPU tensors; leave out --device" : "--device cuda: ") !=
        std::string::npos);
}

TEST_CASE("mrcnn bench: the arithmetic per step, its rate and its share of the measured FMA peak agree with the JSON") {
  const fs::path dir = test::scratch_dir("mrcnn_cli_flops");
  const std::string config = (dir / "config.json").string(), json_path = (dir / "bench.json").string();
  std::ofstream(config) << config_to_json(test::tiny_detector_config()).dump();
  const test::Run run = test::run_mrcnn("bench --config " + config + " --size 64x96 --batch 2 --steps 2 --warmup 1 --json " + json_path);
  INFO(run.output);
  REQUIRE(run.status == 0);
  const nlohmann::json figures = nlohmann::json::parse(std::ifstream(json_path));
  const double train_gflop = figures.at("train_gflop"), infer_gflop = figures.at("infer_gflop");
  const double train_ms = figures.at("train_ms"), peak = figures.at("fma_peak_gflops");
  CHECK(train_gflop > 0);
  CHECK(infer_gflop > 0);
  const size_t at = run.output.find("arithmetic of convolutions and matrix products: train step ");
  REQUIRE(at != std::string::npos);
  double printed_gflop = 0, printed_rate = 0, printed_share = 0;
  REQUIRE(std::sscanf(run.output.c_str() + at, "arithmetic of convolutions and matrix products: train step %lf GFLOP (%lf GFLOP/s = %lf%% of peak)",
                      &printed_gflop, &printed_rate, &printed_share) == (peak > 0 ? 3 : 2));
  CHECK(std::abs(printed_gflop - train_gflop) <= 0.05 + 1e-9);
  CHECK(std::abs(printed_rate - train_gflop / train_ms * 1e3) <= 0.05 + 1e-9);
  if (peak > 0) {
    CHECK(std::abs(printed_share - 100 * (train_gflop / train_ms * 1e3) / peak) <= 0.05 + 1e-9);
    CHECK(run.output.find("CPU FMA peak, measured: ") != std::string::npos);
  }
  fs::remove_all(dir);
}

TEST_CASE("mrcnn curves: a validation's Dice interval is a bar at its epoch, from its low to its high") {
  const fs::path dir = test::scratch_dir("curves_intervals");
  // Two runs' logs alike but for one Dice interval (epoch 1: 0.2-0.8); the other series lie outside 0.2-0.8.
  for (const char* run : {"plain", "bars"}) {
    fs::create_directories(dir / run);
    std::ofstream(dir / run / "epochs.jsonl") << R"({"epoch": 1, "mean_loss": 2.0})" "\n" R"({"epoch": 2, "mean_loss": 1.0})" "\n";
    std::ofstream metrics(dir / run / "metrics.jsonl");
    for (int epoch : {1, 2}) {
      nlohmann::json line = {{"epoch", epoch}, {"segm", {{"AP", 0.1}, {"AP50", 0.95}}}, {"bbox", {{"AP", 0.05}}}, {"dice", 0.5}};
      if (std::string(run) == "bars" && epoch == 1) line["intervals"] = {{"dice", {0.2, 0.8}}};
      metrics << line.dump() << "\n";
    }
  }
  for (const char* run : {"plain", "bars"}) REQUIRE(test::run_mrcnn("curves " + (dir / run).string()).status == 0);
  const Tensor plain = load_image((dir / "plain" / "curves.png").string(), 3), bars = load_image((dir / "bars" / "curves.png").string(), 3);
  REQUIRE(plain.sizes() == Shape{3, 360, 960});
  REQUIRE(bars.sizes() == plain.sizes());
  // The validation chart starts at x 480; its plot area spans x 536..944 and y 320 (0) .. 56 (1):
  // epoch 1 lies at x 536, 0.8 at y 108.8 and 0.2 at y 267.2.
  int64_t differing = 0, x_lo = 960, x_hi = -1, y_lo = 360, y_hi = -1;
  for (int64_t y = 0; y < 360; ++y)
    for (int64_t x = 0; x < 960; ++x)
      for (int64_t c = 0; c < 3; ++c)
        if (plain.data<float>()[(c * 360 + y) * 960 + x] != bars.data<float>()[(c * 360 + y) * 960 + x]) {
          ++differing, x_lo = std::min(x_lo, x), x_hi = std::max(x_hi, x), y_lo = std::min(y_lo, y), y_hi = std::max(y_hi, y);
          break;
        }
  CHECK(differing > 150);
  CHECK(x_lo >= 533);
  CHECK(x_hi <= 539);
  CHECK(y_lo == 109);
  CHECK(y_hi == 267);
}
