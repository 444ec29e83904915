// box_area, box_iou, nms and batched_nms on the CPU, in the box dtype (float32 or float64) with
// torchvision's formulas so that borderline IoUs resolve the same way.
#include "ops/boxes.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <vector>

#include "cuda/boxes.h"
#include "ops/box_geometry.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "ops/sort.h"
#include "ops/view.h"
#include "tensor/dispatch.h"
#include "tensor/parallel.h"

namespace mrcnn::cpu {

namespace {

template <typename T>
T area_of(const T* b) {
  return box_area_of(b);
}

template <typename T>
T intersection_of(const T* p, const T* q) {
  return box_intersection_of(p, q);
}

template <typename T>
void box_iou(const T* a, int64_t n, const T* b, int64_t m, T* out) {
  parallel_for(0, n, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(8 * m, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T* p = a + 4 * i;
      const T area_p = area_of(p);
      for (int64_t j = 0; j < m; ++j) {
        const T* q = b + 4 * j;
        const T inter = intersection_of(p, q);
        out[i * m + j] = inter / (area_p + area_of(q) - inter);
      }
    }
  });
}

// torchvision's CPU nms: stable descending sort, then greedy suppression in that order.
template <typename T>
std::vector<int64_t> nms(const T* boxes, const T* scores, int64_t n, double iou_threshold) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
  std::vector<T> areas(n);
  for (int64_t i = 0; i < n; ++i) areas[i] = area_of(boxes + 4 * i);
  std::vector<char> suppressed(n, 0);
  std::vector<int64_t> keep;
  for (int64_t oi = 0; oi < n; ++oi) {
    const int64_t i = order[oi];
    if (suppressed[i]) continue;
    keep.push_back(i);
    const T* p = boxes + 4 * i;
    for (int64_t oj = oi + 1; oj < n; ++oj) {
      const int64_t j = order[oj];
      if (suppressed[j]) continue;
      const T inter = intersection_of(p, boxes + 4 * j);
      if (inter / (areas[i] + areas[j] - inter) > iou_threshold) suppressed[j] = 1;
    }
  }
  return keep;
}

}  // namespace
}  // namespace mrcnn::cpu

namespace mrcnn::ops {

namespace {

void check_boxes(const Tensor& boxes, const char* name, const char* op) {
  check(boxes.defined() && boxes.dim() == 2 && boxes.size(1) == 4, op, ": ", name,
        " must be [N, 4] rows of (x1, y1, x2, y2), got ", boxes.defined() ? shape_str(boxes.sizes()) : std::string("an undefined tensor"));
  check(boxes.dtype() == kFloat32 || boxes.dtype() == kFloat64, op, ": ", name, " must be float32 or float64, got ",
        dtype_name(boxes.dtype()));
}

void check_scores(const Tensor& boxes, const Tensor& scores, const char* op) {
  check(scores.defined() && scores.dim() == 1 && scores.size(0) == boxes.size(0) && scores.dtype() == boxes.dtype(), op,
        ": scores must be a ", dtype_name(boxes.dtype()), " vector of ", boxes.size(0), " elements (one per box), got ",
        scores.defined() ? dtype_name(scores.dtype()) : "undefined", " ",
        scores.defined() ? shape_str(scores.sizes()) : std::string());
}

Tensor index_tensor(const std::vector<int64_t>& v) { return from_vector<int64_t>(v, {static_cast<int64_t>(v.size())}); }

}  // namespace

Tensor box_area(const Tensor& boxes) {
  check_boxes(boxes, "boxes", "box_area");
  const Tensor b = contiguous(boxes.detach());
  if (b.device().is_cuda()) {
    Tensor out = empty({b.size(0)}, b.dtype(), b.device());
    cuda::box_area(b, out);
    return out;
  }
  Tensor out = empty({b.size(0)}, b.dtype());
  dispatch_floating(b.dtype(), "box_area", [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < b.size(0); ++i) out.data<T>()[i] = cpu::area_of(b.data<T>() + 4 * i);
  });
  return out;
}

Tensor box_iou(const Tensor& boxes1, const Tensor& boxes2) {
  check_boxes(boxes1, "boxes1", "box_iou");
  check_boxes(boxes2, "boxes2", "box_iou");
  check(boxes1.dtype() == boxes2.dtype(), "box_iou: boxes1 is ", dtype_name(boxes1.dtype()), " but boxes2 is ",
        dtype_name(boxes2.dtype()));
  check(boxes1.device() == boxes2.device(), "box_iou: boxes1 is on ", boxes1.device().str(), " but boxes2 on ",
        boxes2.device().str());
  const Tensor a = contiguous(boxes1.detach()), b = contiguous(boxes2.detach());
  if (a.device().is_cuda()) {
    Tensor out = empty({a.size(0), b.size(0)}, a.dtype(), a.device());
    cuda::box_iou(a, b, out);
    return out;
  }
  Tensor out = empty({a.size(0), b.size(0)}, a.dtype());
  dispatch_floating(a.dtype(), "box_iou", [&](auto tag) {
    using T = decltype(tag);
    cpu::box_iou<T>(a.data<T>(), a.size(0), b.data<T>(), b.size(0), out.data<T>());
  });
  return out;
}

Tensor nms(const Tensor& boxes, const Tensor& scores, double iou_threshold) {
  check_boxes(boxes, "boxes", "nms");
  check_scores(boxes, scores, "nms");
  check(boxes.device() == scores.device(), "nms: boxes are on ", boxes.device().str(), " but scores on ",
        scores.device().str());
  const Tensor b = contiguous(boxes.detach()), s = contiguous(scores.detach());
  if (b.device().is_cuda()) {
    // Stable descending sort (CUB radix sort on the GPU), so ties keep index order as on the CPU.
    const Tensor order = sort(s, 0, /*descending=*/true).indices;
    Tensor keep = empty({b.size(0)}, kInt64, b.device());
    const int64_t kept = cuda::nms_sorted(b, order, iou_threshold, keep);
    return contiguous(narrow(keep, 0, 0, kept));
  }
  return dispatch_floating(b.dtype(), "nms", [&](auto tag) {
    using T = decltype(tag);
    return index_tensor(cpu::nms<T>(b.data<T>(), s.data<T>(), b.size(0), iou_threshold));
  });
}

Tensor batched_nms(const Tensor& boxes, const Tensor& scores, const Tensor& idxs, double iou_threshold) {
  const char* op = "batched_nms";
  check_boxes(boxes, "boxes", op);
  check_scores(boxes, scores, op);
  check(idxs.defined() && idxs.dim() == 1 && idxs.size(0) == boxes.size(0) && idxs.dtype() == kInt64, op,
        ": idxs must be an int64 vector of ", boxes.size(0), " category indices, got ",
        idxs.defined() ? dtype_name(idxs.dtype()) : "undefined", " ", idxs.defined() ? shape_str(idxs.sizes()) : std::string());
  const int64_t n = boxes.size(0);
  if (n == 0) return empty({0}, kInt64, boxes.device());
  if (boxes.device().is_cuda()) {
    // torchvision's coordinate trick, on the device: category k moves by k * (largest coordinate + 1)
    // so boxes of different categories never overlap, then one NMS over all of them.
    check(idxs.device() == boxes.device(), op, ": idxs are on ", idxs.device().str(), " but boxes on ", boxes.device().str());
    const Tensor b = boxes.detach();
    const Tensor offsets = mul(to(idxs, b.dtype()), add(max(b), 1.0));
    return nms(add(b, unsqueeze(offsets, 1)), scores, iou_threshold);
  }
  const Tensor b = contiguous(boxes.detach()), s = contiguous(scores.detach()), c = contiguous(idxs.detach());
  const int64_t* cat = c.data<int64_t>();
  return dispatch_floating(b.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* bp = b.data<T>();
    const T* sp = s.data<T>();
    if (b.numel() <= 4000) {
      // Coordinate trick: shift each category by idx * (max coordinate + 1) so categories never overlap.
      const T top = *std::max_element(bp, bp + 4 * n);
      std::vector<T> shifted(bp, bp + 4 * n);
      for (int64_t i = 0; i < n; ++i)
        for (int k = 0; k < 4; ++k) shifted[4 * i + k] += static_cast<T>(cat[i]) * (top + T(1));
      return index_tensor(cpu::nms<T>(shifted.data(), sp, n, iou_threshold));
    }
    std::map<int64_t, std::vector<int64_t>> members;
    for (int64_t i = 0; i < n; ++i) members[cat[i]].push_back(i);
    std::vector<int64_t> keep;
    for (const auto& [category, index] : members) {
      std::vector<T> cb, cs;
      for (int64_t i : index) {
        cb.insert(cb.end(), bp + 4 * i, bp + 4 * i + 4);
        cs.push_back(sp[i]);
      }
      for (int64_t k : cpu::nms<T>(cb.data(), cs.data(), static_cast<int64_t>(index.size()), iou_threshold))
        keep.push_back(index[k]);
    }
    std::sort(keep.begin(), keep.end());  // torchvision gathers the kept set in index order, then sorts by score
    std::stable_sort(keep.begin(), keep.end(), [&](int64_t x, int64_t y) { return sp[x] > sp[y]; });
    return index_tensor(keep);
  });
}

}  // namespace mrcnn::ops
