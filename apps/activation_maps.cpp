// Class activation maps for readers (see activation_maps.h).
#include "apps/activation_maps.h"

#include <algorithm>

#include "apps/commands.h"
#include "autograd/node.h"
#include "maskrcnn/hires_cam.h"
#include "maskrcnn/transform.h"
#include "ops/ops.h"
#include "tensor/error.h"

namespace mrcnn::apps {

using namespace detection;

const char* const kCamColumn = "why the best detection scored";
const char* const kCamGlossary =
    "<dt>Why the best detection scored</dt><dd>Heat over the slice where the image features that raised the model's "
    "score for its best detection lie (HiResCAM: at each place, how much its features, weighed by how the score "
    "responds to them, added to the score; brightest = most). It shows what the model used, which may be the "
    "lesion's edge or its surroundings; it is not a finding of its own.</dd>";

std::vector<uint8_t> heat_over_grey(const Tensor& heat, const Tensor& grey) {
  const Tensor map = ops::contiguous(ops::to(heat, kCPU)), base = ops::contiguous(ops::to(grey, kCPU));
  check(map.dim() == 2 && base.dim() == 2 && map.size(0) <= base.size(0) && map.size(1) <= base.size(1),
        "heat_over_grey: a map of ", shape_str(map.sizes()), " over an image of ", shape_str(base.sizes()));
  const int64_t h = map.size(0), w = map.size(1), stride = base.size(1);
  const float* g = base.data<float>();
  const float* v = map.data<float>();
  float lo = g[0], hi = g[0];
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) lo = std::min(lo, g[y * stride + x]), hi = std::max(hi, g[y * stride + x]);
  std::vector<uint8_t> rgb(static_cast<size_t>(h * w * 3));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const float level = hi > lo ? (g[y * stride + x] - lo) / (hi - lo) : 0.5f, heat_at = std::clamp(v[y * w + x], 0.0f, 1.0f);
      const float color[3] = {std::min(1.0f, 3 * heat_at), std::clamp(3 * heat_at - 1, 0.0f, 1.0f), std::clamp(3 * heat_at - 2, 0.0f, 1.0f)};
      const float alpha = 0.6f * heat_at;
      for (int c = 0; c < 3; ++c)
        rgb[static_cast<size_t>((y * w + x) * 3 + c)] = static_cast<uint8_t>(((1 - alpha) * level + alpha * color[c]) * 255.0f + 0.5f);
    }
  return rgb;
}

Tensor detection_cam(MaskRCNN& model, const Tensor& image, const Tensor& box, int64_t label) {
  // Only the eval transform of the image: the map explains one view, whatever the flip test.
  ImageList images;
  {
    autograd::NoGradGuard no_grad;
    images = model.transform().forward({image}, nullptr, nullptr, model.device());
  }
  const ImageSize original{image.size(1), image.size(2)};
  const Tensor resized_box = resize_boxes(ops::reshape(ops::to(box, kCPU), {1, 4}), original, images.image_sizes[0]);
  const HiResCam cam = hires_cam(model, images, ops::select(resized_box, 0, 0), label);
  autograd::NoGradGuard no_grad;
  const Tensor at_image = ops::interpolate(ops::unsqueeze(ops::unsqueeze(cam.map, 0), 0), {original.first, original.second},
                                           ops::InterpolateMode::Bilinear);
  return ops::contiguous(ops::select(ops::select(at_image, 0, 0), 0, 0));
}

std::optional<std::vector<uint8_t>> best_detection_cam(MaskRCNN& model, const Tensor& image,
                                                       const std::vector<EvalDetection>& detections, double score_thresh,
                                                       const std::vector<int64_t>& category_ids) {
  const EvalDetection* best = nullptr;
  for (const EvalDetection& d : detections)
    if (d.score >= score_thresh && (!best || d.score > best->score)) best = &d;
  if (!best) return std::nullopt;
  const auto& b = best->bbox;  // COCO x, y, width, height
  const Tensor box = from_vector<float>(
      {static_cast<float>(b[0]), static_cast<float>(b[1]), static_cast<float>(b[0] + b[2]), static_cast<float>(b[1] + b[3])}, {4});
  const int64_t label = std::find(category_ids.begin(), category_ids.end(), best->category_id) - category_ids.begin() + 1;
  return heat_over_grey(detection_cam(model, image, box, label), ops::mean(image, {0}));
}

}  // namespace mrcnn::apps
