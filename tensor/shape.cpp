// Shape arithmetic shared by every op: element counts, strides, broadcasting, dim wrapping.
#include "tensor/shape.h"

#include <limits>
#include <sstream>

#include "tensor/error.h"

namespace mrcnn {

std::ostream& operator<<(std::ostream& out, ShapeText text) {
  const Shape& shape = *text.shape;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  return out << ']';
}

ShapeText::operator std::string() const {
  std::ostringstream out;
  out << *this;
  return out.str();
}

std::ostream& operator<<(std::ostream& out, const Shape& shape) { return out << shape_str(shape); }

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) {
    check(s >= 0, "invalid shape ", shape_str(shape), ": negative size");
    check(s == 0 || n <= std::numeric_limits<int64_t>::max() / s, "invalid shape ", shape_str(shape),
          ": element count overflows int64");
    n *= s;
  }
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t sa = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t sb = i < n - b.size() ? 1 : b[i - (n - b.size())];
    check(sa == sb || sa == 1 || sb == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
          " cannot be broadcast together");
    out[i] = sa == 1 ? sb : sa;
  }
  return out;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  const int64_t n = std::max<int64_t>(ndim, 1);
  check(dim >= -n && dim < n, op, ": dim ", dim, " is out of range for a tensor with ", ndim,
        " dimensions");
  return dim < 0 ? dim + n : dim;
}

}  // namespace mrcnn
