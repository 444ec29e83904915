// box_area, box_iou, nms, batched_nms: hand-computed cases, torchvision's tie and threshold rules,
// the greedy invariants on random boxes, and agreement of batched_nms's two strategies.
#include <algorithm>
#include <cmath>
#include <set>

#include "ops/boxes.h"
#include "ops/nms_kernels.h"
#include "ops/sort.h"
#include "tests/helpers.h"

using namespace mrcnn;

namespace {

Tensor boxes_of(const std::vector<double>& v) { return from_vector<double>(v, {static_cast<int64_t>(v.size() / 4), 4}); }
std::vector<int64_t> indices(const Tensor& t) { return to_vector<int64_t>(t); }

// n random boxes in a 100x100 image, sides 5..40; scores uniform.
void random_boxes(int64_t n, uint64_t seed, Tensor& boxes, Tensor& scores) {
  Generator g(seed);
  const Tensor xy = rand({n, 2}, kFloat64, kCPU, &g), wh = rand({n, 2}, kFloat64, kCPU, &g);
  const Tensor lo = ops::mul(xy, 60.0), size = ops::add(ops::mul(wh, 35.0), 5.0);
  boxes = ops::cat({lo, ops::add(lo, size)}, 1);
  scores = rand({n}, kFloat64, kCPU, &g);
}

// The GPU's bitmask NMS (cuda/boxes.cu) replayed on the CPU with its own bodies: a mask word per
// (box, later column block), then the reduction block by block, boxes whose `valid` entry is 0 (if
// given) removed from the start. Returns kept positions in visiting order.
std::vector<int64_t> bitmask_nms(const std::vector<double>& visited_boxes, double threshold, const std::vector<uint8_t>& valid = {}) {
  const int64_t n = static_cast<int64_t>(visited_boxes.size() / 4), blocks = nms_column_blocks(n);
  std::vector<uint64_t> mask(static_cast<size_t>(n * blocks), 0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = i / kNmsBlock; c < blocks; ++c)
      mask[i * blocks + c] = nms_suppressed_bits(&visited_boxes[4 * i], &visited_boxes[4 * c * kNmsBlock],
                                                 c == i / kNmsBlock ? i % kNmsBlock + 1 : 0,
                                                 std::min<int64_t>(kNmsBlock, n - c * kNmsBlock), threshold);
  std::vector<uint64_t> removed(static_cast<size_t>(blocks), 0);
  for (int64_t w = 0; w < blocks; ++w) removed[w] = nms_excluded_bits(valid.empty() ? nullptr : valid.data(), nullptr, 0, n, w);
  std::vector<int64_t> keep;
  for (int64_t block = 0; block < blocks; ++block) {
    const int64_t base = block * kNmsBlock, size = std::min<int64_t>(kNmsBlock, n - base);
    std::vector<uint64_t> diagonal;
    for (int64_t j = 0; j < size; ++j) diagonal.push_back(mask[(base + j) * blocks + block]);
    int kept_rows[kNmsBlock];
    const int kept = nms_kept_rows(nms_resolve_block(diagonal.data(), ~removed[block] & nms_low_bits(size)), kept_rows);
    for (int k = 0; k < kept; ++k) keep.push_back(base + kept_rows[k]);
    // The GPU's threads take the pairs in no fixed order: last to first here.
    const int words = static_cast<int>(blocks - block - 1);
    for (int p = kept * words - 1; p >= 0; --p) {
      const NmsRemoval r = nms_removal_of(p, words, block + 1);
      removed[r.word] |= mask[(base + kept_rows[r.kept_index]) * blocks + r.word];
    }
  }
  return keep;
}

}  // namespace

TEST_CASE("box_area and box_iou: values") {
  const Tensor a = boxes_of({0, 0, 2, 2, 1, 1, 3, 4});
  CHECK(test::values(ops::box_area(a)) == std::vector<double>{4, 6});
  const Tensor b = boxes_of({1, 1, 3, 3, 10, 10, 11, 11});
  // (0,0,2,2) vs (1,1,3,3): inter 1, union 7. (1,1,3,4) vs (1,1,3,3): inter 4, union 6.
  CHECK(test::values(ops::box_iou(a, b)) == std::vector<double>{1.0 / 7, 0, 4.0 / 6, 0});
  CHECK(ops::box_iou(a, empty({0, 4}, kFloat64)).sizes() == Shape{2, 0});
}

TEST_CASE("nms: greedy suppression, ties and the strict threshold") {
  // Box 1 overlaps box 0 with IoU 0.5 exactly (not suppressed at 0.5, suppressed at 0.49);
  // box 2 is far away. Scores tie between 0 and 2: the lower index comes first.
  const Tensor b = boxes_of({0, 0, 4, 3, 0, 0, 2, 3, 10, 10, 12, 12});
  const Tensor s = from_vector<double>({0.9, 0.8, 0.9}, {3});
  CHECK(indices(ops::nms(b, s, 0.5)) == std::vector<int64_t>{0, 2, 1});
  CHECK(indices(ops::nms(b, s, 0.49)) == std::vector<int64_t>{0, 2});
  CHECK(ops::nms(empty({0, 4}, kFloat64), empty({0}, kFloat64), 0.5).sizes() == Shape{0});
}

TEST_CASE("nms: greedy invariants on random boxes") {
  Tensor b, s;
  random_boxes(300, 901, b, s);
  const auto keep = indices(ops::nms(b, s, 0.3));
  const auto iou = test::values(ops::box_iou(b, b));
  const auto score = test::values(s);
  std::set<int64_t> kept(keep.begin(), keep.end());
  for (size_t i = 1; i < keep.size(); ++i) CHECK(score[keep[i - 1]] >= score[keep[i]]);
  for (int64_t i : keep)
    for (int64_t j : keep)
      if (i != j) CHECK(iou[i * 300 + j] <= 0.3);
  // Every dropped box overlaps a kept box that scores higher.
  for (int64_t j = 0; j < 300; ++j) {
    if (kept.count(j)) continue;
    bool covered = false;
    for (int64_t i : keep) covered = covered || (score[i] > score[j] && iou[i * 300 + j] > 0.3);
    CHECK(covered);
  }
}

TEST_CASE("nms: the GPU's bitmask bodies, replayed on the CPU, keep the greedy NMS's boxes") {
  // Sizes around the 64-box blocks: one box, a full block, a block and one, several with a partial last.
  for (const int64_t n : {1, 63, 64, 65, 300, 1000}) {
    Tensor b, s;
    random_boxes(n, 910 + static_cast<uint64_t>(n), b, s);
    const auto order = indices(ops::sort(s, 0, /*descending=*/true).indices);
    const auto box = test::values(b);
    std::vector<double> visited;
    for (int64_t i : order) visited.insert(visited.end(), box.begin() + 4 * i, box.begin() + 4 * i + 4);
    for (const double threshold : {0.0, 0.3, 0.7}) {
      CAPTURE(n);
      CAPTURE(threshold);
      std::vector<int64_t> kept;
      for (int64_t position : bitmask_nms(visited, threshold)) kept.push_back(order[position]);
      const auto expected = indices(ops::nms(b, s, threshold));
      CHECK(kept == expected);
      if (n == 300) CHECK(expected.size() < (threshold == 0.7 ? 300u : 150u));  // suppression happened
    }
  }
}

TEST_CASE("nms: the GPU's bitmask bodies with excluded boxes keep the greedy NMS's boxes among the rest") {
  for (const int64_t n : {1, 64, 65, 300, 1000}) {
    Tensor b, s;
    random_boxes(n, 950 + static_cast<uint64_t>(n), b, s);
    const auto box = test::values(b);
    std::vector<uint8_t> valid(static_cast<size_t>(n));
    Generator g(960 + static_cast<uint64_t>(n));
    const auto u = test::values(rand({n}, kFloat64, kCPU, &g));
    for (int64_t i = 0; i < n; ++i) valid[i] = u[i] < 0.7;
    valid[0] = n == 1 ? 0 : valid[0];  // one box, excluded: nothing kept
    // Rows in visiting order (as per-level top-k leaves them); the reference runs on the valid rows only.
    std::vector<double> valid_boxes;
    std::vector<int64_t> valid_rows;
    for (int64_t i = 0; i < n; ++i)
      if (valid[i]) valid_boxes.insert(valid_boxes.end(), box.begin() + 4 * i, box.begin() + 4 * i + 4), valid_rows.push_back(i);
    for (const double threshold : {0.0, 0.5}) {
      CAPTURE(n);
      CAPTURE(threshold);
      std::vector<int64_t> expected;
      if (!valid_rows.empty()) {
        const int64_t m = static_cast<int64_t>(valid_rows.size());
        const Tensor descending = ops::neg(from_vector(std::vector<double>(valid_rows.begin(), valid_rows.end()), {m}));
        for (const int64_t k : indices(ops::nms(from_vector(valid_boxes, {m, 4}), descending, threshold))) expected.push_back(valid_rows[k]);
      }
      CHECK(bitmask_nms(box, threshold, valid) == expected);
      if (n == 1) CHECK(expected.empty());
    }
  }
}

TEST_CASE("batched_nms: categories never suppress each other, both strategies agree") {
  const Tensor b = boxes_of({0, 0, 4, 4, 0, 0, 4, 4, 0, 0, 4, 4});
  const Tensor s = from_vector<double>({0.5, 0.9, 0.7}, {3});
  CHECK(indices(ops::batched_nms(b, s, from_vector<int64_t>({0, 1, 0}, {3}), 0.5)) == std::vector<int64_t>{1, 2});
  CHECK(ops::batched_nms(empty({0, 4}), empty({0}), empty({0}, kInt64), 0.5).sizes() == Shape{0});
  // 1200 boxes (> 1000: per-category path) against the per-category reference, and a 900-box
  // prefix (coordinate-offset path) against the same reference.
  Tensor boxes, scores;
  random_boxes(1200, 902, boxes, scores);
  std::vector<int64_t> cats(1200);
  for (int64_t i = 0; i < 1200; ++i) cats[i] = (i * 7) % 3;
  for (const int64_t n : {1200, 900}) {
    CAPTURE(n);
    const Tensor bn = ops::narrow(boxes, 0, 0, n), sn = ops::narrow(scores, 0, 0, n);
    const Tensor cn = from_vector<int64_t>(std::vector<int64_t>(cats.begin(), cats.begin() + n), {n});
    std::vector<int64_t> expected;
    for (int64_t c = 0; c < 3; ++c) {
      std::vector<int64_t> members;
      for (int64_t i = 0; i < n; ++i)
        if (cats[i] == c) members.push_back(i);
      const Tensor idx = from_vector<int64_t>(members, {static_cast<int64_t>(members.size())});
      for (int64_t k : indices(ops::nms(ops::index_select(bn, 0, idx), ops::index_select(sn, 0, idx), 0.4)))
        expected.push_back(members[k]);
    }
    const auto score = test::values(sn);
    std::stable_sort(expected.begin(), expected.end(), [&](int64_t x, int64_t y) { return score[x] > score[y]; });
    CHECK(indices(ops::batched_nms(bn, sn, cn, 0.4)) == expected);
  }
}

TEST_CASE("batched_nms_each: equals one batched_nms per problem, both strategies, empty problems") {
  // Problems of 1500 (per-category), 800 (coordinate offsets), 0 and 1 boxes; float32 with tied
  // scores (quantised) so the order of ties matters.
  std::vector<ops::NmsProblem> problems;
  uint64_t seed = 903;
  for (const int64_t n : {1500, 800, 0, 1}) {
    Tensor b, s;
    random_boxes(n, seed++, b, s);
    s = ops::div(ops::to(ops::to(ops::mul(s, 40.0), kInt64), kFloat64), 40.0);
    std::vector<int64_t> cats(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) cats[i] = (i * 5) % 4;
    problems.push_back({ops::to(b, kFloat32), ops::to(s, kFloat32), from_vector<int64_t>(cats, {n})});
  }
  for (const double threshold : {0.3, 0.6}) {
    CAPTURE(threshold);
    const std::vector<Tensor> together = ops::batched_nms_each(problems, threshold, kCPU);
    REQUIRE(together.size() == problems.size());
    for (size_t p = 0; p < problems.size(); ++p) {
      CAPTURE(p);
      CHECK(together[p].device() == kCPU);
      CHECK(indices(together[p]) ==
            indices(ops::batched_nms(problems[p].boxes, problems[p].scores, problems[p].idxs, threshold)));
    }
    CHECK(together[0].numel() > 100);
    CHECK(together[2].numel() == 0);
    CHECK(indices(together[3]) == std::vector<int64_t>{0});
  }
  CHECK(ops::batched_nms_each({}, 0.5, kCPU).empty());
  // Non-contiguous boxes (a transposed copy viewed back): the same result.
  const Tensor strided = ops::transpose(ops::contiguous(ops::transpose(problems[0].boxes, 0, 1)), 0, 1);
  CHECK(!strided.is_contiguous());
  CHECK(indices(ops::batched_nms_each({{strided, problems[0].scores, problems[0].idxs}}, 0.6, kCPU)[0]) ==
        indices(ops::batched_nms(problems[0].boxes, problems[0].scores, problems[0].idxs, 0.6)));
  // Nothing to suppress: no device work at all (this runs without a GPU too).
  const std::vector<Tensor> none = ops::batched_nms_each({problems[2], problems[2]}, 0.5, kCUDA);
  CHECK((none.size() == 2 && none[0].numel() == 0 && none[1].numel() == 0));
  CHECK(test::error_of([&] {
          ops::batched_nms_each({problems[3], {ops::to(problems[3].boxes, kFloat64), ops::to(problems[3].scores, kFloat64),
                                               problems[3].idxs}},
                                0.5, kCPU);
        }) == "batched_nms: every problem's boxes must be float32, got float64");
}

TEST_CASE("decode_proposals: anchors by level, decode, clip, sigmoid, the size and score rule") {
  // Six anchors: the first level numbers 0-3, the second 4-5. Two images, two columns of the first
  // level and one of the second.
  const Tensor anchors = from_vector<float>({0, 0, 10, 10, 10, 10, 30, 30, 5, 5, 6, 6, 0, 0, 100, 100, 20, 20, 40, 40, 50, 50, 90, 70}, {6, 4});
  std::vector<float> delta_rows(2 * 6 * 4, 0.0f);
  auto set_delta = [&](int64_t image, int64_t anchor, std::vector<float> d) {
    std::copy(d.begin(), d.end(), delta_rows.begin() + 4 * (image * 6 + anchor));
  };
  set_delta(0, 0, {0.1f, -0.2f, std::log(2.0f), 0.0f});
  set_delta(1, 2, {0.0f, 0.0f, -10.0f, 0.0f});
  set_delta(1, 4, {0.0f, 0.0f, 10.0f, 10.0f});  // clamped to log(1000 / 16)
  const Tensor deltas = from_vector(delta_rows, {12, 4});
  const Tensor logits = from_vector<float>({2, 1, 0, -1, 3, -3}, {2, 3});
  const Tensor within = from_vector<int64_t>({1, 0, 1, 2, 3, 0}, {2, 3});
  const std::vector<ops::ProposalLevel> levels{{2, 0}, {1, 4}};
  const std::vector<std::pair<int64_t, int64_t>> sizes{{50, 60}, {30, 40}};
  ProposalRule rule;
  rule.score_thresh = 0.05f;
  const auto c = ops::decode_proposals(anchors, deltas, logits, within, levels, sizes, rule);
  REQUIRE(c.boxes.sizes() == Shape{6, 4});
  const std::vector<double> expected_boxes{
      10, 10, 30, 30,  // image 0: anchor 1 unchanged
      0,  0,  16, 8,   // anchor 0 moved by (1, -2), twice as wide: (-4, -2, 16, 8) clipped
      50, 50, 60, 50,  // second level: anchor 4 + 1 clipped to 60 x 50, zero height
      5.5 - 0.5 * std::exp(-10.0), 5, 5.5 + 0.5 * std::exp(-10.0), 6,  // image 1: anchor 2 shrunk to exp(-10) wide
      0,  0,  40, 30,  // anchor 3 clipped to 40 x 30
      0,  0,  40, 30};  // anchor 4 blown up 62.5 times, clipped
  const auto boxes = test::values(c.boxes);
  for (size_t i = 0; i < boxes.size(); ++i) CHECK(boxes[i] == doctest::Approx(expected_boxes[i]).epsilon(1e-6));
  const auto scores = test::values(c.scores);
  const std::vector<double> logit{2, 1, 0, -1, 3, -3};
  for (size_t i = 0; i < scores.size(); ++i) CHECK(scores[i] == doctest::Approx(1.0 / (1.0 + std::exp(-logit[i]))).epsilon(1e-6));
  // Zero height, 4.5e-5 wide (under 1e-3), and a score of 0.047 under the 0.05 threshold are out.
  CHECK(to_vector<uint8_t>(c.valid) == std::vector<uint8_t>{1, 1, 0, 0, 1, 0});

  CHECK(test::error_of([&] { ops::decode_proposals(anchors, deltas, logits, from_vector<int64_t>({1, 0, 2, 2, 3, 0}, {2, 3}), levels, sizes, rule); }) ==
        "decode_proposals: candidate 2 picks anchor 6 of 6");
  CHECK(test::error_of([&] { ops::decode_proposals(anchors, deltas, logits, within, {{2, 0}}, sizes, rule); }) ==
        "decode_proposals: the levels take 2 columns, the logits have 3");
  CHECK(test::error_of([&] { ops::decode_proposals(anchors, ops::narrow(deltas, 0, 0, 6), logits, within, levels, sizes, rule); }) ==
        "decode_proposals: deltas must be float32 [12, 4] (one row per image and anchor), got [6, 4]");
  const auto none = ops::decode_proposals(anchors, deltas, empty({2, 0}), empty({2, 0}, kInt64), {{0, 0}}, sizes, rule);
  CHECK(none.boxes.sizes() == Shape{0, 4});
}

TEST_CASE("nms_in_order: greedy NMS over each segment's valid rows, in row order") {
  Tensor b, s;
  random_boxes(700, 970, b, s);
  Generator g(971);
  const Tensor valid = ops::lt(rand({700}, kFloat64, kCPU, &g), 0.8);
  const auto take = to_vector<uint8_t>(valid);
  const std::vector<int64_t> offsets{0, 250, 250, 700};
  for (const DType dt : {kFloat64, kFloat32}) {
    const Tensor boxes = ops::to(b, dt);
    const auto kept = ops::nms_in_order(boxes, valid, offsets, 0.5);
    REQUIRE(kept.size() == 3);
    CHECK(kept[1].empty());
    for (size_t seg = 0; seg < 3; ++seg) {
      std::vector<int64_t> rows;
      for (int64_t r = offsets[seg]; r < offsets[seg + 1]; ++r)
        if (take[r]) rows.push_back(r);
      std::vector<int64_t> expected;
      if (!rows.empty()) {
        const Tensor idx = from_vector(rows, {static_cast<int64_t>(rows.size())});
        const Tensor row_order = ops::neg(ops::to(idx, dt));  // visiting order = row order
        for (const int64_t k : indices(ops::nms(ops::index_select(boxes, 0, idx), row_order, 0.5))) expected.push_back(rows[k]);
        std::sort(expected.begin(), expected.end());
      }
      CAPTURE(seg);
      CHECK(kept[seg] == expected);
      if (seg == 2) CHECK(expected.size() < rows.size());  // suppression happened
    }
  }
  CHECK(test::error_of([&] { ops::nms_in_order(b, valid, {0, 300}, 0.5); }) == "nms_in_order: segment offsets must run from 0 to 700");
  CHECK(test::error_of([&] { ops::nms_in_order(b, ops::narrow(valid, 0, 0, 5), {0, 700}, 0.5); }) ==
        "nms_in_order: valid must be a bool vector of 700 elements (one per box)");
}

TEST_CASE("cuda: decode_proposals and nms_in_order match the CPU bit for bit") {
  if (test::setup_cuda_or_skip("proposal decoding and in-order NMS on CUDA")) return;
  // Two images, three levels of top-k columns (1500, 400, 100) over 6000 anchors; deltas wide
  // enough that some boxes clip, shrink below the minimum size, or hit the dw clamp.
  Generator g(980);
  const int64_t images = 2, anchor_count = 6000;
  const Tensor corner = ops::mul(rand({anchor_count, 2}, kFloat32, kCPU, &g), 180.0f);
  const Tensor side = ops::add(ops::mul(rand({anchor_count, 2}, kFloat32, kCPU, &g), 60.0f), 2.0f);
  const Tensor anchors = ops::contiguous(ops::cat({corner, ops::add(corner, side)}, 1));
  const Tensor deltas = ops::mul(randn({images * anchor_count, 4}, kFloat32, kCPU, &g), 2.0f);
  const std::vector<ops::ProposalLevel> levels{{1500, 0}, {400, 4000}, {100, 5500}};
  std::vector<int64_t> within_rows;
  for (int64_t i = 0; i < images; ++i)
    for (const auto& [columns, first] : std::vector<std::pair<int64_t, int64_t>>{{1500, 4000}, {400, 1500}, {100, 500}})
      for (int64_t j = 0; j < columns; ++j) within_rows.push_back((j * 7919 + i * 13) % first);
  const Tensor within = from_vector(within_rows, {images, 2000});
  const Tensor logits = ops::mul(randn({images, 2000}, kFloat32, kCPU, &g), 4.0f);
  const std::vector<std::pair<int64_t, int64_t>> sizes{{200, 180}, {150, 200}};
  ProposalRule rule;
  rule.min_size = 1.0f;
  rule.score_thresh = 0.01f;
  const auto on_cpu = ops::decode_proposals(anchors, deltas, logits, within, levels, sizes, rule);
  const Device gpu = test::gpu();
  const auto on_gpu = ops::decode_proposals(ops::to(anchors, gpu), ops::to(deltas, gpu), ops::to(logits, gpu), ops::to(within, gpu),
                                            levels, sizes, rule);
  CHECK(on_gpu.boxes.device() == gpu);
  CHECK(test::bitwise_equal(on_cpu.boxes, ops::to(on_gpu.boxes, kCPU)));
  CHECK(test::bitwise_equal(on_cpu.scores, ops::to(on_gpu.scores, kCPU)));
  CHECK(test::bitwise_equal(on_cpu.valid, ops::to(on_gpu.valid, kCPU)));
  const auto valid = to_vector<uint8_t>(on_cpu.valid);
  const int64_t valid_count = std::count(valid.begin(), valid.end(), uint8_t{1});
  CHECK(valid_count > 1000);  // the rule keeps some and drops many: 2061 of 4000 on the CPU
  CHECK(valid_count < 3000);
  // Per image and level segments, as the RPN cuts them.
  std::vector<int64_t> offsets{0};
  for (int64_t i = 0; i < images; ++i)
    for (const auto& level : levels) offsets.push_back(offsets.back() + level.columns);
  for (const double threshold : {0.3, 0.7}) {
    CAPTURE(threshold);
    const auto kept_cpu = ops::nms_in_order(on_cpu.boxes, on_cpu.valid, offsets, threshold);
    const auto kept_gpu = ops::nms_in_order(on_gpu.boxes, on_gpu.valid, offsets, threshold);
    CHECK(kept_cpu == kept_gpu);
    CHECK(kept_cpu[0].size() > 100);
  }
  CHECK(ops::nms_in_order(zeros({0, 4}, kFloat32, gpu), zeros({0}, kBool, gpu), {0, 0}, 0.5).front().empty());
}

TEST_CASE("boxes: error messages") {
  CHECK(test::error_of([] { ops::box_area(zeros({3, 5})); }) ==
        "box_area: boxes must be [N, 4] rows of (x1, y1, x2, y2), got [3, 5]");
  CHECK(test::error_of([] { ops::nms(zeros({3, 4}), zeros({2}), 0.5); }) ==
        "nms: scores must be a float32 vector of 3 elements (one per box), got float32 [2]");
  CHECK(test::error_of([] { ops::batched_nms(zeros({2, 4}), zeros({2}), zeros({2}), 0.5); }) ==
        "batched_nms: idxs must be an int64 vector of 2 category indices, got float32 [2]");
}

TEST_CASE("cuda: box_area, box_iou, nms and batched_nms match the CPU") {
  if (test::setup_cuda_or_skip("box ops on CUDA")) return;
  // Random overlapping boxes in a 100 x 100 image, with tied scores: 700 boxes (batched_nms offsets
  // the categories) and 1500 (one NMS per category, side by side on the GPU).
  Generator g(7);
  const int64_t n = 1500;
  const Tensor corner = ops::mul(rand({n, 2}, kFloat64, kCPU, &g), 80.0);
  const Tensor size = ops::add(ops::mul(rand({n, 2}, kFloat64, kCPU, &g), 30.0), 1.0);
  const Tensor all_boxes = ops::cat({corner, ops::add(corner, size)}, 1);
  const Tensor all_scores = ops::div(ops::to(ops::to(ops::mul(rand({n}, kFloat64, kCPU, &g), 50.0), kInt64), kFloat64), 50.0);
  const Tensor all_classes = ops::to(ops::mul(rand({n}, kFloat64, kCPU, &g), 3.0), kInt64);
  for (const int64_t count : {700, 1500}) {
    CAPTURE(count);
    const Tensor boxes = ops::narrow(all_boxes, 0, 0, count), scores = ops::narrow(all_scores, 0, 0, count);
    const Tensor classes = ops::contiguous(ops::narrow(all_classes, 0, 0, count));
    for (const DType dt : {kFloat64, kFloat32}) {
      const Tensor b = ops::contiguous(ops::to(boxes, dt)), s = ops::contiguous(ops::to(scores, dt));
      const Tensor gb = ops::to(b, test::gpu()), gs = ops::to(s, test::gpu());
      // The same formula without fused multiply-adds on both devices: equal bits.
      CHECK(test::max_abs_diff(ops::box_area(b), ops::to(ops::box_area(gb), kCPU)) == 0.0);
      CHECK(test::max_abs_diff(ops::box_iou(b, ops::narrow(b, 0, 0, 50)), ops::to(ops::box_iou(gb, ops::narrow(gb, 0, 0, 50)), kCPU)) ==
            0.0);
      for (const double threshold : {0.3, 0.5, 0.7}) {
        CAPTURE(threshold);
        const Tensor kept = ops::nms(gb, gs, threshold);
        CHECK(kept.device() == test::gpu());
        CHECK(test::values(ops::nms(b, s, threshold)) == test::values(kept));
        const Tensor expected = ops::batched_nms(b, s, classes, threshold);
        const Tensor device_kept = ops::batched_nms(gb, gs, ops::to(classes, test::gpu()), threshold);
        CHECK(device_kept.device() == test::gpu());
        CHECK(test::values(expected) == test::values(device_kept));
        CHECK(test::values(expected) == test::values(ops::batched_nms(gb, gs, classes, threshold)));  // host categories
        const Tensor strided = ops::transpose(ops::contiguous(ops::transpose(gb, 0, 1)), 0, 1);  // [n, 4], strides (1, n)
        CHECK(!strided.is_contiguous());
        CHECK(test::values(expected) == test::values(ops::batched_nms(strided, gs, classes, threshold)));
        CHECK(test::values(ops::nms(b, s, threshold)) == test::values(ops::nms(strided, gs, threshold)));
      }
    }
  }
  // Several problems at once on the GPU (one launch, one wait) equal the CPU's, empty ones included.
  std::vector<ops::NmsProblem> problems;
  for (const int64_t first : {0, 300, 700}) {
    const int64_t count = first == 700 ? 800 : first == 300 ? 0 : 1200;
    problems.push_back({ops::to(ops::narrow(all_boxes, 0, first, count), kFloat32), ops::to(ops::narrow(all_scores, 0, first, count), kFloat32),
                        ops::contiguous(ops::narrow(all_classes, 0, first, count))});
  }
  const std::vector<Tensor> on_cpu = ops::batched_nms_each(problems, 0.5, kCPU);
  const std::vector<Tensor> on_gpu = ops::batched_nms_each(problems, 0.5, test::gpu());
  REQUIRE(on_gpu.size() == 3);
  for (size_t p = 0; p < 3; ++p) {
    CHECK(on_gpu[p].device() == kCPU);
    CHECK(test::values(on_cpu[p]) == test::values(on_gpu[p]));
  }
  CHECK(on_gpu[0].numel() > 100);
  CHECK(ops::nms(zeros({0, 4}, kFloat32, test::gpu()), zeros({0}, kFloat32, test::gpu()), 0.5).numel() == 0);
  CHECK(ops::batched_nms(zeros({0, 4}, kFloat32, test::gpu()), zeros({0}, kFloat32, test::gpu()), zeros({0}, kInt64, test::gpu()), 0.5).numel() == 0);
}
