// `mrcnn features`: one image through the model, and what each stage made of it: the normalised
// input, ResNet's four stages (C2..C5, torchvision's IntermediateLayerGetter outputs), the five FPN
// levels, the RPN head's objectness and box deltas per level, the proposals, the box head's class
// logits and box regression, the mask head's logits and the detections, as one safetensors file
// named after the modules that produce them (load it in numpy or torch beside a hooked torchvision
// model), plus a PNG of the image-like ones: feature maps' first 16 channels, each stretched to its
// own range, and objectness and each detection's own-class mask as probabilities.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>

#include "apps/activation_maps.h"
#include "apps/commands.h"
#include "autograd/node.h"
#include "maskrcnn/hires_cam.h"
#include "maskrcnn/image_io.h"
#include "maskrcnn/mask_rcnn.h"
#include "maskrcnn/model_io.h"
#include "ops/ops.h"
#include "tensor/safetensors.h"

namespace mrcnn::apps {

using namespace detection;

namespace {

// One tensor of the file, with how to draw it.
struct Stage {
  std::string name;  // the producing module, as in a torchvision state_dict (".<level>" per FPN level)
  Tensor value;
  // How its PNG shows it: not at all, each channel stretched to its own range, or logits as
  // probabilities (sigmoid, 0..1 to black..white in every channel alike, so tiles compare).
  // Class activation maps are drawn as heat over the input image.
  enum class Png { None, Stretched, SigmoidOfLogits, HeatOverInput } png;
};

// The first `count` channels of x [1, C, H, W] tiled 4 across, with a 2-pixel white gutter: each
// channel stretched from its own minimum..maximum to 0..255 (a constant channel is mid-grey), or
// values in 0..1 drawn as 0..255 in every channel alike. Small maps are enlarged (nearest
// neighbour, a whole factor) until their short side reaches 64 pixels: a 4 x 4 level stays legible.
std::vector<uint8_t> channel_grid(const Tensor& x, int64_t count, bool stretch, int64_t& height, int64_t& width) {
  const Tensor t = ops::contiguous(x);
  const int64_t c = std::min(t.size(1), count), h = t.size(2), w = t.size(3), across = std::min<int64_t>(4, c);
  const int64_t zoom = std::max<int64_t>(1, (64 + std::min(h, w) - 1) / std::min(h, w));
  const int64_t down = (c + across - 1) / across, gutter = 2, tile_h = h * zoom, tile_w = w * zoom;
  height = down * tile_h + (down - 1) * gutter, width = across * tile_w + (across - 1) * gutter;
  std::vector<uint8_t> rgb(static_cast<size_t>(height * width * 3), 255);
  const float* data = t.data<float>();
  for (int64_t k = 0; k < c; ++k) {
    const float* plane = data + k * h * w;
    const auto [lo, hi] = std::minmax_element(plane, plane + h * w);
    const float low = stretch ? *lo : 0.0f, range = stretch ? *hi - *lo : 1.0f;
    const int64_t y0 = k / across * (tile_h + gutter), x0 = k % across * (tile_w + gutter);
    for (int64_t y = 0; y < tile_h; ++y)
      for (int64_t xx = 0; xx < tile_w; ++xx) {
        const float v = range > 0 ? (plane[y / zoom * w + xx / zoom] - low) / range : 0.5f;
        const auto byte = static_cast<uint8_t>(std::clamp(v, 0.0f, 1.0f) * 255.0f + 0.5f);
        for (int ch = 0; ch < 3; ++ch) rgb[static_cast<size_t>(((y0 + y) * width + x0 + xx) * 3 + ch)] = byte;
      }
  }
  return rgb;
}

// Each detection's mask logits for its own class [1, D, 28, 28]: what the mask head predicted
// before the mask is pasted into the image.
Tensor own_class_mask_logits(const Tensor& mask_logits, const Tensor& labels) {
  const auto classes = to_vector<int64_t>(labels);
  std::vector<Tensor> planes;
  for (size_t d = 0; d < classes.size(); ++d)
    planes.push_back(ops::select(ops::select(mask_logits, 0, static_cast<int64_t>(d)), 0, classes[d]));
  return ops::unsqueeze(ops::stack(planes, 0), 0);
}

// Model order: the input, the backbone, the RPN, the box head, the mask head, the detections.
std::vector<Stage> model_stages(MaskRCNN& model, const MaskRCNNOutput& out) {
  using Png = Stage::Png;
  std::vector<Stage> stages = {{"input", out.images.tensors, Png::Stretched}};
  // C2..C5 again from the body, since the FPN keeps only its own outputs.
  const std::vector<Tensor> body = model.backbone->body->forward(out.images.tensors);
  for (size_t k = 0; k < body.size(); ++k) stages.push_back({"backbone.body.layer" + std::to_string(k + 1), body[k], Png::Stretched});
  static const char* const kLevels[] = {"0", "1", "2", "3", "pool"};
  for (size_t k = 0; k < out.features.size() && k < 5; ++k)
    stages.push_back({std::string("backbone.fpn.") + kLevels[k], out.features[k], Png::Stretched});
  // The RPN head runs once per level; its PNG shows each anchor shape's objectness probability.
  for (size_t k = 0; k < out.rpn.objectness.size(); ++k) {
    const std::string level = "." + std::to_string(k);
    stages.push_back({"rpn.head.cls_logits" + level, out.rpn.objectness[k], Png::SigmoidOfLogits});
    stages.push_back({"rpn.head.bbox_pred" + level, out.rpn.pred_bbox_deltas[k], Png::None});
  }
  stages.push_back({"rpn.proposals", out.rpn.boxes[0], Png::None});
  stages.push_back({"rpn.proposal_scores", out.rpn.scores[0], Png::None});
  stages.push_back({"roi_heads.box_predictor.cls_score", out.roi.class_logits, Png::None});
  stages.push_back({"roi_heads.box_predictor.bbox_pred", out.roi.box_regression, Png::None});
  stages.push_back({"roi_heads.mask_predictor", out.roi.mask_logits, Png::None});
  const Detections& found = out.detections[0];
  if (found.boxes.size(0) > 0)
    stages.push_back({"roi_heads.mask_predictor.own_class", own_class_mask_logits(ops::to(out.roi.mask_logits, kCPU), found.labels),
                      Png::SigmoidOfLogits});
  stages.push_back({"detections.boxes", found.boxes, Png::None});
  stages.push_back({"detections.scores", found.scores, Png::None});
  stages.push_back({"detections.labels", found.labels, Png::None});
  return stages;
}

// The outputs of the layers whose dotted names match `pattern` (whole names, ECMAScript regex), from
// a second forward of the image: a chosen norm runs apart from its fused relu there, so the default
// stages keep the bits of the model's own forward. A layer called n > 1 times gives name#0..#n-1.
std::vector<Stage> chosen_layers(MaskRCNN& model, const Tensor& image, const std::string& pattern) {
  std::regex re;
  try {
    re = std::regex(pattern);
  } catch (const std::regex_error& e) {
    throw Error(str_cat("features: --layers '", pattern, "' is not a regular expression (", e.what(), ")"));
  }
  std::map<const nn::Module*, std::string> chosen;
  std::vector<std::string> layer_names;
  for (const auto& [name, module] : model.named_modules()) {
    if (!dynamic_cast<const nn::Layer*>(module)) continue;
    layer_names.push_back(name);
    if (std::regex_match(name, re)) chosen[module] = name;
  }
  check(!chosen.empty(), "features: --layers '", pattern, "' matches none of the model's ", layer_names.size(),
        " layers (whole dotted names, such as ", layer_names.front(), " or ", layer_names.back(), ")");
  nn::OutputCapture capture(chosen);
  (void)model.forward({image});
  std::map<std::string, int64_t> calls;
  for (const auto& [name, t] : capture.outputs()) ++calls[name];
  std::map<std::string, int64_t> seen;
  std::vector<Stage> stages;
  for (const auto& [name, t] : capture.outputs()) {
    const int64_t k = seen[name]++;
    stages.push_back({calls[name] > 1 ? name + "#" + std::to_string(k) : name, t,
                      t.dim() == 4 ? Stage::Png::Stretched : Stage::Png::None});
  }
  return stages;
}

// HiResCAM of the first `count` detections (highest score first): "cam.<d>" [1, 1, H, W] over the
// resized image, each described in `notes` (metadata and the printed table).
std::vector<Stage> detection_cams(MaskRCNN& model, const MaskRCNNOutput& out, const Tensor& image, int64_t count,
                                  std::map<std::string, std::string>& notes) {
  const Detections& found = out.detections[0];
  const ImageSize original{image.size(1), image.size(2)};
  const Tensor boxes = resize_boxes(ops::to(found.boxes, kCPU), original, out.images.image_sizes[0]);
  const auto labels = to_vector<int64_t>(ops::to(found.labels, kCPU));
  const auto scores = to_vector<float>(ops::to(found.scores, kCPU));
  const int64_t shown = std::min<int64_t>(count, boxes.size(0));
  const std::vector<HiResCam> cams =
      hires_cams(model, out.images, ops::narrow(boxes, 0, 0, shown), {labels.begin(), labels.begin() + shown});
  std::vector<Stage> stages;
  for (int64_t d = 0; d < shown; ++d) {
    const HiResCam& cam = cams[static_cast<size_t>(d)];
    const std::string name = "cam." + std::to_string(d);
    notes[name] = str_cat("detection ", d, " (score ", fmt(scores[static_cast<size_t>(d)]), ", label ",
                          labels[static_cast<size_t>(d)], "): on backbone.body.layer", cam.stage + 1, ", class logit ", fmt(cam.logit));
    stages.push_back({name, ops::unsqueeze(ops::unsqueeze(cam.map, 0), 0), Stage::Png::HeatOverInput});
  }
  return stages;
}

std::string shape_text(const Tensor& t) {
  std::string dims;
  for (const int64_t d : t.sizes()) dims += (dims.empty() ? "[" : ", ") + std::to_string(d);
  return dims.empty() ? "[]" : dims + "]";
}

}  // namespace

int features(const FeaturesOptions& o) {
  check_output_folder(o.out_dir);
  const Device device = model_device(o.device);
  auto model = load_model(o.weights, o.config);
  model->to(device);
  model->eval();
  model->set_flip_test(false);  // one view: the features of the image as given
  const Tensor image = load_image(o.image, model->config().in_channels);
  std::optional<autograd::NoGradGuard> no_grad(std::in_place);  // until the activation maps, which differentiate the box head
  const MaskRCNNOutput out = model->forward({image});
  std::filesystem::create_directories(o.out_dir);
  safetensors::File file;
  file.metadata["image"] = o.image;
  file.metadata["weights"] = o.weights;
  file.metadata["coordinates"] =
      "rpn.proposals: x1, y1, x2, y2 in the pixels of input (the resized image); detections.boxes: in the image file's pixels";
  std::vector<Stage> stages = model_stages(*model, out);
  if (!o.layers.empty()) {
    // A chosen layer that is a default stage already (backbone.body.layer1) is written once.
    std::set<std::string> names;
    for (const Stage& stage : stages) names.insert(stage.name);
    for (Stage& stage : chosen_layers(*model, image, o.layers))
      if (names.insert(stage.name).second) stages.push_back(std::move(stage));
  }
  std::map<std::string, std::string> notes;
  no_grad.reset();
  for (Stage& stage : detection_cams(*model, out, image, o.cams, notes)) stages.push_back(std::move(stage));
  for (const auto& [name, note] : notes) file.metadata[name] = note;
  int64_t pngs = 0;
  for (const Stage& stage : stages) {
    const Tensor host = ops::contiguous(ops::to(stage.value, kCPU));
    file.tensors[stage.name] = host;
    if (stage.png == Stage::Png::HeatOverInput) {
      const Tensor input_grey = ops::select(ops::select(out.images.tensors, 0, 0), 0, 0);
      write_png((std::filesystem::path(o.out_dir) / (stage.name + ".png")).string(),
                heat_over_grey(ops::select(ops::select(host, 0, 0), 0, 0), input_grey), host.size(2), host.size(3));
      ++pngs;
    } else if (stage.png != Stage::Png::None) {
      const bool logits = stage.png == Stage::Png::SigmoidOfLogits;
      const Tensor shown = logits ? ops::sigmoid(host) : host;
      int64_t h = 0, w = 0;
      const auto grid = channel_grid(shown, 16, /*stretch=*/!logits, h, w);
      write_png((std::filesystem::path(o.out_dir) / (stage.name + ".png")).string(), grid, h, w);
      ++pngs;
    }
    if (notes.count(stage.name)) {
      std::printf("%-36s %-20s %s\n", stage.name.c_str(), shape_text(host).c_str(), notes[stage.name].c_str());
    } else if (host.numel() == 0 || host.dtype() != kFloat32) {
      std::printf("%-36s %s\n", stage.name.c_str(), shape_text(host).c_str());
    } else {
      std::printf("%-36s %-20s min %9.4f  max %9.4f  mean %9.4f\n", stage.name.c_str(), shape_text(host).c_str(),
                  ops::min(host).item<float>(), ops::max(host).item<float>(), ops::mean(host).item<float>());
    }
  }
  const std::string path = (std::filesystem::path(o.out_dir) / "features.safetensors").string();
  safetensors::save(path, file);
  std::fprintf(stderr, "wrote %zu tensors to %s, and %lld PNGs beside it\n", file.tensors.size(),
               path.c_str(), static_cast<long long>(pngs));
  return 0;
}

}  // namespace mrcnn::apps
