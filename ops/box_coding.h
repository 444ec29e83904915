// Box decoding (torchvision's BoxCoder.decode_single for one box), clipping, the small-box test and
// the RPN's rule for one proposal candidate, as per-element bodies that the CPU (ops/boxes.cpp,
// maskrcnn/box_coder.cpp) and the CUDA kernel (cuda/boxes.cu) share, so both devices decode the
// same bits. Both sides are compiled without FMA contraction (torchvision rounds every product and
// sum), and exp is taken in double and rounded to float: glibc's expf and CUDA's expf differ in
// the last bit now and then, while a double exp rounded to float is the correctly rounded value on
// both (short of a double within an ulp of a float rounding boundary, about one in 2^28).
#pragma once
#include <cmath>
#include <cstdint>

#include "cuda/host_device.h"

namespace mrcnn {

// The coder's weights and the clamp of dw and dh (log(1000 / 16) in torchvision), in float32.
struct BoxCoding {
  float wx = 1, wy = 1, ww = 1, wh = 1;
  float clip = 4.135166556742356f;
};

// The RPN's per-candidate rule: decode with `coding`, clip to the image, score = sigmoid(logit), and
// keep the candidate when both sides are >= min_size and the score >= score_thresh.
struct ProposalRule {
  BoxCoding coding;
  float min_size = 1e-3f;
  float score_thresh = 0.0f;
};

MRCNN_HD inline float exp_correctly_rounded(float x) { return static_cast<float>(::exp(static_cast<double>(x))); }

// `code` (dx, dy, dw, dh) applied to `box` (x1, y1, x2, y2), into out, in torchvision's operation order.
MRCNN_HD inline void decode_box(const float* box, const float* code, const BoxCoding& c, float* out) {
  const float width = box[2] - box[0], height = box[3] - box[1];
  const float ctr_x = box[0] + 0.5f * width, ctr_y = box[1] + 0.5f * height;
  const float dx = code[0] / c.wx, dy = code[1] / c.wy;
  const float dw_raw = code[2] / c.ww, dh_raw = code[3] / c.wh;
  const float dw = c.clip < dw_raw ? c.clip : dw_raw, dh = c.clip < dh_raw ? c.clip : dh_raw;  // std::min's rule
  const float pred_x = dx * width + ctr_x, pred_y = dy * height + ctr_y;
  const float half_w = 0.5f * (exp_correctly_rounded(dw) * width), half_h = 0.5f * (exp_correctly_rounded(dh) * height);
  out[0] = pred_x - half_w;
  out[1] = pred_y - half_h;
  out[2] = pred_x + half_w;
  out[3] = pred_y + half_h;
}

// std::clamp(v, 0, hi): NaN stays NaN.
MRCNN_HD inline float clamp_to(float v, float hi) { return v < 0.0f ? 0.0f : (hi < v ? hi : v); }

// Clip (x1, y1, x2, y2) to [0, width] x [0, height] in place (torchvision.ops.clip_boxes_to_image).
MRCNN_HD inline void clip_box(float* box, float height, float width) {
  box[0] = clamp_to(box[0], width);
  box[1] = clamp_to(box[1], height);
  box[2] = clamp_to(box[2], width);
  box[3] = clamp_to(box[3], height);
}

// remove_small_boxes's test for one box.
MRCNN_HD inline bool box_large_enough(const float* box, float min_size) {
  return box[2] - box[0] >= min_size && box[3] - box[1] >= min_size;
}

// One RPN candidate: its box (decoded from anchor and delta, clipped) and score into box and *score;
// returns whether it passes the size and score tests.
MRCNN_HD inline bool decode_proposal(const float* anchor, const float* delta, float logit, float height, float width,
                                     const ProposalRule& rule, float* box, float* score) {
  decode_box(anchor, delta, rule.coding, box);
  clip_box(box, height, width);
  *score = 1.0f / (1.0f + exp_correctly_rounded(-logit));
  return box_large_enough(box, rule.min_size) && *score >= rule.score_thresh;
}

// Which anchor each candidate column decodes: columns are cut into levels (per-level top-k, level by
// level), level l ending before column end[l] and numbering its anchors from first_anchor[l]. Passed
// by value to the CUDA kernel, hence the fixed size (an FPN has five levels).
constexpr int kMaxProposalLevels = 8;
struct ProposalColumns {
  int levels = 0;
  int64_t end[kMaxProposalLevels] = {};
  int64_t first_anchor[kMaxProposalLevels] = {};
};

// The anchor that candidate column `column` decodes, `within` its level (top-k's index there).
MRCNN_HD inline int64_t proposal_anchor(const ProposalColumns& levels, int64_t column, int64_t within) {
  int level = 0;
  while (level + 1 < levels.levels && column >= levels.end[level]) ++level;
  return levels.first_anchor[level] + within;
}

// Candidate r of N images x `columns` (row-major): its anchor is proposal_anchor's, its deltas row
// image * anchor_count + anchor; image sizes are (height, width) pairs. An anchor outside
// [0, anchor_count) (not from top-k) gives an invalid, zero box instead of reading out of bounds.
// Writes boxes[4r ..], scores[r] and valid[r].
MRCNN_HD inline void proposal_candidate(int64_t r, int64_t columns, int64_t anchor_count, const ProposalColumns& levels,
                                        const float* anchors, const float* deltas, const float* logits, const int64_t* within,
                                        const float* image_sizes, const ProposalRule& rule, float* boxes, float* scores,
                                        uint8_t* valid) {
  const int64_t image = r / columns;
  const int64_t anchor = proposal_anchor(levels, r % columns, within[r]);
  if (anchor < 0 || anchor >= anchor_count) {
    for (int k = 0; k < 4; ++k) boxes[4 * r + k] = 0.0f;
    scores[r] = 0.0f;
    valid[r] = 0;
    return;
  }
  valid[r] = decode_proposal(anchors + 4 * anchor, deltas + 4 * (image * anchor_count + anchor), logits[r],
                             image_sizes[2 * image], image_sizes[2 * image + 1], rule, boxes + 4 * r, scores + r);
}

}  // namespace mrcnn
