// The `mrcnn` subcommands; main.cpp parses the command line into these option structs.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace mrcnn::apps {

struct PredictOptions {
  std::string weights, config, json_out, out_dir, masks_dir, device = "cpu";
  std::vector<std::string> images;
  double score_thresh = 0.0;
  double pixel_mm = 0;            // in-plane pixel spacing; > 0: areas also in mm^2
  std::string summary, group_regex = "^([^_]+)_";  // per-patient CSV; patient = first capture group
  std::string report_dir;                          // per-patient HTML report with an overlay per slice
  double slice_mm = 0;                             // spacing between a patient's slices; > 0: volumes
  std::optional<bool> flip_test;  // --flip-test / --no-flip-test; unset: the config's flip_test
  bool cams = false;              // with --out / --report: why each slice's best detection scored (HiResCAM)
};
int predict(const PredictOptions& options);

struct FeaturesOptions {
  std::string weights, config, image, out_dir, device = "cpu";
  std::string layers;  // a regex of layer names whose outputs are added (empty: the default stages only)
  int64_t cams = 4;  // class activation maps (HiResCAM) of this many detections, highest score first
};
// One image's stages, input to detections (and any layers asked for), as safetensors and PNG grids.
int features(const FeaturesOptions& options);

struct BenchOptions {
  std::string config, weights, size = "256x256", device = "cpu", json_out, allocation_trace;
  int64_t batch = 2, steps = 10, warmup = 2;
  bool profile = false;
};
int bench(const BenchOptions& options);

struct SplitOptions {
  std::string data, group_regex = "^([^_]+)_", train_out, val_out;
  double val_fraction = 0.15;
  uint64_t seed = 0;
};
int split(const SplitOptions& options);

struct TrainOptions {
  std::string config, train, val, images, out, weights, device = "cpu", group_regex = "^([^_]+)_";
  double val_fraction = 0;
  bool resume = false;
  int64_t epochs = 0;             // overrides the recipe's train.epochs when > 0
  int64_t stop_after_epochs = 0;  // save and exit after this many epochs (continue with --resume)
};
int train(const TrainOptions& options);

struct EvalOptions {
  std::string weights, config, data, images, report_dir, json_out, detections_out, device = "cpu",
      group_regex = "^([^_]+)_";
  std::string results;  // instead of weights: a COCO results file (with masks) to score
  double score_thresh = 0.5, lesion_iou = 0.5;
  double pixel_mm = 0;            // in-plane pixel spacing; > 0: distances also in millimetres
  std::optional<bool> flip_test;  // as in PredictOptions
  bool cams = false;              // with --report and --weights: why each image's best detection scored
};
int eval(const EvalOptions& options);

struct CompareOptions {
  std::string a, b, json_out;  // two `mrcnn eval --json` files of the same images
  double level = 0.95;
  int64_t resamples = 2000;
  uint64_t seed = 0;
};
int compare(const CompareOptions& options);

struct SynthOptions {
  std::string out;
  int64_t patients = 12, slices = 8, val_patients = 3, height = 128, width = 128;
  double negative_fraction = 0.15;  // slices without a tumour
  uint64_t seed = 0;
};
int synth(const SynthOptions& options);

// Gradchecks of every op family (and CPU/CUDA parity with a device); pass/fail table; 1 on failure.
int selftest();

// Writes to PATH.tmp, then renames: a crash never leaves half a file. Errors name the path.
void write_file_atomically(const std::string& path, const std::string& text);
// Fails at once, naming the path, when an output file could not be written there (its folder is
// missing or read-only): checked before a long run, not after it.
void check_output_file(const std::string& path);
// Fails at once, naming the path, when an output folder could not be made (a file in the way, a
// read-only parent) or written into; makes nothing, so a run refused later leaves no empty folder.
void check_output_folder(const std::string& path);

// v printed with a printf format ("%.3f", "%+.2f"), or "n/a" when it is not finite (an undefined mean).
std::string fmt(double v, const char* format = "%.3f");
// An area in pixels as mm^2 at `pixel_mm` millimetres per pixel.
double mm2(int64_t pixels, double pixel_mm);
// "1 patient", "8 patients": n and the noun, plural unless n is 1.
std::string counted(int64_t n, const std::string& noun);
// Text for HTML: < > & " escaped.
std::string html_escape(const std::string& s);
// A report page's opening (doctype, title, the reports' shared style) up to <body>.
std::string report_head(const std::string& title);
// --device: "cpu", "cuda" or "cuda:N"; a CUDA device that is not there is an error saying why.
Device model_device(const std::string& device);

}  // namespace mrcnn::apps
