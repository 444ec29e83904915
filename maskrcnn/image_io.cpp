// stb's implementations live in this one translation unit.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include "maskrcnn/image_io.h"

#include <stb_image.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>

namespace mrcnn::detection {

namespace {

// Debian's stb_image 2.27 writes past its 257-entry Huffman size table, and past the 256 code values
// after it, when a JPEG's DHT segment declares more than 256 codes for one table (fixed upstream in
// 2.28; found by tests/fuzz/fuzz_image). Such a file is corrupt anyway, so it is refused before stb
// parses it, and so is one whose scan uses an undefined table (see below). The walk follows stb's
// reading: tables are read while the segment's remaining length is positive, 17 header bytes plus the
// declared codes each, even past the declared length.
void check_jpeg_huffman_tables(const std::string& bytes, const std::string& name) {
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  // Past the end of the file stb reads zeros; so does this walk (a truncated table still counts).
  const auto at = [&](size_t k) -> size_t { return k < n ? b[k] : 0; };
  // stb mallocs its decoder without clearing it: a scan that decodes with a table no DHT defined
  // reads garbage code tables and then far out of bounds (a crash; upstream 2.28 bounds the symbol).
  bool defined[2][4] = {};
  size_t i = 0;
  while (i < n && b[i] == 0xFF) ++i;  // stb accepts fill bytes before SOI too
  if (i == 0 || i >= n || b[i] != 0xD8) return;  // not a JPEG
  ++i;
  while (i + 4 <= n) {
    if (b[i] != 0xFF) {  // entropy-coded data: look for the next marker
      ++i;
      continue;
    }
    const unsigned char marker = b[i + 1];
    if (marker == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {  // stuffing, TEM, RSTn, SOI
      i += 2;
      continue;
    }
    if (marker == 0xD9) return;  // EOI
    const size_t length = (static_cast<size_t>(b[i + 2]) << 8) | b[i + 3];
    size_t next = i + 2 + length;
    if (marker == 0xDA) {  // SOS: every Huffman table the scan decodes with must exist by now
      const size_t components = at(i + 4);
      const size_t ss = at(i + 5 + 2 * components), se = at(i + 6 + 2 * components);
      for (size_t c = 0; c < components; ++c) {
        const size_t tables = at(i + 6 + 2 * c), dc = tables >> 4, ac = tables & 15;
        check((ss != 0 || dc > 3 || defined[0][dc]) && (se == 0 || ac > 3 || defined[1][ac]), name,
              ": cannot read image (corrupt JPEG: a scan uses a Huffman table that was never defined)");
      }
    }
    if (marker == 0xC4) {
      int64_t remaining = static_cast<int64_t>(length) - 2;
      size_t p = i + 4;
      while (remaining > 0) {
        if ((at(p) >> 4) > 1 || (at(p) & 15) > 3) break;  // stb rejects the table class/id itself
        defined[at(p) >> 4][at(p) & 15] = true;
        size_t codes = 0;
        for (size_t k = 1; k <= 16; ++k) codes += at(p + k);
        check(codes <= 256, name, ": cannot read image (corrupt JPEG: a Huffman table declares ", codes, " codes, at most 256)");
        remaining -= static_cast<int64_t>(17 + codes);
        p += 17 + codes;
      }
      next = std::max(next, p);
    }
    i = next;
  }
}

// Debian's stb_image 2.27 grows its IDAT buffer to each chunk's declared length before reading the
// chunk, so a 200-byte PNG that declares a 1.6 GB IDAT makes it allocate 1.6 GB before failing (found
// by fuzz_image in CI, as an out-of-memory). A chunk (length, type, data, CRC) must fit in the file.
void check_png_chunks(const std::string& bytes, const std::string& name) {
  static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  if (n < 8 || std::memcmp(b, signature, 8) != 0) return;  // not a PNG
  for (size_t i = 8; i + 8 <= n;) {
    const uint64_t length = (uint64_t(b[i]) << 24) | (uint64_t(b[i + 1]) << 16) | (uint64_t(b[i + 2]) << 8) | b[i + 3];
    std::string type(reinterpret_cast<const char*>(b + i + 4), 4);
    for (char& c : type)
      if (!std::isalnum(static_cast<unsigned char>(c))) c = '?';
    const uint64_t remaining = n - i - 8;
    check(length + 4 <= remaining, name, ": cannot read image (corrupt PNG: chunk ", type, " declares ", length,
          " bytes but the file has ", remaining, " left)");
    if (type == "IEND") return;
    i += 12 + static_cast<size_t>(length);
  }
}

}  // namespace

Tensor decode_image(const std::string& bytes, const std::string& name, int64_t channels, int64_t max_pixels) {
  check(channels == 1 || channels == 3, "load_image: the model takes ", channels, " channels; only 1 or 3 are supported");
  check(bytes.size() <= static_cast<size_t>(std::numeric_limits<int>::max()), name, ": file too large for an image");
  check_jpeg_huffman_tables(bytes, name);
  check_png_chunks(bytes, name);
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int size = static_cast<int>(bytes.size());
  int width = 0, height = 0, file_channels = 0;
  // Header first: a hostile header must not make stb allocate gigabytes before failing.
  if (stbi_info_from_memory(data, size, &width, &height, &file_channels) == 0) {
    const char* reason = stbi_failure_reason();
    throw Error(str_cat(name, ": cannot read image (", reason ? reason : "unknown format", ")"));
  }
  check(width > 0 && height > 0, name, ": image has no pixels");
  check(static_cast<int64_t>(width) * height <= max_pixels, name, ": image is ", width, "x", height,
        ", more than the ", max_pixels / 1000000.0, " megapixels this tool accepts");
  const bool sixteen = stbi_is_16_bit_from_memory(data, size) != 0;
  std::unique_ptr<void, void (*)(void*)> pixels(
      sixteen ? static_cast<void*>(stbi_load_16_from_memory(data, size, &width, &height, &file_channels, static_cast<int>(channels)))
              : static_cast<void*>(stbi_load_from_memory(data, size, &width, &height, &file_channels, static_cast<int>(channels))),
      stbi_image_free);
  if (!pixels) {
    const char* reason = stbi_failure_reason();
    throw Error(str_cat(name, ": cannot read image (", reason ? reason : "unknown error", ")"));
  }
  Tensor image = empty({channels, height, width});
  float* out = image.data<float>();
  const int64_t plane = static_cast<int64_t>(width) * height;
  const float scale = sixteen ? 1.0f / 65535.0f : 1.0f / 255.0f;
  for (int64_t i = 0; i < plane; ++i)
    for (int64_t c = 0; c < channels; ++c) {
      const float v = sixteen ? static_cast<const uint16_t*>(pixels.get())[i * channels + c]
                              : static_cast<const uint8_t*>(pixels.get())[i * channels + c];
      out[c * plane + i] = v * scale;
    }
  return image;
}

Tensor load_image(const std::string& path, int64_t channels) {
  std::ifstream in(path, std::ios::binary);
  check(static_cast<bool>(in), path, ": cannot read image (cannot open file)");
  std::stringstream bytes;
  bytes << in.rdbuf();
  check(!in.bad(), path, ": cannot read image (read error)");
  return decode_image(bytes.str(), path, channels);
}

void write_png(const std::string& path, const std::vector<uint8_t>& pixels, int64_t height, int64_t width, int channels) {
  check(channels == 1 || channels == 3, "write_png: ", channels, " channels (1 or 3)");
  check(static_cast<int64_t>(pixels.size()) == height * width * channels, "write_png: ", pixels.size(), " bytes for ", height,
        "x", width, channels == 3 ? " RGB" : " gray");
  const std::string tmp = path + ".tmp";
  check(stbi_write_png(tmp.c_str(), static_cast<int>(width), static_cast<int>(height), channels, pixels.data(),
                       static_cast<int>(width * channels)) != 0,
        path, ": cannot write PNG");
  std::error_code error;
  std::filesystem::rename(tmp, path, error);
  check(!error, path, ": cannot write PNG (", error.message(), ")");
}

}  // namespace mrcnn::detection
