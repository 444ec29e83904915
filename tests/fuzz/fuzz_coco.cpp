// libFuzzer target: the COCO loader on arbitrary bytes. Every input must either parse or throw
// mrcnn::Error (one clear message); crashes, hangs, leaks and sanitizer reports are bugs. Parsed
// datasets also have every annotation rasterised, as training would.
#include <cstddef>
#include <cstdint>
#include <string>

#include "maskrcnn/coco.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto dataset = mrcnn::detection::parse_coco(text, "fuzz.json");
    for (const auto& image : dataset.images)
      if (image.width * image.height <= 1 << 16)  // the loader accepts big images; keep each run fast
        (void)mrcnn::detection::coco_target(image);
  } catch (const mrcnn::Error&) {
  }
  return 0;
}
