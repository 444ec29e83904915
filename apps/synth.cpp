// `mrcnn synth`: a synthetic MRI-like dataset for demos and tests when no real data is at hand.
// Each "patient" has a head of random shape; each slice shows a bright skull ring, smooth tissue
// texture, dark ventricles and, in most slices, one or two tumour blobs with irregular outlines.
// Tumours are COCO polygons (as Make Sense exports them) and the pixels drawn are exactly the
// polygons' rasterisation (pycocotools' rule), so the labels are pixel-exact. Deterministic per --seed.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "maskrcnn/image_io.h"
#include "maskrcnn/rle.h"
#include "tensor/random.h"

namespace mrcnn::apps {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Uniform draws from a seeded stream.
struct Draw {
  explicit Draw(uint64_t seed) : generator(seed) {}
  Generator generator;
  std::vector<double> buffer;
  size_t next = 0;
  double operator()(double lo = 0, double hi = 1) {
    if (next == buffer.size()) buffer = to_vector<double>(rand({256}, kFloat64, kCPU, &generator)), next = 0;
    return lo + (hi - lo) * buffer[next++];
  }
};

// Irregular closed outline: radius modulated by three random harmonics.
std::vector<double> blob_polygon(double cx, double cy, double ry, double rx, Draw& draw, int vertices = 28) {
  double amp[3], phase[3];
  for (int k = 0; k < 3; ++k) amp[k] = draw(0, 0.12), phase[k] = draw(0, 2 * M_PI);
  std::vector<double> xy;
  for (int v = 0; v < vertices; ++v) {
    const double t = 2 * M_PI * v / vertices;
    double r = 1;
    for (int k = 0; k < 3; ++k) r += amp[k] * std::sin((k + 2) * t + phase[k]);
    xy.push_back(cx + rx * r * std::cos(t));
    xy.push_back(cy + ry * r * std::sin(t));
  }
  return xy;
}

struct Slice {
  std::vector<uint8_t> rgb;
  std::vector<std::vector<double>> tumours;  // polygons
};

Slice make_slice(int64_t h, int64_t w, Draw& draw, const double head[4], bool with_tumour) {
  const double cy = head[0], cx = head[1], ry = head[2], rx = head[3];
  double freq[4][3];
  for (auto& f : freq) f[0] = draw(0.02, 0.12), f[1] = draw(0.02, 0.12), f[2] = draw(0, 2 * M_PI);
  // Ventricles: two dark ellipses near the centre.
  const double vy = cy + draw(-0.05, 0.05) * ry, vx = draw(0.12, 0.2) * rx, vr = draw(0.12, 0.2);
  Slice slice;
  std::vector<uint8_t> tumour(static_cast<size_t>(h * w), 0);
  std::vector<double> tumour_level;
  const int count = with_tumour ? (draw() < 0.8 ? 1 : 2) : 0;
  for (int t = 0; t < count; ++t) {
    // Inside the brain, away from the skull.
    const double a = draw(0, 2 * M_PI), d = draw(0.1, 0.55);
    const double ty = cy + d * ry * std::sin(a), tx = cx + d * rx * std::cos(a);
    const double size = draw(0.15, 0.3) * std::min(rx, ry);
    const auto polygon = blob_polygon(tx, ty, size * draw(0.7, 1.3), size * draw(0.7, 1.3), draw);
    const auto mask = detection::rle_decode(detection::rle_from_polygon(polygon, h, w));
    for (size_t i = 0; i < mask.size(); ++i) tumour[i] |= mask[i];
    slice.tumours.push_back(polygon);
  }
  const double tumour_brightness = draw(0.25, 0.4);
  slice.rgb.resize(static_cast<size_t>(h * w * 3));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const double dy = (y + 0.5 - cy) / ry, dx = (x + 0.5 - cx) / rx, r = std::sqrt(dy * dy + dx * dx);
      double v = 0.02;
      if (r < 1.0 && r > 0.9) v = 0.75;  // skull and scalp
      if (r <= 0.9) {
        v = 0.35;
        for (const auto& f : freq) v += 0.05 * std::sin(f[0] * x + f[1] * y + f[2]);
        const double v1 = ((y + 0.5 - vy) / (vr * ry)), v2a = ((x + 0.5 - cx - vx) / (0.5 * vr * rx)),
                     v2b = ((x + 0.5 - cx + vx) / (0.5 * vr * rx));
        if (v1 * v1 + v2a * v2a < 1 || v1 * v1 + v2b * v2b < 1) v = 0.12;
      }
      if (tumour[y * w + x]) v = 0.45 + tumour_brightness + 0.05 * std::sin(0.5 * x) * std::cos(0.4 * y);
      v += draw(-0.04, 0.04);  // scanner noise
      const auto g = static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 1.0) * 255));
      for (int k = 0; k < 3; ++k) slice.rgb[(y * w + x) * 3 + k] = g;
    }
  return slice;
}

json coco_file(const json& images, const json& annotations) {
  return {{"info", {{"description", "mrcnn synth: synthetic MRI-like slices"}}},
          {"images", images},
          {"annotations", annotations},
          {"categories", json::array({{{"id", 1}, {"name", "tumor"}, {"supercategory", "none"}}})}};
}

}  // namespace

int synth(const SynthOptions& o) {
  check(o.patients >= 2 && o.slices >= 1, "synth: needs --patients >= 2 and --slices >= 1");
  check(o.val_patients >= 1 && o.val_patients < o.patients, "synth: --val-patients must be in 1..patients-1");
  check(o.height >= 64 && o.width >= 64 && o.height <= 4096 && o.width <= 4096,
        "synth: --height and --width must be in 64..4096, got ", o.height, "x", o.width);
  const fs::path root(o.out);
  check_output_folder(o.out);
  fs::create_directories(root / "images");
  Draw draw(o.seed);
  json images[2] = {json::array(), json::array()}, annotations[2] = {json::array(), json::array()};
  int64_t image_id = 0, annotation_id = 0;
  for (int64_t p = 0; p < o.patients; ++p) {
    const int half = p >= o.patients - o.val_patients ? 1 : 0;
    const double head[4] = {o.height * draw(0.46, 0.54), o.width * draw(0.46, 0.54), o.height * draw(0.36, 0.44),
                            o.width * draw(0.32, 0.42)};
    for (int64_t s = 0; s < o.slices; ++s) {
      const bool with_tumour = draw() >= o.negative_fraction;
      const Slice slice = make_slice(o.height, o.width, draw, head, with_tumour);
      char name[64];
      std::snprintf(name, sizeof name, "p%03lld_%02lld.png", static_cast<long long>(p), static_cast<long long>(s));
      detection::write_png((root / "images" / name).string(), slice.rgb, o.height, o.width);
      ++image_id;
      images[half].push_back({{"id", image_id}, {"file_name", name}, {"width", o.width}, {"height", o.height}});
      for (const auto& polygon : slice.tumours) {
        double x0 = 1e9, y0 = 1e9, x1 = -1e9, y1 = -1e9;
        for (size_t i = 0; i < polygon.size(); i += 2)
          x0 = std::min(x0, polygon[i]), x1 = std::max(x1, polygon[i]), y0 = std::min(y0, polygon[i + 1]),
          y1 = std::max(y1, polygon[i + 1]);
        const auto rle = detection::rle_from_polygon(polygon, o.height, o.width);
        annotations[half].push_back({{"id", ++annotation_id}, {"image_id", image_id}, {"category_id", 1},
                                     {"segmentation", json::array({polygon})}, {"bbox", {x0, y0, x1 - x0, y1 - y0}},
                                     {"area", detection::rle_area(rle)}, {"iscrowd", 0}});
      }
    }
  }
  write_file_atomically((root / "train.json").string(), coco_file(images[0], annotations[0]).dump());
  write_file_atomically((root / "val.json").string(), coco_file(images[1], annotations[1]).dump());
  std::printf("synth: %lld train and %lld val images (%lld patients, %lld tumours) in %s\n",
              static_cast<long long>(images[0].size()), static_cast<long long>(images[1].size()),
              static_cast<long long>(o.patients), static_cast<long long>(annotation_id), o.out.c_str());
  return 0;
}

}  // namespace mrcnn::apps
