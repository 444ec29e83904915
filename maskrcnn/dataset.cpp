// Decoding a COCO set's images and building their targets.
#include "maskrcnn/dataset.h"

#include <filesystem>

#include "maskrcnn/image_io.h"

namespace mrcnn::detection {

std::vector<Sample> load_samples(const CocoDataset& data, const std::string& images_dir, int64_t in_channels,
                                 const std::function<void(size_t, size_t)>& progress) {
  std::vector<Sample> samples;
  samples.reserve(data.images.size());
  for (const CocoImage& info : data.images) {
    const std::string path = (std::filesystem::path(images_dir) / info.file_name).string();
    Tensor image = load_image(path, in_channels);
    check(image.size(1) == info.height && image.size(2) == info.width, path, ": image is ", image.size(2), "x",
          image.size(1), " but the annotations say ", info.width, "x", info.height, " (width x height)");
    samples.push_back({info, image, coco_target(info)});
    if (progress) progress(samples.size(), data.images.size());
  }
  return samples;
}

}  // namespace mrcnn::detection
