// A COCO dataset in memory, ready for the model: every image decoded once (float32 [C, H, W] in
// [0, 1] with the config's channel count) next to its training target. Brain-tumour sets are small
// (hundreds of slices, tens of MB as float32), so loading up front keeps every epoch free of I/O and
// makes a bad file fail before training starts rather than hours into it.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "maskrcnn/coco.h"

namespace mrcnn::detection {

struct Sample {
  CocoImage info;  // id, file_name, size, annotations
  Tensor image;    // [C, H, W]
  Target target;   // crowd annotations left out
};

// Errors name the file: missing or corrupt images, and images whose size differs from the JSON's
// width/height (the annotations would not line up). `progress(done, total)` is called per image.
std::vector<Sample> load_samples(const CocoDataset& data, const std::string& images_dir, int64_t in_channels,
                                 const std::function<void(size_t, size_t)>& progress = {});

// The patient (group) of each file name: the first capture group of `group_regex` (the whole match
// without one), as `mrcnn split` groups them. Errors name a file that does not match.
std::vector<std::string> file_groups(const std::vector<std::string>& file_names, const std::string& group_regex,
                                     const std::string& name);

}  // namespace mrcnn::detection
