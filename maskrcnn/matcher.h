// Matcher and BalancedPositiveNegativeSampler (torchvision.models.detection._utils): which ground-truth
// box each anchor/proposal belongs to, and which of them the loss looks at. Index work, no gradient.
#pragma once
#include <vector>

#include "tensor/random.h"

namespace mrcnn::detection {

class Matcher {
 public:
  static constexpr int64_t kBelowLowThreshold = -1;
  static constexpr int64_t kBetweenThresholds = -2;
  Matcher(double high_threshold, double low_threshold, bool allow_low_quality_matches)
      : high_(high_threshold), low_(low_threshold), allow_low_quality_(allow_low_quality_matches) {}
  // match_quality [G, P] (IoU of each gt with each prediction) -> per prediction the gt index, or
  // kBelowLowThreshold (IoU < low), or kBetweenThresholds (low <= IoU < high). With low-quality matches
  // allowed, each gt's best predictions (all ties) keep that gt even below the high threshold.
  std::vector<int64_t> operator()(const Tensor& match_quality) const;

 private:
  double high_, low_;
  bool allow_low_quality_;
};

class BalancedPositiveNegativeSampler {
 public:
  BalancedPositiveNegativeSampler(int64_t batch_size_per_image, double positive_fraction)
      : batch_size_(batch_size_per_image), positive_fraction_(positive_fraction) {}
  // labels per element: >= 1 positive, 0 negative, -1 ignored. Picks at most
  // batch_size * positive_fraction positives and fills the rest of the batch with negatives, each
  // subset drawn uniformly from `generator`. Returns 0/1 masks (positive, negative).
  struct Masks {
    std::vector<uint8_t> positive, negative;
  };
  Masks operator()(const std::vector<int64_t>& labels, Generator& generator) const;

 private:
  int64_t batch_size_;
  double positive_fraction_;
};

}  // namespace mrcnn::detection
