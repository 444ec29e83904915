// Image files (8-bit gray/RGB/RGBA PNG, BMP, a hand-built 16-bit PNG, corrupt files; JPEG on the real
// slices in test_maskrcnn_coco) and the seeded augmentation.
#include <stb_image_write.h>

#include <filesystem>
#include <fstream>

#include "maskrcnn/augment.h"
#include "maskrcnn/image_io.h"
#include "tests/helpers.h"

using namespace mrcnn;
using namespace mrcnn::detection;
namespace fs = std::filesystem;

namespace {

uint32_t crc32(const std::string& bytes) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : bytes) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

std::string chunk(const std::string& type, const std::string& data) {
  return be32(static_cast<uint32_t>(data.size())) + type + data + be32(crc32(type + data));
}

// A 16-bit grayscale PNG (zlib "stored" block, no compression), which stb_image_write cannot make.
std::string png16(int width, int height, const std::vector<uint16_t>& pixels) {
  std::string raw;
  for (int y = 0; y < height; ++y) {
    raw.push_back('\0');  // filter: none
    for (int x = 0; x < width; ++x) raw += {static_cast<char>(pixels[y * width + x] >> 8), static_cast<char>(pixels[y * width + x] & 0xff)};
  }
  uint32_t a = 1, b = 0;
  for (unsigned char ch : raw) a = (a + ch) % 65521, b = (b + a) % 65521;
  const uint16_t len = static_cast<uint16_t>(raw.size());
  std::string zlib = {'\x78', '\x01', '\x01', static_cast<char>(len & 0xff), static_cast<char>(len >> 8),
                      static_cast<char>(~len & 0xff), static_cast<char>((~len >> 8) & 0xff)};
  zlib += raw + be32((b << 16) | a);
  const std::string ihdr = be32(width) + be32(height) + std::string{16, 0, 0, 0, 0};
  return std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr) + chunk("IDAT", zlib) + chunk("IEND", "");
}

}  // namespace

TEST_CASE("images: gray, RGB, RGBA, BMP and 16-bit PNG, converted to the model's channels") {
  const fs::path dir = test::scratch_dir("mrcnn_image_io");
  // 3x2 RGB pixels with known values.
  const std::vector<uint8_t> rgb = {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 100, 100, 100, 0, 0, 0};
  std::vector<uint8_t> rgba;
  for (size_t i = 0; i < rgb.size(); i += 3) rgba.insert(rgba.end(), {rgb[i], rgb[i + 1], rgb[i + 2], 128});
  const std::vector<uint8_t> gray = {0, 51, 102, 153, 204, 255};
  REQUIRE(stbi_write_png((dir / "rgb.png").c_str(), 3, 2, 3, rgb.data(), 9));
  REQUIRE(stbi_write_png((dir / "rgba.png").c_str(), 3, 2, 4, rgba.data(), 12));
  REQUIRE(stbi_write_png((dir / "gray.png").c_str(), 3, 2, 1, gray.data(), 3));
  REQUIRE(stbi_write_bmp((dir / "rgb.bmp").c_str(), 3, 2, 3, rgb.data()));
  // JPEG decoding is exercised on the real slices (test_maskrcnn_coco, when the dataset is present):
  // stb's JPEG *writer* shifts negative values, which UBSan rejects, so none is made here.

  const Tensor c3 = load_image((dir / "rgb.png").string(), 3);
  CHECK(c3.sizes() == Shape{3, 2, 3});
  CHECK(test::values(ops::select(c3, 0, 0))[0] == 1.0);                 // red pixel, R plane
  CHECK(test::values(ops::select(c3, 0, 0))[3] == doctest::Approx(10.0 / 255));  // pixel (1, 0) = (10, 20, 30)
  CHECK(test::values(ops::select(c3, 0, 2))[3] == doctest::Approx(30.0 / 255));
  CHECK(test::max_abs_diff(load_image((dir / "rgba.png").string(), 3), c3) == 0.0);  // alpha dropped
  CHECK(test::max_abs_diff(load_image((dir / "rgb.bmp").string(), 3), c3) == 0.0);
  const Tensor g1 = load_image((dir / "gray.png").string(), 1);
  const auto g1_values = test::values(g1);
  for (size_t i = 0; i < gray.size(); ++i) CHECK(g1_values[i] == doctest::Approx(gray[i] / 255.0));
  const Tensor g3 = load_image((dir / "gray.png").string(), 3);  // gray repeated on three channels
  CHECK(test::max_abs_diff(ops::select(g3, 0, 2), ops::select(g1, 0, 0)) == 0.0);
  // RGB to 1 channel: stb's luminance (77 R + 150 G + 29 B) >> 8.
  CHECK(test::values(load_image((dir / "rgb.png").string(), 1))[0] == doctest::Approx(76.0 / 255));

  std::ofstream(dir / "deep.png", std::ios::binary) << png16(2, 2, {0, 1000, 32768, 65535});
  CHECK(test::values(load_image((dir / "deep.png").string(), 1)) ==
        std::vector<double>{0, static_cast<float>(1000.0f / 65535.0f), static_cast<float>(32768.0f / 65535.0f), 1.0});

  std::ofstream(dir / "broken.png", std::ios::binary) << std::string("\x89PNG\r\n\x1a\n", 8) << "garbage";
  CHECK(test::error_of([&] { load_image((dir / "broken.png").string(), 1); }).rfind((dir / "broken.png").string() + ": cannot read image (", 0) == 0);
  CHECK(test::error_of([&] { load_image((dir / "rgb.png").string(), 2); }) ==
        "load_image: the model takes 2 channels; only 1 or 3 are supported");
  // A JPEG whose Huffman table declares 937 codes: Debian's stb 2.27 would write past its tables
  // (found by fuzz_image); it is refused before decoding. The committed fuzz corpus keeps the file.
  std::ifstream hostile_file(test::source_path("tests/fuzz/corpus/image/regression_dht_too_many_codes.jpg"), std::ios::binary);
  const std::string hostile((std::istreambuf_iterator<char>(hostile_file)), std::istreambuf_iterator<char>());
  REQUIRE(hostile.size() > 100);
  CHECK(test::error_of([&] { decode_image(hostile, "hostile.jpg", 1); }) ==
        "hostile.jpg: cannot read image (corrupt JPEG: a Huffman table declares 937 codes, at most 256)");
  // A scan that decodes with a Huffman table no DHT defined: stb 2.27 would read garbage tables and
  // crash (found by fuzz_image in CI). Valid progressive JPEGs, whose DC scans name an AC table
  // defined only later, still decode.
  const auto corpus_file = [](const std::string& file) {
    std::ifstream in(test::source_path("tests/fuzz/corpus/image/" + file), std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  CHECK(test::error_of([&] { decode_image(corpus_file("regression_undefined_huffman_table.jpg"), "scan.jpg", 1); }) ==
        "scan.jpg: cannot read image (corrupt JPEG: a scan uses a Huffman table that was never defined)");
  CHECK(decode_image(corpus_file("rgb_progressive.jpg"), "progressive.jpg", 3).sizes() == Shape{3, 8, 16});
  CHECK(decode_image(corpus_file("gray.jpg"), "gray.jpg", 1).sizes() == Shape{1, 8, 8});
  // A PNG whose second IDAT declares 1.6 GB in a 148-byte file: stb 2.27 would allocate that much
  // before failing (found by fuzz_image in CI); refused from the chunk lengths.
  CHECK(test::error_of([&] { decode_image(corpus_file("regression_png_huge_idat.png"), "idat.png", 1); }) ==
        "idat.png: cannot read image (corrupt PNG: chunk IDAT declares 1610612772 bytes but the file has 59 left)");
  // Dimensions are checked from the header before any pixel memory: a 30000x30000 PNG header.
  std::string huge = png16(2, 2, {0, 0, 0, 0});
  for (int k = 0; k < 2; ++k) huge[16 + k * 4] = 0, huge[17 + k * 4] = 0, huge[18 + k * 4] = 0x75, huge[19 + k * 4] = 0x30;
  CHECK(test::error_of([&] { decode_image(huge, "huge.png", 1); }) ==
        "huge.png: image is 30000x30000, more than the 100 megapixels this tool accepts");
  fs::remove_all(dir);
}

TEST_CASE("augment: flip mirrors image, boxes and masks, and jitter is seeded and stays in [0, 1]") {
  Tensor image = from_vector(std::vector<float>{0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f}, {1, 2, 3});
  Target target{from_vector(std::vector<float>{0.5f, 0, 2, 1}, {1, 4}), from_vector(std::vector<int64_t>{1}, {1}),
                from_vector(std::vector<uint8_t>{1, 1, 0, 0, 0, 0}, {1, 2, 3})};
  Tensor flipped = image;
  Target flipped_target = target;
  horizontal_flip(flipped, flipped_target);
  CHECK(test::values(flipped) == test::values(from_vector(std::vector<float>{0.3f, 0.2f, 0.1f, 0.6f, 0.5f, 0.4f}, {6})));
  CHECK(test::values(flipped_target.boxes) == std::vector<double>{1, 0, 2.5, 1});
  CHECK(to_vector<uint8_t>(flipped_target.masks) == std::vector<uint8_t>{0, 1, 1, 0, 0, 0});
  CHECK(test::values(image)[0] == doctest::Approx(0.1));  // the input is untouched

  AugmentOptions options;
  options.flip_probability = 1.0;
  options.brightness = 0.5;
  options.contrast = 0.5;
  Generator a(5), b(5);
  Tensor ia = image, ib = image;
  Target ta = target, tb = target;
  augment(ia, ta, options, a);
  augment(ib, tb, options, b);
  CHECK(test::bitwise_equal(ia, ib));  // same seed, same result
  CHECK(test::values(ta.boxes) == std::vector<double>{1, 0, 2.5, 1});
  for (double v : test::values(ia)) CHECK((v >= 0.0 && v <= 1.0));
  CHECK(a.offset() == b.offset());
}
