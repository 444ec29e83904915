// COCO AP against pycocotools: tests/fixtures/coco_eval holds a ground truth, detections and the six
// AP figures COCOeval printed for them (tests/fixtures/make_coco_eval_fixture.py); ours must agree
// to 1e-6 for bbox and segm. Also RLE IoU, including pycocotools' crowd rule.
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "maskrcnn/coco_eval.h"
#include "tests/helpers.h"

using namespace mrcnn;
using namespace mrcnn::detection;

namespace {
std::string read_fixture(const std::string& name) {
  std::ifstream in(test::source_path("tests/fixtures/coco_eval/" + name));
  REQUIRE_MESSAGE(static_cast<bool>(in), "missing fixture " << name);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}
}  // namespace

TEST_CASE("coco eval: AP, AP50, AP75, APs/m/l equal pycocotools' for bbox and segm") {
  const CocoDataset truth = parse_coco(read_fixture("gt.json"), "gt.json");
  REQUIRE(truth.warnings.empty());
  const auto detections = parse_results(read_fixture("dets.json"), "dets.json", truth);
  CHECK(detections.size() == 21);
  const auto expected = nlohmann::json::parse(read_fixture("expected.json"));
  for (const auto& [key, type] : {std::pair{"bbox", IouType::Bbox}, std::pair{"segm", IouType::Segm}}) {
    CAPTURE(key);
    const auto result = coco_evaluate(truth, detections, type);
    for (int i = 0; i < 6; ++i) {
      CAPTURE(i);
      CHECK(result.stats[i] == doctest::Approx(expected[key][i].get<double>()).epsilon(1e-6));
    }
  }
}

TEST_CASE("coco eval: RLE IoU and the crowd rule, malformed results") {
  std::vector<uint8_t> a(100, 0), b(100, 0);
  for (int i = 0; i < 40; ++i) a[i] = 1;        // rows 0-3
  for (int i = 20; i < 100; ++i) b[i] = 1;      // rows 2-9
  const Rle ra = rle_encode(a.data(), 10, 10), rb = rle_encode(b.data(), 10, 10);
  CHECK(rle_iou(ra, rb, false) == doctest::Approx(20.0 / 100));
  CHECK(rle_iou(ra, rb, true) == doctest::Approx(20.0 / 40));  // crowd truth: over the detection's area
  const CocoDataset truth = parse_coco(read_fixture("gt.json"), "gt.json");
  CHECK(test::error_of([&] { parse_results(R"([{"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}])", "r.json", truth); }) ==
        "r.json: [0]: image_id 9 is not in the ground truth");
  CHECK(test::error_of([&] { parse_results("{}", "r.json", truth); }) == "r.json: COCO results must be a JSON list, got object");
  CHECK(test::error_of([&] { parse_results(R"([{"image_id": 1e30, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}])", "r.json", truth); }) ==
        "r.json: [0]: image_id must be an integer in range, got 1e+30");
  CHECK(test::error_of([&] {
          parse_results(R"([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1, "segmentation": {"size": [1e20, 3], "counts": ""}}])",
                        "r.json", truth);
        }) == "r.json: [0]: segmentation size must be two integers, got [1e+20,3]");
}
