// Segment one image with a trained checkpoint, using mrcnn as a library:
//   segment_one WEIGHTS.safetensors IMAGE [MASK.png]
// Prints each detection (score, box in pixels, mask area) and optionally writes the union of the
// masks scoring >= 0.5 as a black-and-white PNG.
#include <cstdio>
#include <exception>
#include <vector>

#include "maskrcnn/image_io.h"
#include "maskrcnn/model_io.h"
#include "ops/ops.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s WEIGHTS.safetensors IMAGE [MASK.png]\n", argv[0]);
    return 2;
  }
  try {
    using namespace mrcnn;
    auto model = detection::load_model(argv[1]);  // the config comes from the checkpoint; eval mode
    const Tensor image = detection::load_image(argv[2], model->config().in_channels);
    autograd::NoGradGuard no_grad;
    const detection::Detections d = model->forward({image}).detections[0];
    const int64_t h = image.size(1), w = image.size(2);
    const auto scores = to_vector<float>(d.scores);
    const auto boxes = to_vector<float>(d.boxes);
    const auto masks = to_vector<float>(ops::contiguous(d.masks));  // [D, 1, H, W] probabilities
    std::vector<uint8_t> mask_union(static_cast<size_t>(h * w * 3), 0);
    for (size_t k = 0; k < scores.size(); ++k) {
      int64_t area = 0;
      for (int64_t i = 0; i < h * w; ++i) {
        const bool inside = masks[k * h * w + i] >= 0.5f;
        area += inside;
        if (inside && scores[k] >= 0.5f) mask_union[i * 3] = mask_union[i * 3 + 1] = mask_union[i * 3 + 2] = 255;
      }
      std::printf("detection %zu: score %.3f box [%.1f, %.1f, %.1f, %.1f] mask %lld px\n", k, scores[k], boxes[k * 4],
                  boxes[k * 4 + 1], boxes[k * 4 + 2], boxes[k * 4 + 3], static_cast<long long>(area));
    }
    std::printf("%zu detections in %lldx%lld image\n", scores.size(), static_cast<long long>(w), static_cast<long long>(h));
    if (argc > 3) detection::write_png(argv[3], mask_union, h, w);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "segment_one: %s\n", e.what());
    return 1;
  }
  return 0;
}
