// cat/stack copy each input into its slot of the output; split returns narrow views.
#include "ops/join.h"

#include "autograd/node.h"
#include "ops/view.h"

namespace mrcnn::ops {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  check(!tensors.empty(), "cat: expected a non-empty list of tensors");
  const Tensor& first = tensors.front();
  check(first.dim() > 0, "cat: zero-dimensional tensors cannot be concatenated");
  dim = wrap_dim(dim, first.dim(), "cat");
  Shape out_shape = first.sizes();
  out_shape[dim] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    check(t.dtype() == first.dtype() && t.device() == first.device(), "cat: tensor ", i, " is ",
          dtype_name(t.dtype()), " on ", t.device().str(), ", tensor 0 is ", dtype_name(first.dtype()), " on ",
          first.device().str());
    bool same = t.dim() == first.dim();
    for (int64_t d = 0; same && d < t.dim(); ++d) same = d == dim || t.sizes()[d] == first.sizes()[d];
    check(same, "cat: tensor ", i, " has shape ", shape_str(t.sizes()), ", which does not match ",
          shape_str(first.sizes()), " except in dim ", dim);
    out_shape[dim] += t.sizes()[dim];
  }
  Tensor out = empty(out_shape, first.dtype(), first.device());
  std::vector<int64_t> sizes;
  int64_t offset = 0;
  for (const Tensor& t : tensors) {
    Shape window = out_shape;
    window[dim] = t.sizes()[dim];
    copy_into(out.as_strided(window, out.strides(), offset * out.strides()[dim]), t);
    offset += t.sizes()[dim];
    sizes.push_back(t.sizes()[dim]);
  }
  return autograd::record("cat", out, tensors, [dim, sizes](const Tensor& d) { return split(d, sizes, dim); });
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  check(!tensors.empty(), "stack: expected a non-empty list of tensors");
  dim = wrap_dim(dim, tensors.front().dim() + 1, "stack");
  std::vector<Tensor> expanded;
  for (size_t i = 0; i < tensors.size(); ++i) {
    check(tensors[i].sizes() == tensors[0].sizes(), "stack: tensor ", i, " has shape ", shape_str(tensors[i].sizes()),
          ", tensor 0 has ", shape_str(tensors[0].sizes()));
    expanded.push_back(unsqueeze(tensors[i], dim));
  }
  return cat(expanded, dim);
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  check(x.dim() > 0, "split: cannot split a 0-d tensor");
  dim = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    check(s >= 0, "split: negative size in ", shape_str(sizes));
    total += s;
  }
  check(total == x.sizes()[dim], "split: sizes ", shape_str(sizes), " sum to ", total, " but dim ", dim, " of ",
        shape_str(x.sizes()), " has ", x.sizes()[dim]);
  std::vector<Tensor> pieces;
  int64_t start = 0;
  for (int64_t s : sizes) {
    pieces.push_back(narrow(x, dim, start, s));
    start += s;
  }
  return pieces;
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  check(split_size > 0, "split: split_size must be positive, got ", split_size);
  check(x.dim() > 0, "split: cannot split a 0-d tensor");
  const int64_t n = x.size(dim);
  std::vector<int64_t> sizes;
  for (int64_t start = 0; start < n; start += split_size) sizes.push_back(std::min(split_size, n - start));
  if (sizes.empty()) sizes.push_back(0);
  return split(x, sizes, dim);
}

}  // namespace mrcnn::ops
