// Matching and sampling on plain index vectors: the IoU matrix is read once, column by column.
#include "maskrcnn/matcher.h"

#include <algorithm>
#include <exception>
#include <numeric>

#include "autograd/node.h"
#include "tensor/parallel.h"

namespace mrcnn::detection {

std::vector<int64_t> Matcher::operator()(const Tensor& match_quality) const {
  check(match_quality.dim() == 2 && match_quality.dtype() == kFloat32, "Matcher: expected a float32 [G, P] matrix, got ",
        shape_str(match_quality.sizes()));
  check(match_quality.size(0) > 0, "Matcher: no ground-truth boxes (the caller handles images without targets)");
  const Tensor q = copy_as(match_quality, kFloat32, kCPU);
  const int64_t g = q.size(0), p = q.size(1);
  const float* m = q.data<float>();
  std::vector<int64_t> matches(static_cast<size_t>(p));
  std::vector<float> best(static_cast<size_t>(p));
  for (int64_t j = 0; j < p; ++j) {
    // torch.max over dim 0: the first maximal gt on ties.
    int64_t arg = 0;
    float value = m[j];
    for (int64_t i = 1; i < g; ++i)
      if (m[i * p + j] > value) value = m[i * p + j], arg = i;
    best[j] = value;
    matches[j] = arg;
  }
  const std::vector<int64_t> all_matches = matches;
  const float high = static_cast<float>(high_), low = static_cast<float>(low_);
  for (int64_t j = 0; j < p; ++j) {
    if (best[j] < low) matches[j] = kBelowLowThreshold;
    else if (best[j] < high) matches[j] = kBetweenThresholds;
  }
  if (allow_low_quality_) {
    for (int64_t i = 0; i < g; ++i) {
      const float* row = m + i * p;
      const float highest = *std::max_element(row, row + p);
      for (int64_t j = 0; j < p; ++j)
        if (row[j] == highest) matches[j] = all_matches[j];
    }
  }
  return matches;
}

namespace {
// Whether choosing k of n candidates draws random keys: only when fewer than all are wanted.
bool choice_draws(int64_t k, int64_t n) { return k < n; }

// k of `candidates` chosen uniformly: the candidates ordered by a random key each (float64, which
// skip_draws relies on), first k taken.
std::vector<int64_t> choose(const std::vector<int64_t>& candidates, int64_t k, Generator& generator) {
  const int64_t n = static_cast<int64_t>(candidates.size());
  if (!choice_draws(k, n)) return candidates;
  const std::vector<double> keys = to_vector<double>(rand({n}, kFloat64, kCPU, &generator));
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  // The k smallest keys in order, ties by position: what a stable sort's first k are, in O(n log k).
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int64_t a, int64_t b) { return keys[a] < keys[b] || (keys[a] == keys[b] && a < b); });
  std::vector<int64_t> chosen;
  for (int64_t i = 0; i < k; ++i) chosen.push_back(candidates[order[i]]);
  return chosen;
}
}  // namespace

BalancedPositiveNegativeSampler::Masks BalancedPositiveNegativeSampler::operator()(const std::vector<int64_t>& labels,
                                                                                   Generator& generator) const {
  std::vector<int64_t> positive, negative;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= 1) positive.push_back(static_cast<int64_t>(i));
    else if (labels[i] == 0) negative.push_back(static_cast<int64_t>(i));
  }
  const auto [num_pos, num_neg] = counts(static_cast<int64_t>(positive.size()), static_cast<int64_t>(negative.size()));
  Masks masks{std::vector<uint8_t>(labels.size(), 0), std::vector<uint8_t>(labels.size(), 0)};
  for (int64_t i : choose(positive, num_pos, generator)) masks.positive[i] = 1;
  for (int64_t i : choose(negative, num_neg, generator)) masks.negative[i] = 1;
  return masks;
}

std::pair<int64_t, int64_t> BalancedPositiveNegativeSampler::counts(int64_t positives, int64_t negatives) const {
  const int64_t num_pos = std::min<int64_t>(positives, static_cast<int64_t>(batch_size_ * positive_fraction_));
  return {num_pos, std::min<int64_t>(negatives, batch_size_ - num_pos)};
}

void BalancedPositiveNegativeSampler::skip_draws(const std::vector<int64_t>& labels, Generator& generator) const {
  int64_t positives = 0, negatives = 0;
  for (const int64_t label : labels) positives += label >= 1, negatives += label == 0;
  const auto [num_pos, num_neg] = counts(positives, negatives);
  // choose() draws one float64 key per candidate, positives first.
  if (choice_draws(num_pos, positives)) generator.reserve(rand_blocks(positives, kFloat64));
  if (choice_draws(num_neg, negatives)) generator.reserve(rand_blocks(negatives, kFloat64));
}

void for_each_image_in_parallel(int64_t n, const std::function<void(int64_t)>& body) {
  std::vector<std::exception_ptr> errors(static_cast<size_t>(std::max<int64_t>(n, 0)));
  parallel_for(0, n, 1, [&](int64_t first, int64_t last) {
    autograd::NoGradGuard no_grad;  // grad mode is per thread
    for (int64_t i = first; i < last; ++i) {
      try {
        body(i);
      } catch (...) {
        errors[static_cast<size_t>(i)] = std::current_exception();
      }
    }
  });
  for (const std::exception_ptr& error : errors)
    if (error) std::rethrow_exception(error);
}

}  // namespace mrcnn::detection
