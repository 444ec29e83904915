// Builds StridedIndex: broadcast strides per operand, with size-1 dims dropped and mergeable dims merged.
#include "tensor/strided_index.h"

namespace mrcnn {

template <int N>
StridedIndex<N> make_strided_index(const Shape& shape, const std::array<const Tensor*, N>& operands,
                                   const char* op) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  // Per dim (outermost first) the size and each operand's stride, 0 where it broadcasts.
  std::vector<int64_t> sizes;
  std::vector<std::array<int64_t, N>> strides;
  for (int64_t d = 0; d < nd; ++d) {
    if (shape[d] == 1) continue;
    std::array<int64_t, N> s{};
    for (int k = 0; k < N; ++k) {
      const Tensor& t = *operands[k];
      const int64_t td = d - (nd - t.dim());
      if (td < 0 || t.sizes()[td] == 1) {
        s[k] = 0;
      } else {
        check(t.sizes()[td] == shape[d], op, ": operand of shape ", shape_str(t.sizes()),
              " does not broadcast to ", shape_str(shape));
        s[k] = t.strides()[td];
      }
    }
    // Merge with the previous (outer) dim when, for every operand, stepping the outer dim equals
    // stepping past the whole inner dim.
    if (!sizes.empty()) {
      bool mergeable = true;
      for (int k = 0; k < N; ++k)
        if (strides.back()[k] != s[k] * shape[d]) mergeable = false;
      if (mergeable) {
        sizes.back() *= shape[d];
        strides.back() = s;
        continue;
      }
    }
    sizes.push_back(shape[d]);
    strides.push_back(s);
  }
  check(sizes.size() <= static_cast<size_t>(kMaxDims), op, ": shape ", shape_str(shape),
        " has more than ", kMaxDims, " non-mergeable dimensions");
  StridedIndex<N> index;
  index.ndim = static_cast<int>(sizes.size());
  int64_t count = 1;
  for (int d = 0; d < index.ndim; ++d) {
    index.sizes[d] = sizes[d];
    count *= sizes[d];
    for (int k = 0; k < N; ++k) index.strides[k][d] = strides[d][k];
  }
  // (An empty shape has a size-0 dim: no divider, and no element to locate anyway.)
  index.use_dividers = count > 0 && count <= cuda::kMaxDividedIndex;
  if (index.use_dividers)
    for (int d = 0; d < index.ndim; ++d) index.size_dividers[d] = cuda::IndexDivider(sizes[d]);
  return index;
}

template StridedIndex<1> make_strided_index<1>(const Shape&, const std::array<const Tensor*, 1>&, const char*);
template StridedIndex<2> make_strided_index<2>(const Shape&, const std::array<const Tensor*, 2>&, const char*);
template StridedIndex<3> make_strided_index<3>(const Shape&, const std::array<const Tensor*, 3>&, const char*);
template StridedIndex<4> make_strided_index<4>(const Shape&, const std::array<const Tensor*, 4>&, const char*);

}  // namespace mrcnn
