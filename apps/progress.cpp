#include "apps/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace mrcnn::apps {

std::string format_duration(double seconds) {
  const int64_t s = std::isfinite(seconds) ? static_cast<int64_t>(seconds + 0.5) : 0;
  char text[32];
  if (s >= 3600) {
    std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(text, sizeof text, "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  }
  return text;
}

Progress::Progress(std::string label, int64_t total, int64_t every)
    : label_(std::move(label)), total_(total), every_(every), tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()) {}

double Progress::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t done, const std::string& detail) {
  if (first_ < 0) first_ = done - 1;
  if (!tty_ && done % every_ != 0 && done != total_) return;
  const double elapsed = seconds();
  const double rate = elapsed > 0 ? static_cast<double>(done - first_) / elapsed : 0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : 0;
  constexpr int kWidth = 24;
  const int filled = total_ > 0 ? static_cast<int>(kWidth * done / total_) : kWidth;
  std::string bar(static_cast<size_t>(filled), '=');
  bar.resize(kWidth, ' ');
  std::fprintf(stderr, "%s%s %lld/%lld [%s] %.2f it/s ETA %s %s%s", tty_ ? "\r\033[K" : "", label_.c_str(),
               static_cast<long long>(done), static_cast<long long>(total_), bar.c_str(), rate,
               format_duration(eta).c_str(), detail.c_str(), tty_ ? "" : "\n");
  std::fflush(stderr);
}

void Progress::finish() {
  if (tty_) std::fprintf(stderr, "\n");
}

}  // namespace mrcnn::apps
