// Matcher and BalancedPositiveNegativeSampler (torchvision.models.detection._utils): which ground-truth
// box each anchor/proposal belongs to, and which of them the loss looks at. Index work, no gradient.
#pragma once
#include <functional>
#include <utility>
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
  // Moves `generator` past what operator() would draw for these labels, drawing nothing. Images can
  // then sample side by side with the bits of sampling one after another: each image takes a copy of
  // the generator, then skips its own draws on the original, in image order.
  void skip_draws(const std::vector<int64_t>& labels, Generator& generator) const;

 private:
  // How many positives and negatives a batch takes from the ones available.
  std::pair<int64_t, int64_t> counts(int64_t positives, int64_t negatives) const;
  int64_t batch_size_;
  double positive_fraction_;
};

// Runs body(i) for each image i in [0, n) side by side on the threads, gradients off. An error must
// not leave an OpenMP region: the first (lowest i) is rethrown here once every image has run.
void for_each_image_in_parallel(int64_t n, const std::function<void(int64_t)>& body);

}  // namespace mrcnn::detection
