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
      // At most 4 megapixels: a header may claim 100 (the product's cap), and decoding that much
      // under ASan takes seconds per input, which would leave the fuzzer a few executions a minute.
      (void)mrcnn::detection::decode_image(bytes, "fuzz.img", channels, 1 << 22);
    } catch (const mrcnn::Error&) {
    }
  }
  return 0;
}
