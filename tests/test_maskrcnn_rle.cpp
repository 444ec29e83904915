// COCO RLE against pycocotools 2.0 (pip): the expected strings were printed by
//   pycocotools.mask.encode(np.asfortranarray(mask))["counts"]
// for the two masks built below (a 3x3 square plus a corner pixel in 5x7; a disc of radius 15 at
// (30, 20) plus a 4x8 block in 64x48).
#include "maskrcnn/rle.h"
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

TEST_CASE("RLE: malformed strings are clear errors") {
  CHECK(test::error_of([] { rle_from_string(";320004NN", 5, 6); }) == "RLE: runs exceed the 5x6 mask");
  CHECK(test::error_of([] { rle_from_string(";32", 5, 7); }) == "RLE: runs cover 16 pixels of a 5x7 mask");
  CHECK(test::error_of([] { rle_from_string("\x01", 5, 7); }) == "RLE: invalid character '\x01'");
}
