// pycocotools' maskApi.c rules (rleEncode, rleToString, rleFrString) in C++.
#include "maskrcnn/rle.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "tensor/error.h"

namespace mrcnn::detection {

Rle rle_encode(const uint8_t* mask, int64_t height, int64_t width) {
  Rle rle{height, width, {}};
  uint8_t current = 0;
  uint32_t run = 0;
  for (int64_t x = 0; x < width; ++x)
    for (int64_t y = 0; y < height; ++y) {
      const uint8_t v = mask[y * width + x] != 0;
      if (v != current) {
        rle.counts.push_back(run);
        run = 0;
        current = v;
      }
      ++run;
    }
  rle.counts.push_back(run);
  return rle;
}

std::vector<uint8_t> rle_decode(const Rle& rle) {
  const int64_t height = rle.height, width = rle.width, pixels = height * width;
  std::vector<uint8_t> mask(static_cast<size_t>(pixels), 0);
  int64_t position = 0;
  for (size_t i = 0; i < rle.counts.size(); ++i) {
    const int64_t run = rle.counts[i];
    check(run <= pixels - position, "RLE: runs exceed the ", height, "x", width, " mask");
    // Runs alternate zeros, ones, ...: only the ones are written, a column piece at a time (a
    // division per pixel made decoding the truth ~10% of an eval run).
    if (i % 2 == 1)
      for (int64_t p = position, end = position + run; p < end;) {
        const int64_t x = p / height, y = p % height, n = std::min(end - p, height - y);
        uint8_t* dst = mask.data() + y * width + x;
        for (int64_t k = 0; k < n; ++k) dst[k * width] = 1;
        p += n;
      }
    position += run;
  }
  return mask;
}

std::string rle_to_string(const Rle& rle) {
  std::string s;
  for (size_t i = 0; i < rle.counts.size(); ++i) {
    int64_t x = rle.counts[i];
    if (i > 2) x -= static_cast<int64_t>(rle.counts[i - 2]);
    bool more = true;
    while (more) {
      int64_t c = x & 0x1f;
      x >>= 5;  // arithmetic shift, as in maskApi.c
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) c |= 0x20;
      s.push_back(static_cast<char>(c + 48));
    }
  }
  return s;
}

Rle rle_from_string(const std::string& counts, int64_t height, int64_t width) {
  Rle rle{height, width, {}};
  size_t p = 0;
  int64_t total = 0;
  while (p < counts.size()) {
    int64_t x = 0, k = 0;
    bool more = true;
    while (more) {
      check(p < counts.size(), "RLE: string ends inside a run");
      const int64_t c = static_cast<int64_t>(counts[p]) - 48;
      check(c >= 0 && c < 64, "RLE: invalid character '", counts[p], "'");
      check(k < 7, "RLE: run value too long");
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) != 0;
      ++p, ++k;
      if (!more && (c & 0x10)) x |= static_cast<int64_t>(~uint64_t{0} << (5 * k));  // sign-extend
    }
    const size_t m = rle.counts.size();
    if (m > 2) x += static_cast<int64_t>(rle.counts[m - 2]);
    check(x >= 0 && total + x <= height * width, "RLE: runs exceed the ", height, "x", width, " mask");
    total += x;
    rle.counts.push_back(static_cast<uint32_t>(x));
  }
  check(total == height * width, "RLE: runs cover ", total, " pixels of a ", height, "x", width, " mask");
  return rle;
}

int64_t rle_area(const Rle& rle) {
  int64_t area = 0;
  for (size_t i = 1; i < rle.counts.size(); i += 2) area += rle.counts[i];
  return area;
}

Rle rle_from_polygon(const std::vector<double>& xy, int64_t height, int64_t width) {
  check(xy.size() >= 6 && xy.size() % 2 == 0, "polygon: needs at least 3 (x, y) points, got ", xy.size(), " numbers");
  constexpr double kScale = 5;  // sub-pixel resolution of the outline walk
  const size_t k = xy.size() / 2;
  std::vector<int64_t> px(k + 1), py(k + 1);
  // Coordinates are bounded first: the walk below takes one step per 1/5 pixel of each edge.
  const double limit = 4.0 * static_cast<double>(std::max<int64_t>({height, width, 1}));
  for (double c : xy) check(c >= -limit && c <= limit, "polygon: vertex coordinate ", c, " is far outside the ", width, "x", height, " image");
  for (size_t j = 0; j < k; ++j) {
    px[j] = static_cast<int64_t>(kScale * xy[2 * j] + 0.5);  // C's (int) cast: truncation toward zero
    py[j] = static_cast<int64_t>(kScale * xy[2 * j + 1] + 0.5);
  }
  px[k] = px[0], py[k] = py[0];
  // Every outline point, walking each edge one step at a time along its longer axis.
  std::vector<int64_t> u, v;
  for (size_t j = 0; j < k; ++j) {
    int64_t xs = px[j], xe = px[j + 1], ys = py[j], ye = py[j + 1];
    const int64_t dx = std::llabs(xe - xs), dy = std::llabs(ys - ye);
    const bool flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
    if (flip) std::swap(xs, xe), std::swap(ys, ye);
    // A repeated vertex (dx = dy = 0) gives pycocotools 0/0 = NaN here and an (int)NaN outline
    // point; that point sits between two of the same column and is never read, so slope 0 (a
    // defined value) gives the same mask without the undefined conversion.
    const double slope = dx == 0 && dy == 0 ? 0.0
                         : dx >= dy         ? static_cast<double>(ye - ys) / static_cast<double>(dx)
                                            : static_cast<double>(xe - xs) / static_cast<double>(dy);
    const int64_t steps = std::max(dx, dy);
    for (int64_t d = 0; d <= steps; ++d) {
      const int64_t t = flip ? steps - d : d;
      if (dx >= dy) u.push_back(t + xs), v.push_back(static_cast<int64_t>(static_cast<double>(ys) + slope * static_cast<double>(t) + 0.5));
      else v.push_back(t + ys), u.push_back(static_cast<int64_t>(static_cast<double>(xs) + slope * static_cast<double>(t) + 0.5));
    }
  }
  // Where the outline crosses a pixel-centre column, the first pixel at or below the crossing toggles.
  std::vector<uint64_t> toggles;
  for (size_t j = 1; j < u.size(); ++j) {
    if (u[j] == u[j - 1]) continue;
    double xd = static_cast<double>(u[j] < u[j - 1] ? u[j] : u[j] - 1);
    xd = (xd + 0.5) / kScale - 0.5;
    if (std::floor(xd) != xd || xd < 0 || xd > static_cast<double>(width - 1)) continue;
    double yd = static_cast<double>(v[j] < v[j - 1] ? v[j] : v[j - 1]);
    yd = (yd + 0.5) / kScale - 0.5;
    yd = std::ceil(std::clamp(yd, 0.0, static_cast<double>(height)));
    toggles.push_back(static_cast<uint64_t>(xd) * static_cast<uint64_t>(height) + static_cast<uint64_t>(yd));
  }
  toggles.push_back(static_cast<uint64_t>(height * width));
  std::sort(toggles.begin(), toggles.end());
  // Differences are the runs; a zero-length run merges its neighbours (two toggles cancel).
  std::vector<uint64_t> runs;
  uint64_t previous = 0;
  for (uint64_t t : toggles) runs.push_back(t - previous), previous = t;
  Rle rle{height, width, {}};
  size_t j = 0;
  rle.counts.push_back(static_cast<uint32_t>(runs[j++]));
  while (j < runs.size()) {
    if (runs[j] > 0) {
      rle.counts.push_back(static_cast<uint32_t>(runs[j++]));
    } else if (++j < runs.size()) {
      rle.counts.back() += static_cast<uint32_t>(runs[j++]);
    }
  }
  return rle;
}

Rle rle_union(const std::vector<Rle>& rles) {
  check(!rles.empty(), "rle_union: no masks");
  Rle merged = rles[0];
  for (size_t i = 1; i < rles.size(); ++i) {
    const Rle& b = rles[i];
    check(b.height == merged.height && b.width == merged.width, "rle_union: masks of different sizes");
    // Walk both run lists together, emitting a run whenever the union's value changes.
    Rle out{merged.height, merged.width, {}};
    size_t ia = 0, ib = 0;
    uint64_t left_a = merged.counts.empty() ? 0 : merged.counts[0], left_b = b.counts.empty() ? 0 : b.counts[0];
    bool va = false, vb = false, value = false;
    uint64_t run = 0;
    const uint64_t total = static_cast<uint64_t>(merged.height * merged.width);
    uint64_t done = 0;
    while (done < total) {
      while (left_a == 0 && ia + 1 < merged.counts.size()) left_a = merged.counts[++ia], va = !va;
      while (left_b == 0 && ib + 1 < b.counts.size()) left_b = b.counts[++ib], vb = !vb;
      const uint64_t step = std::min(left_a, left_b);
      check(step > 0, "rle_union: runs do not cover the mask");
      if ((va || vb) != value) {
        out.counts.push_back(static_cast<uint32_t>(run));
        run = 0;
        value = !value;
      }
      run += step, done += step, left_a -= step, left_b -= step;
    }
    out.counts.push_back(static_cast<uint32_t>(run));
    merged = out;
  }
  return merged;
}

}  // namespace mrcnn::detection
