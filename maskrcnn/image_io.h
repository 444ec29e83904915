// Image files in and out (stb_image / stb_image_write): JPEG, PNG (8- and 16-bit), BMP, ... read
// into float32 [C, H, W] in [0, 1] with the model's channel count; PNG written from 8-bit RGB.
#pragma once
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace mrcnn::detection {

// channels 1: colour images become luminance (ITU-R 601 weights, as stb converts); channels 3: gray
// images are repeated on three channels; alpha is dropped. Errors name the file and stb's reason.
Tensor load_image(const std::string& path, int64_t channels);
// The same from the file's bytes already in memory; `name` is used in error messages. Images over
// kMaxImagePixels are refused from their header, before any pixel memory is allocated.
constexpr int64_t kMaxImagePixels = 100'000'000;
Tensor decode_image(const std::string& bytes, const std::string& name, int64_t channels,
                    int64_t max_pixels = kMaxImagePixels);

// pixels: height * width * channels bytes (1: gray, 3: RGB), row-major. Written atomically (temp
// file + rename).
void write_png(const std::string& path, const std::vector<uint8_t>& pixels, int64_t height, int64_t width, int channels = 3);

}  // namespace mrcnn::detection
