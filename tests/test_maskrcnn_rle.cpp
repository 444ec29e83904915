// COCO RLE against pycocotools 2.0 (pip): the expected strings were printed by
//   pycocotools.mask.encode(np.asfortranarray(mask))["counts"]
// for the two masks built below (a 3x3 square plus a corner pixel in 5x7; a disc of radius 15 at
// (30, 20) plus a 4x8 block in 64x48).
#include "maskrcnn/rle.h"

#include <random>
#include "tests/helpers.h"

using namespace mrcnn;
using namespace mrcnn::detection;

TEST_CASE("RLE: encode, compressed string, decode, area match pycocotools") {
  std::vector<uint8_t> small(5 * 7, 0);
  for (int y = 1; y < 4; ++y)
    for (int x = 2; x < 5; ++x) small[y * 7 + x] = 1;
  small[0 * 7 + 6] = 1;
  const Rle rle = rle_encode(small.data(), 5, 7);
  // Column-major: 11 zeros (columns 0, 1 and row 0 of column 2), 3 ones, 2 zeros, ...
  CHECK(rle.counts == std::vector<uint32_t>{11, 3, 2, 3, 2, 3, 6, 1, 4});
  CHECK(rle_to_string(rle) == ";320004NN");
  CHECK(rle_decode(rle_from_string(";320004NN", 5, 7)) == small);
  CHECK(rle_area(rle) == 10);

  std::vector<uint8_t> big(64 * 48, 0);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 48; ++x) big[y * 48 + x] = (y - 30) * (y - 30) + (x - 20) * (x - 20) <= 225 || (y >= 60 && x >= 40);
  const std::string expected =
      "n:1j1:I4L4M2N2N2O0O2O0O2O0000000O20N100000001N101N101N2N2N3L4L7FS93oF0000000000000";
  const Rle encoded = rle_encode(big.data(), 64, 48);
  CHECK(rle_to_string(encoded) == expected);
  CHECK(rle_area(encoded) == 741);
  CHECK(rle_decode(rle_from_string(expected, 64, 48)) == big);
  // An empty mask is one run of zeros.
  std::vector<uint8_t> empty_mask(12, 0);
  CHECK(rle_to_string(rle_encode(empty_mask.data(), 3, 4)) == "<");
}

TEST_CASE("RLE: decode inverts encode for any shape and fill") {
  std::mt19937 rng(7);
  for (const auto& [h, w] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {1, 9}, {9, 1}, {5, 7}, {33, 17}, {64, 48}})
    for (const double fill : {0.0, 0.1, 0.5, 0.9, 1.0}) {
      std::bernoulli_distribution inside(fill);
      std::vector<uint8_t> mask(static_cast<size_t>(h * w));
      for (auto& m : mask) m = inside(rng);
      CAPTURE(h);
      CAPTURE(w);
      CAPTURE(fill);
      CHECK(rle_decode(rle_encode(mask.data(), h, w)) == mask);
    }
  // Runs past the mask (an Rle built in code, not parsed) are an error, not a write out of bounds;
  // fewer runs than pixels leave the rest empty.
  CHECK(test::error_of([] { rle_decode(Rle{2, 3, {4, 3}}); }) == "RLE: runs exceed the 2x3 mask");
  CHECK(rle_decode(Rle{2, 3, {1, 2}}) == std::vector<uint8_t>{0, 1, 0, 1, 0, 0});
}

TEST_CASE("RLE: malformed strings are clear errors") {
  CHECK(test::error_of([] { rle_from_string(";320004NN", 5, 6); }) == "RLE: runs exceed the 5x6 mask");
  CHECK(test::error_of([] { rle_from_string(";32", 5, 7); }) == "RLE: runs cover 16 pixels of a 5x7 mask");
  CHECK(test::error_of([] { rle_from_string("\x01", 5, 7); }) == "RLE: invalid character '\x01'");
}

TEST_CASE("polygons rasterise exactly as pycocotools (frPyObjects + merge)") {
  // Expected: pycocotools.mask.merge(pycocotools.mask.frPyObjects(polygons, 12, 14)) for a 12x14 image.
  struct Case {
    const char* name;
    std::vector<std::vector<double>> polygons;
    const char* counts;
    int64_t area;
  };
  const std::vector<Case> cases = {
      {"triangle", {{2.0, 1.0, 9.5, 3.2, 4.1, 8.7}}, "i02:3N1NO1O2N1Oj1", 25},
      {"concave", {{1, 1, 12, 1, 12, 10, 7, 4, 1, 10}}, "=84O1O1O1O1O1002N1O1O1f0", 62},
      {"two parts", {{0.5, 0.5, 5, 0.5, 5, 5}, {8, 6, 13.7, 6.2, 11, 11.9, 7.6, 10}}, "i01;1O1X11fN1O1OO1N2NL", 30},
      {"partly outside the image", {{-3, -2, 6, -1, 18, 14, 2, 9}}, "0662N1O001O000100O1O2O0O1O1O", 111},
      {"smaller than a pixel", {{3.2, 3.2, 3.6, 3.3, 3.4, 3.7}}, "W11P4", 1},
      // A vertex repeated (a double click in the labelling tool): pycocotools divides 0 by 0 there
      // (found by fuzz_coco as undefined behaviour in our port); the mask is the triangle's.
      {"repeated vertices", {{2, 1, 2, 1, 9.5, 3.2, 9.5, 3.2, 4.1, 8.7}}, "i02:3N1NO1O2N1Oj1", 25},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    std::vector<Rle> parts;
    for (const auto& p : c.polygons) parts.push_back(rle_from_polygon(p, 12, 14));
    const Rle merged = rle_union(parts);
    CHECK(rle_to_string(merged) == c.counts);
    CHECK(rle_area(merged) == c.area);
  }
  // A hand-checkable square: corners (1, 1)-(4, 3) cover pixel centres x 1..3, y 1..2.
  const auto square = rle_decode(rle_from_polygon({1, 1, 4, 1, 4, 3, 1, 3}, 5, 6));
  std::vector<uint8_t> expected(30, 0);
  for (int y = 1; y <= 2; ++y)
    for (int x = 1; x <= 3; ++x) expected[y * 6 + x] = 1;
  CHECK(square == expected);
  CHECK(test::error_of([] { rle_from_polygon({1, 2, 3, 4}, 5, 5); }) == "polygon: needs at least 3 (x, y) points, got 4 numbers");
  // A far-away vertex would make the outline walk allocate for every fifth of a pixel of its edge.
  CHECK(test::error_of([] { rle_from_polygon({1, 2, 3, 4, 1e12, 1}, 5, 5); }) ==
        "polygon: vertex coordinate 1e+12 is far outside the 5x5 image");
}
