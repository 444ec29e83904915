// paste_masks: boxes placed on the host, then one pass over the output pixels (CPU loop or CUDA
// kernel, both through paste_pixel).
#include "ops/paste_masks.h"

#include <algorithm>
#include <vector>

#include "autograd/node.h"
#include "cuda/paste_masks.h"
#include "ops/paste_kernels.h"
#include "ops/view.h"
#include "tensor/parallel.h"

namespace mrcnn::ops {

Tensor paste_masks(const Tensor& masks, const Tensor& boxes, int64_t height, int64_t width, int64_t padding) {
  check(masks.dtype() == kFloat32, "paste_masks: masks must be float32, got ", dtype_name(masks.dtype()));
  const bool one_channel = masks.dim() == 4 && masks.size(1) == 1;
  check((masks.dim() == 3 || one_channel) && masks.size(-1) == masks.size(-2) && masks.size(-1) > 0,
        "paste_masks: masks must be [D, 1, M, M] or [D, M, M], got ", shape_str(masks.sizes()));
  const int64_t d = masks.size(0), m = masks.size(-1);
  check(boxes.dim() == 2 && boxes.size(0) == d && boxes.size(1) == 4, "paste_masks: boxes must be [", d, ", 4], got ",
        shape_str(boxes.sizes()));
  check(height >= 0 && width >= 0 && padding >= 0, "paste_masks: image ", height, "x", width, " and padding ", padding,
        " must not be negative");
  autograd::NoGradGuard no_grad;
  const Tensor out = empty({d, 1, height, width}, kFloat32, masks.device());
  if (out.numel() == 0) return out;
  const Tensor host_boxes = copy_as(boxes, kFloat32, kCPU);
  std::vector<PasteBox> placed(static_cast<size_t>(d));
  for (int64_t i = 0; i < d; ++i) placed[i] = paste_box(host_boxes.data<float>() + i * 4, m, padding, height, width);
  const Tensor source = contiguous(masks.detach());
  if (masks.device().is_cuda()) {
    cuda::paste_masks(source, placed, padding, out);
    return out;
  }
  const float* src = source.data<float>();
  float* dst = out.data<float>();
  const int64_t rows = d * height;
  parallel_for(0, rows, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(width, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t i = row / height, y = row % height;
      const float* mask = src + i * m * m;
      float* o = dst + row * width;
      for (int64_t x = 0; x < width; ++x) o[x] = paste_pixel(mask, m, padding, placed[i], y, x);
    }
  });
  return out;
}

}  // namespace mrcnn::ops
