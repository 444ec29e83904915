// Image batching and the inverse mapping of detections, with torchvision's float32 size arithmetic.
#include "maskrcnn/transform.h"

#include <algorithm>
#include <cmath>

#include "autograd/node.h"
#include "ops/ops.h"

namespace mrcnn::detection {

ImageSize GeneralizedRCNNTransform::resized_size(ImageSize size, int64_t min_size) const {
  const float short_side = static_cast<float>(std::min(size.first, size.second));
  const float long_side = static_cast<float>(std::max(size.first, size.second));
  const float scale = std::min(static_cast<float>(min_size) / short_side,
                               static_cast<float>(config_.max_size) / long_side);
  // interpolate(scale_factor=scale.item(), recompute_scale_factor=True): floor(in * scale) in double.
  // At least one pixel: torchvision fails on a strip whose short side floors to 0 (2 x 3000 at
  // max_size 256); kept at one pixel, it is predicted (finding nothing) like any other image.
  auto scaled = [s = static_cast<double>(scale)](int64_t side) {
    return std::max<int64_t>(1, static_cast<int64_t>(std::floor(static_cast<double>(side) * s)));
  };
  return {scaled(size.first), scaled(size.second)};
}

Tensor resize_boxes(const Tensor& boxes, ImageSize from, ImageSize to) {
  const float ratio_h = static_cast<float>(to.first) / static_cast<float>(from.first);
  const float ratio_w = static_cast<float>(to.second) / static_cast<float>(from.second);
  Tensor out = copy_as(boxes, kFloat32, kCPU);
  float* b = out.data<float>();
  for (int64_t i = 0, count = out.numel(); i < count; i += 2) b[i] *= ratio_w, b[i + 1] *= ratio_h;
  return out;
}

ImageList GeneralizedRCNNTransform::forward(const std::vector<Tensor>& images, std::vector<Target>* targets,
                                            Generator* generator, Device device) const {
  autograd::NoGradGuard no_grad;
  check(!images.empty(), "transform: no images");
  if (targets != nullptr)
    check(targets->size() == images.size(), "transform: ", images.size(), " images but ", targets->size(), " targets");
  const int64_t channels = config_.in_channels;
  const Tensor mean =
      ops::to(from_vector(std::vector<float>(config_.image_mean.begin(), config_.image_mean.end()), {channels, 1, 1}), device);
  const Tensor std =
      ops::to(from_vector(std::vector<float>(config_.image_std.begin(), config_.image_std.end()), {channels, 1, 1}), device);
  std::vector<Tensor> resized;
  ImageList list;
  for (size_t i = 0; i < images.size(); ++i) {
    const Tensor& image = images[i];
    check(image.dim() == 3 && image.size(0) == channels && image.dtype() == kFloat32,
          "transform: image ", i, " must be float32 [", channels, ", H, W], got ", shape_str(image.sizes()), " ",
          dtype_name(image.dtype()));
    int64_t min_size = config_.min_size.back();
    if (generator != nullptr) {
      const double u = to_vector<double>(rand({1}, kFloat64, kCPU, generator))[0];
      min_size = config_.min_size[std::min<size_t>(static_cast<size_t>(u * static_cast<double>(config_.min_size.size())),
                                                   config_.min_size.size() - 1)];
    }
    const ImageSize original{image.size(1), image.size(2)};
    const ImageSize size = resized_size(original, min_size);
    const Tensor normalized = ops::div(ops::sub(ops::to(image, device), mean), std);
    resized.push_back(ops::select(
        ops::interpolate(ops::unsqueeze(normalized, 0), {size.first, size.second}, ops::InterpolateMode::Bilinear), 0, 0));
    list.image_sizes.push_back(size);
    if (targets != nullptr) {
      Target& t = (*targets)[i];
      t.boxes = resize_boxes(t.boxes, original, size);
      if (t.masks.defined() && t.masks.size(0) > 0) {
        // Nonzero is inside (any dtype), as after torchvision's float resize.
        t.masks = ops::resize_masks_nearest(ops::to(ops::to(t.masks, kCPU), kBool), {size.first, size.second});
      } else {
        t.masks = zeros({0, size.first, size.second}, kBool);
      }
    }
  }
  // batch_images: zero padding to the largest size rounded up to size_divisible.
  int64_t max_h = 0, max_w = 0;
  for (auto [h, w] : list.image_sizes) max_h = std::max(max_h, h), max_w = std::max(max_w, w);
  const int64_t d = config_.size_divisible;
  max_h = (max_h + d - 1) / d * d;
  max_w = (max_w + d - 1) / d * d;
  list.tensors = zeros({static_cast<int64_t>(images.size()), channels, max_h, max_w}, kFloat32, device);
  for (size_t i = 0; i < resized.size(); ++i) {
    const Tensor slot = ops::narrow(ops::narrow(ops::select(list.tensors, 0, static_cast<int64_t>(i)), 1, 0,
                                                resized[i].size(1)), 2, 0, resized[i].size(2));
    copy_into(slot, resized[i]);
  }
  return list;
}

Tensor paste_masks_in_image(const Tensor& masks, const Tensor& boxes, ImageSize image_size, int64_t padding) {
  return ops::paste_masks(masks, boxes, image_size.first, image_size.second, padding);
}

void GeneralizedRCNNTransform::postprocess(std::vector<Detections>& detections, const std::vector<ImageSize>& image_sizes,
                                           const std::vector<ImageSize>& original_sizes) const {
  for (size_t i = 0; i < detections.size(); ++i) {
    detections[i].boxes = resize_boxes(detections[i].boxes, image_sizes[i], original_sizes[i]);
    if (detections[i].masks.defined())
      detections[i].masks = paste_masks_in_image(detections[i].masks, detections[i].boxes, original_sizes[i]);
  }
}

}  // namespace mrcnn::detection
