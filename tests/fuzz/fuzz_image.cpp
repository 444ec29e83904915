// libFuzzer target: image decoding (stb_image behind decode_image) on arbitrary bytes, for the
// model's 1- and 3-channel inputs. Must decode or throw mrcnn::Error; never crash or over-allocate.
#include <cstddef>
#include <cstdint>
#include <string>

#include "maskrcnn/image_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  for (int64_t channels : {1, 3}) {
    try {
      (void)mrcnn::detection::decode_image(bytes, "fuzz.img", channels);
    } catch (const mrcnn::Error&) {
    }
  }
  return 0;
}
