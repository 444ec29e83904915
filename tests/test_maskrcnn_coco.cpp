// COCO loading: Make Sense's export format, contiguous labels, negatives kept, the skip rules with
// their warning lines, fatal errors naming file and entry; and the real dataset when it is present.
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "maskrcnn/coco.h"
#include "maskrcnn/image_io.h"
#include "tests/helpers.h"

using namespace mrcnn;
using namespace mrcnn::detection;

namespace {
const char* kExport = R"({
  "info": {"description": "my-project-name"},
  "images": [{"id": 1, "file_name": "p1_3.jpg", "width": 14, "height": 12},
             {"id": 2, "file_name": "p1_4.jpg", "width": 14, "height": 12},
             {"id": 3, "file_name": "p2_1.jpg", "width": 14, "height": 12}],
  "categories": [{"id": 7, "name": "tumor"}, {"id": 3, "name": "edema"}],
  "annotations": [
    {"id": 1, "iscrowd": 0, "image_id": 1, "category_id": 7, "segmentation": [[1, 1, 12, 1, 12, 10, 7, 4, 1, 10]],
     "bbox": [1.0, 1.0, 11.0, 9.0], "area": 62.0},
    {"id": 2, "iscrowd": 0, "image_id": 1, "category_id": 3, "segmentation": {"size": [12, 14], "counts": "W11P4"},
     "bbox": [3.0, 3.0, 1.0, 1.0], "area": 1.0},
    {"id": 3, "iscrowd": 0, "image_id": 2, "category_id": 7, "segmentation": [[1, 2, 3, 4]], "bbox": [1, 2, 2, 2], "area": 2},
    {"id": 4, "iscrowd": 0, "image_id": 2, "category_id": 9, "segmentation": [[1, 1, 5, 1, 5, 5]], "bbox": [1, 1, 4, 4], "area": 8},
    {"id": 5, "iscrowd": 0, "image_id": 2, "category_id": 7, "segmentation": [[1, 1, 5, 1, 5, 5]], "bbox": [1, 1, 0, 4], "area": 0},
    {"id": 6, "iscrowd": 0, "image_id": 2, "category_id": 7, "segmentation": [[1, 1, 5, 1, 5, 5]], "bbox": [20, 1, 4, 4], "area": 8},
    {"id": 7, "iscrowd": 0, "image_id": 2, "category_id": 7, "segmentation": [[1, 1, 5, 1, 5, 5e9]], "bbox": [1, 1, 4, 4], "area": 8}
  ]
})";
}  // namespace

TEST_CASE("coco: Make Sense export, labels by category id, negatives kept, unusable annotations skipped") {
  const CocoDataset data = parse_coco(kExport, "labels.json");
  REQUIRE(data.categories.size() == 2);
  CHECK(data.categories[0].name == "edema");  // id 3 -> label 1, id 7 -> label 2
  CHECK(data.categories[1].id == 7);
  REQUIRE(data.images.size() == 3);
  REQUIRE(data.images[0].annotations.size() == 2);
  CHECK(data.images[0].annotations[0].label == 2);
  CHECK(data.images[0].annotations[1].label == 1);
  CHECK(data.images[1].annotations.empty());  // all five were unusable
  CHECK(data.images[2].annotations.empty());  // a negative slice, kept
  REQUIRE(data.warnings.size() == 5);
  CHECK(data.warnings[0] == "labels.json: annotations[2] (p1_4.jpg): polygon with fewer than 3 points; skipped");
  CHECK(data.warnings[1] == "labels.json: annotations[3] (p1_4.jpg): unknown category_id 9; skipped");
  CHECK(data.warnings[2] == "labels.json: annotations[4] (p1_4.jpg): zero-area bbox [1, 1, 0, 4]; skipped");
  CHECK(data.warnings[3] == "labels.json: annotations[5] (p1_4.jpg): bbox [20, 1, 4, 4] lies outside the 14x12 image; skipped");
  CHECK(data.warnings[4] == "labels.json: annotations[6] (p1_4.jpg): polygon vertex far outside the 14x12 image; skipped");

  const Target t = coco_target(data.images[0]);
  CHECK(t.boxes.sizes() == Shape{2, 4});
  CHECK(test::values(t.boxes) == std::vector<double>{1, 1, 12, 10, 3, 3, 4, 4});
  CHECK(to_vector<int64_t>(t.labels) == std::vector<int64_t>{2, 1});
  CHECK(t.masks.sizes() == Shape{2, 12, 14});
  // Mask areas equal pycocotools' for the same polygon (62) and RLE (1).
  CHECK(ops::sum(ops::to(ops::select(t.masks, 0, 0), kFloat64)).item<int64_t>() == 62);
  CHECK(ops::sum(ops::to(ops::select(t.masks, 0, 1), kFloat64)).item<int64_t>() == 1);
  const Target empty_target = coco_target(data.images[2]);
  CHECK(empty_target.boxes.sizes() == Shape{0, 4});
  CHECK(empty_target.masks.sizes() == Shape{0, 12, 14});
}

TEST_CASE("coco: structural errors are fatal and name the file and the entry") {
  auto error = [](const std::string& text) { return test::error_of([&] { parse_coco(text, "bad.json"); }); };
  CHECK(error("{").rfind("bad.json: not valid JSON (", 0) == 0);
  CHECK(error(R"({"images": [], "annotations": []})") == "bad.json: top level: missing key 'categories'");
  CHECK(error(R"({"categories": [], "annotations": [], "images": [{"id": 1, "file_name": "a.jpg", "width": "14", "height": 12}]})") ==
        "bad.json: images[0]: 'width' must be an integer, got string");
  CHECK(error(R"({"categories": [{"id": 1, "name": "t"}], "images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}],
                  "annotations": [{"image_id": 1, "category_id": 1, "segmentation": [[0, 0, 3, 0, 3, 3]]}]})") ==
        "bad.json: annotations[0]: missing key 'bbox'");
  CHECK(error(R"({"categories": [{"id": 1, "name": "t"}], "images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}],
                  "annotations": [{"image_id": 5, "category_id": 1, "bbox": [0, 0, 1, 1], "segmentation": []}]})") ==
        "bad.json: annotations[0]: image_id 5 is not in 'images'");
  CHECK(error(R"({"categories": [{"id": 1, "name": "t"}], "images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}],
                  "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "segmentation": {"size": [4, 4], "counts": "zz"}}]})")
            .rfind("bad.json: annotations[0] (a.jpg): RLE: ", 0) == 0);
  // RLE counts that are not uint32 (found by fuzz_coco: 1e30 reached a float-to-integer cast).
  const auto rle_counts = [&](const std::string& counts) {
    return error(R"({"categories": [{"id": 1, "name": "t"}], "images": [{"id": 1, "file_name": "a.jpg", "width": 2, "height": 2}],
                    "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "segmentation": {"size": [2, 2], "counts": )" +
                 counts + "}}]}");
  };
  CHECK(rle_counts("[1e30, 0]") == "bad.json: annotations[0] (a.jpg): each RLE count must be a non-negative integer in range, got 1e+30");
  CHECK(rle_counts("[-4, 8]") == "bad.json: annotations[0] (a.jpg): each RLE count must be a non-negative integer in range, got -4");
  CHECK(rle_counts("[4294967296, 0]") ==
        "bad.json: annotations[0] (a.jpg): each RLE count must be a non-negative integer in range, got 4294967296");
  CHECK(rle_counts("[1, \"3\"]") == "bad.json: annotations[0] (a.jpg): each RLE count must be a non-negative integer in range, got string");
  CHECK(error(R"({"categories": [], "annotations": [], "images": [{"id": 18446744073709551615, "file_name": "a.jpg", "width": 4, "height": 4}]})") ==
        "bad.json: images[0]: 'id' must be an integer in range, got 18446744073709551615");
  CHECK(test::error_of([] { load_coco("/nonexistent/labels.json"); }) == "/nonexistent/labels.json: cannot open");
}

TEST_CASE("coco: the brain-tumour split and its JPEG slices load (skipped without ../shared/datasets/brain-tumor)") {
  const char* env = std::getenv("MRCNN_DATA");
  const std::string dir = env ? env : std::string(MRCNN_TEST_SOURCE_DIR) + "/../shared/datasets/brain-tumor";
  if (!std::filesystem::exists(dir + "/train.json")) {
    std::cout << "SKIPPED: no dataset at " << dir << "\n";  // ctest reports the case as skipped
    return;
  }
  const CocoDataset train = load_coco(dir + "/train.json"), val = load_coco(dir + "/val.json");
  CHECK(train.images.size() == 224);
  CHECK(val.images.size() == 47);
  REQUIRE(train.categories.size() == 1);
  CHECK(train.categories[0].name == "tumor");
  size_t annotations = 0;
  for (const auto& image : train.images) annotations += image.annotations.size();
  CHECK(annotations > 0);
  MESSAGE("train: " << annotations << " annotations kept, " << train.warnings.size() << " skipped");
  const Target t = coco_target(train.images[0]);
  CHECK(t.masks.size(1) == train.images[0].height);
  // The JPEG slices decode at the size the JSON states, gray in [0, 1].
  const Tensor image = load_image(dir + "/images/" + train.images[0].file_name, 1);
  CHECK(image.sizes() == Shape{1, train.images[0].height, train.images[0].width});
  CHECK(ops::max(image).item<double>() <= 1.0);
  CHECK(ops::max(image).item<double>() > 0.1);
}

TEST_CASE("coco split: no patient in both halves, the requested share, reproducible") {
  // 10 patients with 1..4 slices each.
  nlohmann::json root = {{"info", {{"description", "x"}}}, {"categories", {{{"id", 1}, {"name", "tumor"}}}},
                         {"images", nlohmann::json::array()}, {"annotations", nlohmann::json::array()}};
  int64_t id = 0;
  for (int p = 0; p < 10; ++p)
    for (int s = 0; s <= p % 4; ++s) {
      ++id;
      root["images"].push_back({{"id", id}, {"file_name", "000" + std::to_string(p) + "_" + std::to_string(s) + ".jpg"},
                                {"width", 8}, {"height", 8}});
      root["annotations"].push_back({{"id", id}, {"image_id", id}, {"category_id", 1}, {"iscrowd", 0},
                                     {"bbox", {1, 1, 4, 4}}, {"segmentation", {{1, 1, 5, 1, 5, 5, 1, 5}}}});
    }
  const auto result = split_coco(root.dump(), "all.json", 0.3, "^([^_]+)_", 7);
  const auto train = nlohmann::json::parse(result.train_json), val = nlohmann::json::parse(result.val_json);
  CHECK(result.train_images + result.val_images == id);
  CHECK(result.train_groups + result.val_groups == 10);
  CHECK(static_cast<double>(result.val_images) >= 0.3 * static_cast<double>(id));
  CHECK(static_cast<double>(result.val_images) < 0.3 * static_cast<double>(id) + 4);  // at most one group over
  std::set<std::string> train_patients, val_patients;
  for (const auto& im : train["images"]) train_patients.insert(im["file_name"].get<std::string>().substr(0, 4));
  for (const auto& im : val["images"]) val_patients.insert(im["file_name"].get<std::string>().substr(0, 4));
  for (const auto& p : val_patients) CHECK(train_patients.count(p) == 0);
  CHECK(val["annotations"].size() == val["images"].size());  // annotations follow their images
  CHECK(val["categories"] == root["categories"]);
  CHECK(split_coco(root.dump(), "all.json", 0.3, "^([^_]+)_", 7).val_json == result.val_json);
  CHECK(test::error_of([&] { split_coco(root.dump(), "all.json", 0.3, "^(x+)_", 7); }) ==
        "all.json: file_name '0000_0.jpg' does not match --group-regex '^(x+)_'");
  CHECK(test::error_of([&] { split_coco(root.dump(), "all.json", 1.5, "^([^_]+)_", 7); }) ==
        "split: --val-fraction must be in (0, 1), got 1.5");
}
