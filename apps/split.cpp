// `mrcnn split`: a COCO file into train and val files with no patient (file-name group) in both.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "apps/commands.h"
#include "maskrcnn/coco.h"

namespace mrcnn::apps {

std::string fmt(double v, const char* format) {
  if (!std::isfinite(v)) return "n/a";
  char text[64];
  std::snprintf(text, sizeof text, format, v);
  return text;
}

double mm2(int64_t pixels, double pixel_mm) { return static_cast<double>(pixels) * pixel_mm * pixel_mm; }

std::string counted(int64_t n, const std::string& noun) { return std::to_string(n) + " " + noun + (n == 1 ? "" : "s"); }

void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << text;
    if (text.empty() || text.back() != '\n') out << '\n';  // text files end in exactly one newline
    out << std::flush;  // a full disk shows here, not in the destructor
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);
      throw Error(str_cat(path, ": cannot write"));
    }
  }
  std::error_code error;
  std::filesystem::rename(tmp, path, error);
  check(!error, path, ": cannot write (", error.message(), ")");
}

void check_output_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::path folder = fs::absolute(fs::path(path), error).parent_path();
  check(!error && fs::is_directory(folder, error), path, ": cannot write (no folder ", folder.string(), ")");
  check(access(folder.c_str(), W_OK) == 0, path, ": cannot write (folder ", folder.string(), " is read-only)");
  check(!fs::is_directory(fs::path(path), error), path, ": cannot write (it is a folder)");
}

void check_output_folder(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code error;
  fs::path existing = fs::absolute(fs::path(path), error);
  while (!error && !fs::exists(existing, error) && existing.has_relative_path()) existing = existing.parent_path();
  check(!error, path, ": cannot create the folder (", error.message(), ")");
  check(fs::is_directory(existing, error), path, ": cannot create the folder (", existing.string(), " is a file)");
  check(access(existing.c_str(), W_OK) == 0, path, ": cannot write (", existing.string(), " is read-only)");
}

int split(const SplitOptions& options) {
  std::ifstream in(options.data, std::ios::binary);
  check(static_cast<bool>(in), options.data, ": cannot open");
  std::stringstream text;
  text << in.rdbuf();
  const auto result = detection::split_coco(text.str(), options.data, options.val_fraction, options.group_regex, options.seed);
  const std::filesystem::path data(options.data);
  const auto sibling = [&](const char* suffix) {
    return (data.parent_path() / (data.stem().string() + suffix)).string();
  };
  const std::string train = options.train_out.empty() ? sibling(".train.json") : options.train_out;
  const std::string val = options.val_out.empty() ? sibling(".val.json") : options.val_out;
  write_file_atomically(train, result.train_json);
  write_file_atomically(val, result.val_json);
  std::printf("split %s: train %lld groups / %lld images -> %s; val %lld groups / %lld images -> %s\n",
              options.data.c_str(), static_cast<long long>(result.train_groups), static_cast<long long>(result.train_images),
              train.c_str(), static_cast<long long>(result.val_groups), static_cast<long long>(result.val_images), val.c_str());
  return 0;
}

}  // namespace mrcnn::apps
