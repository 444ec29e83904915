// box_area, box_iou, nms and batched_nms on the CPU, in the box dtype (float32 or float64) with
// torchvision's formulas so that borderline IoUs resolve the same way; the RPN's proposal decoding
// and in-order NMS on either device.
#include "ops/boxes.h"

#include <algorithm>
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

// Box indices by descending score, ties in index order (torchvision's stable sort).
template <typename T>
std::vector<int64_t> descending_order(const T* scores, int64_t n) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
  return order;
}

// torchvision's CPU greedy suppression, visiting the boxes order[0], ..., order[n - 1]; writes the
// kept ones to keep (in visiting order) and returns their count. The IoU is compared in double, as
// there; cuda/boxes.cu does the same, so both devices keep the same boxes.
template <typename T>
int64_t greedy_nms(const T* boxes, const int64_t* order, int64_t n, double iou_threshold, int64_t* keep) {
  std::vector<T> areas(n);
  for (int64_t k = 0; k < n; ++k) areas[k] = area_of(boxes + 4 * order[k]);
  std::vector<char> suppressed(n, 0);
  int64_t kept = 0;
  for (int64_t oi = 0; oi < n; ++oi) {
    if (suppressed[oi]) continue;
    keep[kept++] = order[oi];
    const T* p = boxes + 4 * order[oi];
    for (int64_t oj = oi + 1; oj < n; ++oj) {
      if (suppressed[oj]) continue;
      const T inter = intersection_of(p, boxes + 4 * order[oj]);
      if (inter / (areas[oi] + areas[oj] - inter) > iou_threshold) suppressed[oj] = 1;
    }
  }
  return kept;
}

template <typename T>
std::vector<int64_t> nms(const T* boxes, const T* scores, int64_t n, double iou_threshold) {
  const std::vector<int64_t> order = descending_order(scores, n);
  std::vector<int64_t> keep(n);
  keep.resize(greedy_nms(boxes, order.data(), n, iou_threshold, keep.data()));
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
    const int64_t kept = cuda::nms_segments(b, order, {0, b.size(0)}, iou_threshold, keep).front();
    return contiguous(narrow(keep, 0, 0, kept));
  }
  return dispatch_floating(b.dtype(), "nms", [&](auto tag) {
    using T = decltype(tag);
    return from_vector(cpu::nms<T>(b.data<T>(), s.data<T>(), b.size(0), iou_threshold));
  });
}

namespace {

void check_categories(const Tensor& boxes, const Tensor& idxs, const char* op) {
  check(idxs.defined() && idxs.dim() == 1 && idxs.size(0) == boxes.size(0) && idxs.dtype() == kInt64, op,
        ": idxs must be an int64 vector of ", boxes.size(0), " category indices, got ",
        idxs.defined() ? dtype_name(idxs.dtype()) : "undefined", " ", idxs.defined() ? shape_str(idxs.sizes()) : std::string());
}

// Every problem's boxes in one list, cut into segments that suppress only within themselves: one
// segment per problem where torchvision offsets the categories' coordinates (up to 1000 boxes; the
// offset boxes are stored), else one per category. Each segment lists its boxes by descending score.
template <typename T>
struct SegmentedNms {
  std::vector<T> boxes;                 // [total, 4]
  std::vector<int64_t> visit;           // box indices into `boxes`, segment by segment
  std::vector<int64_t> offsets{0};      // segment s visits visit[offsets[s]] .. visit[offsets[s + 1] - 1]
  std::vector<size_t> first_segment;    // per problem, then one past the last problem
  std::vector<Tensor> scores;           // per problem, on the host

  void add(const Tensor& problem_boxes, const Tensor& problem_scores, const Tensor& problem_idxs) {
    const Tensor b = contiguous(to(problem_boxes.detach(), kCPU)), s = contiguous(to(problem_scores.detach(), kCPU));
    const Tensor c = contiguous(to(problem_idxs.detach(), kCPU));
    const int64_t n = b.size(0), base = static_cast<int64_t>(boxes.size() / 4);
    const T* bp = b.data<T>();
    const int64_t* category = c.data<int64_t>();
    first_segment.push_back(offsets.size() - 1);
    scores.push_back(s);
    if (n == 0) return;
    std::vector<int64_t> order = cpu::descending_order(s.data<T>(), n);
    const size_t start = boxes.size();
    boxes.insert(boxes.end(), bp, bp + 4 * n);
    const bool offset_categories = b.numel() <= 4000;
    if (offset_categories) {
      // Coordinate trick: shift each category by idx * (max coordinate + 1) so categories never overlap.
      const T top = *std::max_element(bp, bp + 4 * n);
      for (int64_t i = 0; i < n; ++i)
        for (int k = 0; k < 4; ++k) boxes[start + 4 * i + k] += static_cast<T>(category[i]) * (top + T(1));
    } else {
      std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return category[x] < category[y]; });
    }
    for (int64_t k = 0; k < n; ++k) {
      if (!offset_categories && k > 0 && category[order[k]] != category[order[k - 1]]) offsets.push_back(base + k);
      visit.push_back(base + order[k]);
    }
    offsets.push_back(base + n);
  }

  // Segment s's kept box indices go to keep[offsets[s] ...] (keep has visit's size); returns the
  // kept count per segment.
  std::vector<int64_t> solve(double iou_threshold, Device device, std::vector<int64_t>& keep) const {
    const int64_t total = static_cast<int64_t>(visit.size()), segment_count = static_cast<int64_t>(offsets.size()) - 1;
    keep.assign(visit.size(), 0);
    if (total == 0) return std::vector<int64_t>(static_cast<size_t>(segment_count), 0);
    if (device.is_cuda()) {
      const Tensor device_keep = empty({total}, kInt64, device);
      std::vector<int64_t> counts = cuda::nms_segments(from_vector(boxes, {total, 4}, device), from_vector(visit, {total}, device),
                                                       offsets, iou_threshold, device_keep);
      keep = to_vector<int64_t>(device_keep);
      return counts;
    }
    std::vector<int64_t> counts(static_cast<size_t>(segment_count));
    parallel_for(0, segment_count, 1, [&](int64_t first, int64_t last) {
      for (int64_t seg = first; seg < last; ++seg)
        counts[seg] = cpu::greedy_nms(boxes.data(), visit.data() + offsets[seg], offsets[seg + 1] - offsets[seg], iou_threshold,
                                      keep.data() + offsets[seg]);
    });
    return counts;
  }
};

}  // namespace

std::vector<Tensor> batched_nms_each(const std::vector<NmsProblem>& problems, double iou_threshold, Device device) {
  const char* op = "batched_nms";
  for (const NmsProblem& p : problems) {
    check_boxes(p.boxes, "boxes", op);
    check_scores(p.boxes, p.scores, op);
    check_categories(p.boxes, p.idxs, op);
    check(p.boxes.dtype() == problems.front().boxes.dtype(), op, ": every problem's boxes must be ",
          dtype_name(problems.front().boxes.dtype()), ", got ", dtype_name(p.boxes.dtype()));
  }
  if (problems.empty()) return {};
  return dispatch_floating(problems.front().boxes.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    SegmentedNms<T> all;
    for (const NmsProblem& p : problems) all.add(p.boxes, p.scores, p.idxs);
    all.first_segment.push_back(all.offsets.size() - 1);
    std::vector<int64_t> keep;
    const std::vector<int64_t> counts = all.solve(iou_threshold, device, keep);
    std::vector<Tensor> results;
    int64_t base = 0;
    for (size_t p = 0; p < problems.size(); ++p) {
      std::vector<int64_t> kept;
      for (size_t seg = all.first_segment[p]; seg < all.first_segment[p + 1]; ++seg)
        for (int64_t k = 0; k < counts[seg]; ++k) kept.push_back(keep[all.offsets[seg] + k] - base);
      // torchvision gathers the kept set in index order, then sorts it by score.
      const T* score = all.scores[p].template data<T>();
      std::sort(kept.begin(), kept.end());
      std::stable_sort(kept.begin(), kept.end(), [&](int64_t x, int64_t y) { return score[x] > score[y]; });
      results.push_back(from_vector(kept));
      base += problems[p].boxes.size(0);
    }
    return results;
  });
}

Tensor batched_nms(const Tensor& boxes, const Tensor& scores, const Tensor& idxs, double iou_threshold) {
  Tensor keep = batched_nms_each({{boxes, scores, idxs}}, iou_threshold, boxes.defined() ? boxes.device() : kCPU).front();
  return boxes.device().is_cuda() ? to(keep, boxes.device()) : keep;
}

ProposalCandidates decode_proposals(const Tensor& anchors, const Tensor& deltas, const Tensor& logits, const Tensor& within,
                                    const std::vector<ProposalLevel>& levels,
                                    const std::vector<std::pair<int64_t, int64_t>>& image_sizes, const ProposalRule& rule) {
  const char* op = "decode_proposals";
  check(anchors.defined() && anchors.dim() == 2 && anchors.size(1) == 4 && anchors.dtype() == kFloat32, op,
        ": anchors must be float32 [A, 4], got ", anchors.defined() ? shape_str(anchors.sizes()) : std::string("undefined"));
  check(logits.defined() && logits.dim() == 2 && logits.dtype() == kFloat32, op, ": logits must be float32 [N, P]");
  const int64_t images = logits.size(0), columns = logits.size(1), anchor_count = anchors.size(0);
  check(within.defined() && within.dtype() == kInt64 && within.sizes() == logits.sizes(), op,
        ": within must be int64 of the logits' shape ", shape_str(logits.sizes()));
  check(deltas.defined() && deltas.dtype() == kFloat32 && deltas.dim() == 2 && deltas.size(0) == images * anchor_count &&
            deltas.size(1) == 4,
        op, ": deltas must be float32 [", images * anchor_count, ", 4] (one row per image and anchor), got ",
        deltas.defined() ? shape_str(deltas.sizes()) : std::string("undefined"));
  check(static_cast<int64_t>(image_sizes.size()) == images, op, ": ", image_sizes.size(), " image sizes for ", images, " images");
  const Device device = logits.device();
  check(anchors.device() == device && deltas.device() == device && within.device() == device, op,
        ": anchors, deltas, logits and within must be on one device");
  check(!levels.empty() && levels.size() <= static_cast<size_t>(kMaxProposalLevels), op, ": 1 to ", kMaxProposalLevels,
        " levels, got ", levels.size());
  ProposalColumns table;
  table.levels = static_cast<int>(levels.size());
  int64_t end = 0;
  for (size_t l = 0; l < levels.size(); ++l) {
    check(levels[l].columns >= 0 && levels[l].first_anchor >= 0, op, ": level ", l, " has a negative column count or anchor offset");
    end += levels[l].columns;
    table.end[l] = end;
    table.first_anchor[l] = levels[l].first_anchor;
  }
  check(end == columns, op, ": the levels take ", end, " columns, the logits have ", columns);
  std::vector<float> sizes;
  for (const auto& [height, width] : image_sizes) sizes.insert(sizes.end(), {static_cast<float>(height), static_cast<float>(width)});
  const int64_t rows = images * columns;
  ProposalCandidates out{empty({rows, 4}, kFloat32, device), empty({rows}, kFloat32, device), empty({rows}, kBool, device)};
  const Tensor a = contiguous(anchors.detach()), d = contiguous(deltas.detach()), l = contiguous(logits.detach());
  const Tensor w = contiguous(within.detach());
  if (rows == 0) return out;
  if (device.is_cuda()) {
    cuda::decode_proposals(a, d, l, w, table, from_vector(sizes, {images, 2}, device), rule, out.boxes, out.scores, out.valid);
    return out;
  }
  // The CPU says which candidate points outside the anchors (the GPU marks it invalid instead of waiting to say so).
  const int64_t* within_data = w.data<int64_t>();
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t anchor = proposal_anchor(table, r % columns, within_data[r]);
    check(anchor >= 0 && anchor < anchor_count, op, ": candidate ", r, " picks anchor ", anchor, " of ", anchor_count);
  }
  parallel_for(0, rows, kParallelGrain / 64, [&](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r)
      proposal_candidate(r, columns, anchor_count, table, a.data<float>(), d.data<float>(), l.data<float>(), within_data,
                         sizes.data(), rule, out.boxes.data<float>(), out.scores.data<float>(), out.valid.data<uint8_t>());
  });
  return out;
}

std::vector<std::vector<int64_t>> nms_in_order(const Tensor& boxes, const Tensor& valid, const std::vector<int64_t>& offsets,
                                               double iou_threshold) {
  const char* op = "nms_in_order";
  check_boxes(boxes, "boxes", op);
  const int64_t rows = boxes.size(0);
  check(valid.defined() && valid.dtype() == kBool && valid.dim() == 1 && valid.size(0) == rows, op,
        ": valid must be a bool vector of ", rows, " elements (one per box)");
  check(valid.device() == boxes.device(), op, ": boxes are on ", boxes.device().str(), " but valid on ", valid.device().str());
  check(offsets.size() >= 2 && offsets.front() == 0 && offsets.back() == rows, op, ": segment offsets must run from 0 to ", rows);
  for (size_t s = 1; s < offsets.size(); ++s) check(offsets[s] >= offsets[s - 1], op, ": segment offsets must not decrease");
  const size_t segment_count = offsets.size() - 1;
  std::vector<std::vector<int64_t>> kept(segment_count);
  if (rows == 0) return kept;
  const Tensor b = contiguous(boxes.detach()), v = contiguous(valid.detach());
  if (b.device().is_cuda()) {
    const Tensor keep = empty({rows}, kInt64, b.device());
    const std::vector<int64_t> counts = cuda::nms_segments(b, Tensor(), offsets, iou_threshold, keep, v);
    if (std::all_of(counts.begin(), counts.end(), [](int64_t c) { return c == 0; })) return kept;
    const std::vector<int64_t> all = to_vector<int64_t>(keep);
    for (size_t s = 0; s < segment_count; ++s) kept[s].assign(all.begin() + offsets[s], all.begin() + offsets[s] + counts[s]);
    return kept;
  }
  dispatch_floating(b.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const uint8_t* take_part = v.data<uint8_t>();
    parallel_for(0, static_cast<int64_t>(segment_count), 1, [&](int64_t first, int64_t last) {
      for (int64_t s = first; s < last; ++s) {
        std::vector<int64_t> visit;
        for (int64_t r = offsets[s]; r < offsets[s + 1]; ++r)
          if (take_part[r]) visit.push_back(r);
        kept[s].resize(visit.size());
        kept[s].resize(cpu::greedy_nms(b.data<T>(), visit.data(), static_cast<int64_t>(visit.size()), iou_threshold, kept[s].data()));
      }
    });
  });
  return kept;
}

}  // namespace mrcnn::ops
