// Shapes and strides: sizes are int64 like PyTorch, strides count elements, not bytes.
#pragma once
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace mrcnn {

using Shape = std::vector<int64_t>;

// "[2, 3]", formatted only when streamed or converted: check() arguments are evaluated on every
// call, so an eager string here cost a heap allocation per tensor op. Holds a pointer to the
// shape: use it within the expression that created it.
struct ShapeText {
  const Shape* shape;
  operator std::string() const;  // NOLINT(google-explicit-constructor)
};
inline ShapeText shape_str(const Shape& shape) { return ShapeText{&shape}; }
std::ostream& operator<<(std::ostream& out, ShapeText text);
int64_t shape_numel(const Shape& shape);     // throws on negative sizes or int64 overflow
Shape contiguous_strides(const Shape& shape);
// PyTorch broadcasting; `op` names the caller in the error message.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Wraps a negative dim (-1 = last) and checks the range; `ndim` 0 accepts -1 and 0.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

}  // namespace mrcnn
