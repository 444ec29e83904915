// `mrcnn features`: one image through the model, and what each stage of the backbone made of it:
// the normalised input, ResNet's four stages (C2..C5, torchvision's IntermediateLayerGetter
// outputs) and the five FPN levels, as one safetensors file named after the modules that produce
// them (load it in numpy or torch beside a hooked torchvision model), plus a PNG per tensor showing
// its first 16 channels, each stretched to its own range.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "apps/commands.h"
#include "autograd/node.h"
#include "maskrcnn/image_io.h"
#include "maskrcnn/mask_rcnn.h"
#include "maskrcnn/model_io.h"
#include "ops/ops.h"
#include "tensor/safetensors.h"

namespace mrcnn::apps {

using namespace detection;

namespace {

// The first `count` channels of x [1, C, H, W] tiled 4 across, each channel mapped from its own
// minimum..maximum to 0..255 (a constant channel is mid-grey), with a 2-pixel white gutter.
std::vector<uint8_t> channel_grid(const Tensor& x, int64_t count, int64_t& height, int64_t& width) {
  const Tensor t = ops::contiguous(x);
  const int64_t c = std::min(t.size(1), count), h = t.size(2), w = t.size(3), across = std::min<int64_t>(4, c);
  const int64_t down = (c + across - 1) / across, gutter = 2;
  height = down * h + (down - 1) * gutter, width = across * w + (across - 1) * gutter;
  std::vector<uint8_t> rgb(static_cast<size_t>(height * width * 3), 255);
  const float* data = t.data<float>();
  for (int64_t k = 0; k < c; ++k) {
    const float* plane = data + k * h * w;
    const auto [lo, hi] = std::minmax_element(plane, plane + h * w);
    const float range = *hi - *lo;
    const int64_t y0 = k / across * (h + gutter), x0 = k % across * (w + gutter);
    for (int64_t y = 0; y < h; ++y)
      for (int64_t xx = 0; xx < w; ++xx) {
        const float v = range > 0 ? (plane[y * w + xx] - *lo) / range : 0.5f;
        const auto byte = static_cast<uint8_t>(std::clamp(v, 0.0f, 1.0f) * 255.0f + 0.5f);
        for (int ch = 0; ch < 3; ++ch) rgb[static_cast<size_t>(((y0 + y) * width + x0 + xx) * 3 + ch)] = byte;
      }
  }
  return rgb;
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
  autograd::NoGradGuard no_grad;
  const MaskRCNNOutput out = model->forward({image});
  // The stages by the names of the modules that produce them; C2..C5 again from the body, since
  // the FPN keeps only its own outputs.
  std::map<std::string, Tensor> stages = {{"input", out.images.tensors}};
  const std::vector<Tensor> body = model->backbone->body->forward(out.images.tensors);
  for (size_t k = 0; k < body.size(); ++k) stages["backbone.body.layer" + std::to_string(k + 1)] = body[k];
  static const char* const kLevels[] = {"0", "1", "2", "3", "pool"};
  for (size_t k = 0; k < out.features.size() && k < 5; ++k) stages[std::string("backbone.fpn.") + kLevels[k]] = out.features[k];
  std::filesystem::create_directories(o.out_dir);
  safetensors::File file;
  file.metadata["image"] = o.image;
  file.metadata["weights"] = o.weights;
  for (const auto& [name, t] : stages) {
    const Tensor host = ops::contiguous(ops::to(t, kCPU));
    file.tensors[name] = host;
    int64_t h = 0, w = 0;
    const auto grid = channel_grid(host, 16, h, w);
    write_png((std::filesystem::path(o.out_dir) / (name + ".png")).string(), grid, h, w);
    std::string dims;
    for (const int64_t d : host.sizes()) dims += (dims.empty() ? "[" : ", ") + std::to_string(d);
    std::printf("%-24s %-20s min %9.4f  max %9.4f  mean %9.4f\n", name.c_str(), (dims + "]").c_str(),
                ops::min(host).item<float>(), ops::max(host).item<float>(), ops::mean(host).item<float>());
  }
  const std::string path = (std::filesystem::path(o.out_dir) / "features.safetensors").string();
  safetensors::save(path, file);
  std::fprintf(stderr, "wrote %zu tensors to %s, and a PNG of each one's first 16 channels beside it\n", stages.size(),
               path.c_str());
  return 0;
}

}  // namespace mrcnn::apps
