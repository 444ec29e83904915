// pycocotools' maskApi.c rules (rleEncode, rleToString, rleFrString) in C++.
#include "maskrcnn/rle.h"

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
  std::vector<uint8_t> mask(static_cast<size_t>(rle.height * rle.width), 0);
  int64_t position = 0;
  uint8_t value = 0;
  for (uint32_t run : rle.counts) {
    for (uint32_t k = 0; k < run; ++k, ++position) {
      const int64_t x = position / rle.height, y = position % rle.height;
      mask[static_cast<size_t>(y * rle.width + x)] = value;
    }
    value = !value;
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

}  // namespace mrcnn::detection
