// paste_masks on the GPU: one thread per output pixel, the CPU's per-pixel body (ops/paste_kernels.h).
#include <cstring>

#include "cuda/launch.cuh"
#include "cuda/paste_masks.h"

namespace mrcnn::cuda {

void paste_masks(const Tensor& masks, const std::vector<PasteBox>& boxes, int64_t padding, const Tensor& out) {
  const int64_t d = out.size(0), height = out.size(2), width = out.size(3), m = masks.size(-1);
  // The boxes travel as int64 rows of 8 (PasteBox is eight int64 fields).
  static_assert(sizeof(PasteBox) == 8 * sizeof(int64_t), "PasteBox must be eight int64 fields");
  std::vector<int64_t> fields(boxes.size() * 8);
  std::memcpy(fields.data(), boxes.data(), fields.size() * sizeof(int64_t));
  const Tensor placed = from_vector<int64_t>(fields, {d, 8}, out.device());
  const auto* box = static_cast<const PasteBox*>(placed.raw_data());
  const float* src = static_cast<const float*>(masks.raw_data());
  float* dst = static_cast<float*>(out.raw_data());
  const int64_t plane = height * width;
  for_each_index(d * plane, [=] __device__(int64_t i) {
    const int64_t det = i / plane, y = (i % plane) / width, x = i % width;
    dst[i] = paste_pixel(src + det * m * m, m, padding, box[det], y, x);
  });
}

}  // namespace mrcnn::cuda
