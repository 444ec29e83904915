// Seeded training augmentation: horizontal flip (image, boxes, masks) and brightness/contrast
// jitter. Scale jitter is the config's list of min_size values, one drawn per image by the transform.
// Every draw comes from the Generator passed in, so a seed reproduces a run exactly.
#pragma once
#include "maskrcnn/image_list.h"
#include "tensor/random.h"

namespace mrcnn::detection {

struct AugmentOptions {
  double flip_probability = 0.5;
  double brightness = 0.1;  // add U(-b, b)
  double contrast = 0.1;    // scale about the image mean by U(1 - c, 1 + c)
};

// Image [C, H, W] in [0, 1] and its target, augmented in place (new tensors; inputs untouched).
void augment(Tensor& image, Target& target, const AugmentOptions& options, Generator& generator);
// The flip alone: x -> W - x for boxes, masks and pixels mirrored.
void horizontal_flip(Tensor& image, Target& target);
// Boxes [N, 4] (x1, y1, x2, y2) of an image `width` pixels wide, mirrored: a new float32 host tensor.
Tensor mirrored_boxes(const Tensor& boxes, float width);
// An image [C, H, W] mirrored left-right (a new host tensor).
Tensor mirrored_image(const Tensor& image);

}  // namespace mrcnn::detection
