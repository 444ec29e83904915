// The one exception type of the project and `check`, which builds its message only on failure.
// Every layer throws mrcnn::Error; apps/ turns it into one error line and a non-zero exit.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace mrcnn {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

template <typename... Parts>
std::string str_cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

// check(shape_ok, "add: shapes ", a, " and ", b, " do not broadcast") throws Error when false.
template <typename... Parts>
inline void check(bool condition, const Parts&... parts) {
  if (!condition) throw Error(str_cat(parts...));
}

}  // namespace mrcnn
