// Segmentation overlap metrics of binary masks, as medical-imaging users report them: Dice, IoU and
// the 95th-percentile Hausdorff distance (HD95, in pixels). Conventions for empty masks: both empty
// -> Dice 1, IoU 1, HD95 0 (a correct "no tumour"); exactly one empty -> Dice 0, IoU 0, HD95
// undefined (NaN: there is no surface to measure from), which callers report and leave out of means.
#pragma once
#include <cstdint>
#include <vector>

namespace mrcnn::detection {

struct OverlapMetrics {
  double dice = 0, iou = 0, hd95 = 0;
  int64_t truth_pixels = 0, predicted_pixels = 0;
};

// Masks: height * width bytes, row-major, nonzero = inside. HD95 follows MedPy's hd95: surfaces are
// the mask pixels with a 4-neighbour outside the mask (or on the image border), distances are
// Euclidean between pixel centres, and HD95 is the 95th percentile (linear interpolation, as
// numpy.percentile) of the distances from each surface pixel to the other surface, both directions pooled.
OverlapMetrics overlap_metrics(const std::vector<uint8_t>& truth, const std::vector<uint8_t>& predicted, int64_t height,
                               int64_t width);

// numpy.percentile's default on values sorted ascending: linear interpolation between the order
// statistics at fraction * (n - 1), fraction in [0, 1] (0.5: the median). HD95, the bootstrap's
// intervals and the median area difference all read their figures through this one formula.
double percentile_of_sorted(const std::vector<double>& sorted, double fraction);

}  // namespace mrcnn::detection
