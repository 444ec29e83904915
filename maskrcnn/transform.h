// GeneralizedRCNNTransform (torchvision.models.detection.transform): normalise each image, resize it
// so its short side is min_size (long side at most max_size; scale computed in float32 and the size
// floored, as interpolate(recompute_scale_factor=True) does), pad the batch to a multiple of 32;
// targets follow the resize (boxes scaled, masks nearest-resampled). postprocess maps detections
// back to the original images and pastes the 28x28 masks (paste_masks_in_image, 1-pixel pad).
#pragma once
#include "maskrcnn/config.h"
#include "maskrcnn/image_list.h"
#include "tensor/random.h"

namespace mrcnn::detection {

class GeneralizedRCNNTransform {
 public:
  explicit GeneralizedRCNNTransform(const Config& config) : config_(config) {}
  // images: [C, H, W] float32 in [0, 1]. In training one min_size is drawn per image from `generator`
  // (null: the last min_size, torchvision's eval choice). targets may be null. The batch is built on
  // `device` (images are normalised and resized there); target masks stay on the host.
  ImageList forward(const std::vector<Tensor>& images, std::vector<Target>* targets, Generator* generator = nullptr,
                    Device device = kCPU) const;
  // The resized size of an (h, w) image for `min_size`.
  ImageSize resized_size(ImageSize size, int64_t min_size) const;
  // Boxes and masks back to each original size.
  void postprocess(std::vector<Detections>& detections, const std::vector<ImageSize>& image_sizes,
                   const std::vector<ImageSize>& original_sizes) const;

 private:
  Config config_;
};

// boxes [N, 4] from an image of size `from` to one of size `to` (float32 ratios, like torchvision).
Tensor resize_boxes(const Tensor& boxes, ImageSize from, ImageSize to);
// masks [D, 1, M, M] probabilities pasted into [D, 1, H, W] at boxes [D, 4] (torchvision's
// paste_masks_in_image: masks padded by one pixel, boxes expanded by (M + 2) / M and truncated to ints).
Tensor paste_masks_in_image(const Tensor& masks, const Tensor& boxes, ImageSize image_size, int64_t padding = 1);

}  // namespace mrcnn::detection
