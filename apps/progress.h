// A one-line progress display on stderr: redrawn in place on a terminal, a plain line every
// `every` steps when stderr is a file or pipe (logs stay readable).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace mrcnn::apps {

class Progress {
 public:
  Progress(std::string label, int64_t total, int64_t every = 10);
  // done: steps finished so far (1..total); rate and ETA count only steps made in this process.
  void update(int64_t done, const std::string& detail = "");
  void finish();  // ends the line on a terminal
  double seconds() const;

 private:
  std::string label_;
  int64_t total_, every_, first_ = -1;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
};

std::string format_duration(double seconds);  // "1:02:03" or "2:03"

}  // namespace mrcnn::apps
