// AnchorGenerator (torchvision.models.detection.anchor_utils): per feature level, cell anchors of
// each size x aspect ratio centred at 0 (rounded like torch.round), shifted to every grid location
// at the level's stride (padded batch size // feature size). Order: location-major, then
// ratio-major, size-minor within a location, matching the RPN head's channel layout.
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace mrcnn::detection {

class AnchorGenerator {
 public:
  AnchorGenerator(std::vector<std::vector<double>> sizes, std::vector<std::vector<double>> aspect_ratios);
  int64_t num_anchors_per_location() const;
  // Cell anchors of one level: [A, 4] float32.
  Tensor cell_anchors(size_t level) const;
  // Anchors for a batch padded to `batch_size` (H, W) with feature maps of `feature_sizes`; the same
  // for every image of the batch: [sum_l H_l * W_l * A, 4].
  Tensor grid_anchors(std::pair<int64_t, int64_t> batch_size,
                      const std::vector<std::pair<int64_t, int64_t>>& feature_sizes) const;

 private:
  std::vector<std::vector<double>> sizes_, aspect_ratios_;
};

}  // namespace mrcnn::detection
