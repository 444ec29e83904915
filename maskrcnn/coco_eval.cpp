// COCOeval.evaluateImg / accumulate / summarize, restricted to what detection users read: the six
// AP figures at maxDets 100.
#include "maskrcnn/coco_eval.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>

#include "tensor/json_number.h"

namespace mrcnn::detection {

namespace {

constexpr int kThresholds = 10, kRecallPoints = 101, kMaxDetections = 100;
const std::array<std::array<double, 2>, 4> kAreaRanges = {{{0, 1e10}, {0, 32 * 32}, {32 * 32, 96 * 96}, {96 * 96, 1e10}}};

// np.linspace as COCOeval builds its thresholds: i * step + start, the last one exactly stop (the
// same doubles matter: an IoU or recall exactly on a threshold decides a match).
double linspace(double start, double stop, int count, int i) {
  return i == count - 1 ? stop : static_cast<double>(i) * ((stop - start) / (count - 1)) + start;
}
double threshold(int t) { return linspace(0.5, 0.95, kThresholds, t); }

double box_iou(const std::array<double, 4>& d, const std::array<double, 4>& g, bool crowd) {
  const double w = std::min(d[0] + d[2], g[0] + g[2]) - std::max(d[0], g[0]);
  const double h = std::min(d[1] + d[3], g[1] + g[3]) - std::max(d[1], g[1]);
  if (w <= 0 || h <= 0) return 0;
  const double inter = w * h, da = d[2] * d[3], ga = g[2] * g[3];
  return inter / (crowd ? da : da + ga - inter);
}

// Per (image, category, area range): matches at each threshold for the top detections.
struct ImageEval {
  std::vector<double> scores;
  std::vector<std::array<bool, kThresholds>> matched, ignored;
  int64_t gt_not_ignored = 0;
};

}  // namespace

double rle_iou(const Rle& d, const Rle& g, bool crowd) {
  check(d.height == g.height && d.width == g.width, "rle_iou: masks of different sizes");
  uint64_t inter = 0;
  size_t ia = 0, ib = 0;
  uint64_t left_a = d.counts.empty() ? 0 : d.counts[0], left_b = g.counts.empty() ? 0 : g.counts[0];
  bool va = false, vb = false;
  uint64_t remaining = static_cast<uint64_t>(d.height * d.width);
  while (remaining > 0) {
    while (left_a == 0 && ia + 1 < d.counts.size()) left_a = d.counts[++ia], va = !va;
    while (left_b == 0 && ib + 1 < g.counts.size()) left_b = g.counts[++ib], vb = !vb;
    const uint64_t step = std::min(left_a, left_b);
    if (step == 0) break;
    if (va && vb) inter += step;
    left_a -= step, left_b -= step, remaining -= step;
  }
  const double da = static_cast<double>(rle_area(d)), ga = static_cast<double>(rle_area(g));
  const double uni = crowd ? da : da + ga - static_cast<double>(inter);
  return uni > 0 ? static_cast<double>(inter) / uni : 0.0;
}

std::vector<EvalDetection> parse_results(const std::string& json_text, const std::string& name, const CocoDataset& truth) {
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(name, ": not valid JSON (", e.what(), ")"));
  }
  check(root.is_array(), name, ": COCO results must be a JSON list, got ", root.type_name());
  std::map<int64_t, const CocoImage*> images;
  std::map<std::string, const CocoImage*> by_name;  // null: the name is two images'
  for (const auto& image : truth.images) {
    images[image.id] = &image;
    const auto [it, fresh] = by_name.emplace(image.file_name, &image);
    if (!fresh) it->second = nullptr;
  }
  std::vector<EvalDetection> out;
  for (size_t i = 0; i < root.size(); ++i) {
    const auto& r = root[i];
    const std::string where = str_cat(name, ": [", i, "]: ");
    try {
      EvalDetection d;
      // `mrcnn predict` numbers images by their place in its list and names them: the name decides.
      if (r.contains("file_name")) {
        check(r["file_name"].is_string(), "file_name must be a string");
        const auto& file_name = r["file_name"].get_ref<const std::string&>();
        const auto named = by_name.find(file_name);
        check(named != by_name.end(), "file_name '", file_name, "' is not in the ground truth");
        check(named->second != nullptr, "file_name '", file_name,
              "' names several images of the ground truth; give image_id without file_name");
        d.image_id = named->second->id;
      } else {
        d.image_id = json_number<int64_t>(r.at("image_id"), "image_id");
      }
      d.category_id = json_number<int64_t>(r.at("category_id"), "category_id");
      d.score = json_number<double>(r.at("score"), "score");
      const auto box = r.at("bbox").get<std::vector<double>>();
      check(box.size() == 4, "bbox must have 4 numbers");
      std::copy(box.begin(), box.end(), d.bbox.begin());
      const auto image = images.find(d.image_id);
      check(image != images.end(), "image_id ", d.image_id, " is not in the ground truth");
      if (r.contains("segmentation")) {
        const auto& seg = r["segmentation"];
        check(json_numbers_fit<std::vector<int64_t>>(seg.at("size")), "segmentation size must be two integers, got ", seg.at("size").dump());
        const auto size = seg.at("size").get<std::vector<int64_t>>();
        check(size.size() == 2 && size[0] == image->second->height && size[1] == image->second->width,
              "segmentation size differs from the image's");
        d.segmentation = rle_from_string(seg.at("counts").get<std::string>(), size[0], size[1]);
      }
      out.push_back(std::move(d));
    } catch (const std::exception& e) {
      throw Error(where + e.what());
    }
  }
  return out;
}

CocoEvalResult coco_evaluate(const CocoDataset& truth, const std::vector<EvalDetection>& detections, IouType type) {
  std::map<std::pair<int64_t, int64_t>, std::vector<const EvalDetection*>> dets;
  for (const auto& d : detections) dets[{d.image_id, d.category_id}].push_back(&d);
  std::vector<int64_t> categories;
  for (const auto& c : truth.categories) categories.push_back(c.id);
  // evals[category][area] over images, in image order.
  std::vector<std::array<std::vector<ImageEval>, 4>> evals(categories.size());
  for (const CocoImage& image : truth.images) {
    for (size_t k = 0; k < categories.size(); ++k) {
      std::vector<const CocoAnnotation*> gts;
      std::vector<Rle> gt_masks;
      for (const auto& a : image.annotations)
        if (a.category_id == categories[k]) gts.push_back(&a);
      auto it = dets.find({image.id, categories[k]});
      std::vector<const EvalDetection*> dt = it == dets.end() ? std::vector<const EvalDetection*>{} : it->second;
      if (gts.empty() && dt.empty()) continue;
      std::stable_sort(dt.begin(), dt.end(), [](auto a, auto b) { return a->score > b->score; });
      if (dt.size() > static_cast<size_t>(kMaxDetections)) dt.resize(kMaxDetections);
      if (type == IouType::Segm)
        for (const auto* g : gts) gt_masks.push_back(rle_encode(annotation_mask(*g, image.height, image.width).data(), image.height, image.width));
      std::vector<std::vector<double>> ious(dt.size(), std::vector<double>(gts.size()));
      for (size_t i = 0; i < dt.size(); ++i)
        for (size_t j = 0; j < gts.size(); ++j)
          ious[i][j] = type == IouType::Bbox ? box_iou(dt[i]->bbox, gts[j]->bbox, gts[j]->iscrowd)
                                             : rle_iou(dt[i]->segmentation, gt_masks[j], gts[j]->iscrowd);
      for (size_t a = 0; a < kAreaRanges.size(); ++a) {
        const auto [lo, hi] = kAreaRanges[a];
        // Ground truth: ignored if crowd or outside the range; non-ignored first (stable).
        std::vector<size_t> order(gts.size());
        std::iota(order.begin(), order.end(), 0);
        std::vector<bool> gt_ignore(gts.size());
        for (size_t j = 0; j < gts.size(); ++j) gt_ignore[j] = gts[j]->iscrowd || gts[j]->area < lo || gts[j]->area > hi;
        std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return gt_ignore[x] < gt_ignore[y]; });
        ImageEval e;
        for (size_t j = 0; j < gts.size(); ++j) e.gt_not_ignored += !gt_ignore[j];
        std::vector<std::array<bool, kThresholds>> gt_matched(gts.size());
        for (auto& m : gt_matched) m.fill(false);
        for (size_t i = 0; i < dt.size(); ++i) {
          std::array<bool, kThresholds> matched{}, ignored{};
          for (int t = 0; t < kThresholds; ++t) {
            double best = std::min(threshold(t), 1 - 1e-10);
            int64_t m = -1;
            for (size_t oj = 0; oj < order.size(); ++oj) {
              const size_t j = order[oj];
              if (gt_matched[j][t] && !gts[j]->iscrowd) continue;
              if (m > -1 && !gt_ignore[static_cast<size_t>(m)] && gt_ignore[j]) break;
              if (ious[i][j] < best) continue;
              best = ious[i][j];
              m = static_cast<int64_t>(j);
            }
            if (m == -1) continue;
            matched[t] = true;
            ignored[t] = gt_ignore[static_cast<size_t>(m)];
            gt_matched[static_cast<size_t>(m)][t] = true;
          }
          // Unmatched detections outside the size range are ignored too. Their size is the box's
          // area for segm as well: pycocotools' loadRes sets area = w * h whenever results carry a
          // bbox (ours always do), and only falls back to the mask's area for segm-only results.
          const double area = dt[i]->bbox[2] * dt[i]->bbox[3];
          for (int t = 0; t < kThresholds; ++t)
            if (!matched[t] && (area < lo || area > hi)) ignored[t] = true;
          e.scores.push_back(dt[i]->score);
          e.matched.push_back(matched);
          e.ignored.push_back(ignored);
        }
        evals[k][a].push_back(std::move(e));
      }
    }
  }
  // accumulate: precision[t][k][a] at 101 recall points; -1 where a category has no ground truth.
  std::vector<std::array<std::array<std::vector<double>, 4>, kThresholds>> precision(categories.size());
  for (size_t k = 0; k < categories.size(); ++k)
    for (size_t a = 0; a < kAreaRanges.size(); ++a) {
      struct Row {
        double score;
        std::array<bool, kThresholds> matched, ignored;
      };
      std::vector<Row> rows;
      int64_t npig = 0;
      for (const auto& e : evals[k][a]) {
        npig += e.gt_not_ignored;
        for (size_t i = 0; i < e.scores.size(); ++i) rows.push_back({e.scores[i], e.matched[i], e.ignored[i]});
      }
      std::stable_sort(rows.begin(), rows.end(), [](const Row& x, const Row& y) { return x.score > y.score; });
      for (int t = 0; t < kThresholds; ++t) {
        auto& q = precision[k][t][a];
        if (npig == 0) {
          q.assign(kRecallPoints, -1.0);
          continue;
        }
        std::vector<double> rc, pr;
        double tp = 0, fp = 0;
        for (const Row& r : rows) {
          if (r.ignored[t]) continue;
          (r.matched[t] ? tp : fp) += 1;
          rc.push_back(tp / static_cast<double>(npig));
          pr.push_back(tp / (fp + tp + std::numeric_limits<double>::epsilon()));
        }
        for (size_t i = pr.size(); i-- > 1;) pr[i - 1] = std::max(pr[i - 1], pr[i]);
        q.assign(kRecallPoints, 0.0);
        for (int r = 0; r < kRecallPoints; ++r) {
          const double recall = linspace(0.0, 1.0, kRecallPoints, r);
          const auto pos = std::lower_bound(rc.begin(), rc.end(), recall);  // searchsorted(side='left')
          if (pos != rc.end()) q[r] = pr[static_cast<size_t>(pos - rc.begin())];
        }
      }
    }
  // summarize: mean over the valid entries.
  const auto mean_ap = [&](int t_only, size_t a) {
    double sum = 0;
    int64_t n = 0;
    for (size_t k = 0; k < categories.size(); ++k)
      for (int t = 0; t < kThresholds; ++t) {
        if (t_only >= 0 && t != t_only) continue;
        for (double v : precision[k][t][a])
          if (v > -1) sum += v, ++n;
      }
    return n ? sum / static_cast<double>(n) : -1.0;
  };
  CocoEvalResult result;
  result.stats = {mean_ap(-1, 0), mean_ap(0, 0), mean_ap(5, 0), mean_ap(-1, 1), mean_ap(-1, 2), mean_ap(-1, 3)};
  return result;
}

}  // namespace mrcnn::detection
