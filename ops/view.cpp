// Views (shared storage, new sizes/strides) and copies, each wired into autograd.
#include "ops/view.h"

#include <algorithm>
#include <numeric>

#include "autograd/node.h"
#include "ops/reduce.h"

namespace mrcnn::ops {

using autograd::record;

namespace {

Shape infer_size(const Shape& requested, int64_t numel, const Shape& from, const char* op) {
  Shape sizes = requested;
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] == -1) {
      check(infer < 0, op, ": only one dimension can be -1, got ", shape_str(requested));
      infer = static_cast<int>(i);
    } else {
      check(sizes[i] >= 0, op, ": invalid size ", shape_str(requested));
      known *= sizes[i];
    }
  }
  if (infer >= 0) {
    check(known != 0 && numel % known == 0, op, ": shape ", shape_str(requested), " is invalid for input of shape ",
          shape_str(from));
    sizes[static_cast<size_t>(infer)] = numel / known;
  }
  check(shape_numel(sizes) == numel, op, ": shape ", shape_str(requested), " is invalid for input of shape ",
        shape_str(from), " (", numel, " elements)");
  return sizes;
}

}  // namespace

Tensor view(const Tensor& x, Shape sizes) {
  check(x.is_contiguous(), "view: input of shape ", shape_str(x.sizes()), " with strides ", shape_str(x.strides()),
        " is not contiguous; use reshape");
  const Shape out_sizes = infer_size(sizes, x.numel(), x.sizes(), "view");
  Tensor out = x.as_strided(out_sizes, contiguous_strides(out_sizes), x.offset());
  return record("view", out, {x}, [in_sizes = x.sizes()](const Tensor& d) {
    return std::vector<Tensor>{reshape(d, in_sizes)};
  });
}

Tensor reshape(const Tensor& x, Shape sizes) {
  const Shape out_sizes = infer_size(sizes, x.numel(), x.sizes(), "reshape");
  return x.is_contiguous() ? view(x, out_sizes) : view(contiguous(x), out_sizes);
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  if (x.dim() == 0) return reshape(x, {1});
  start_dim = wrap_dim(start_dim, x.dim(), "flatten");
  end_dim = wrap_dim(end_dim, x.dim(), "flatten");
  check(start_dim <= end_dim, "flatten: start_dim ", start_dim, " after end_dim ", end_dim);
  Shape sizes(x.sizes().begin(), x.sizes().begin() + start_dim);
  int64_t merged = 1;
  for (int64_t d = start_dim; d <= end_dim; ++d) merged *= x.sizes()[d];
  sizes.push_back(merged);
  sizes.insert(sizes.end(), x.sizes().begin() + end_dim + 1, x.sizes().end());
  return reshape(x, sizes);
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  check(static_cast<int64_t>(dims.size()) == x.dim(), "permute: ", dims.size(), " dims given for a tensor of shape ",
        shape_str(x.sizes()));
  Shape sizes(dims.size()), strides(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = wrap_dim(dims[i], x.dim(), "permute");
    check(inverse[d] < 0, "permute: dim ", d, " repeated in ", shape_str(dims));
    inverse[d] = static_cast<int64_t>(i);
    sizes[i] = x.sizes()[d];
    strides[i] = x.strides()[d];
  }
  Tensor out = x.as_strided(sizes, strides, x.offset());
  return record("permute", out, {x}, [inverse](const Tensor& d) { return std::vector<Tensor>{permute(d, inverse)}; });
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  std::vector<int64_t> dims(static_cast<size_t>(x.dim()));
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[wrap_dim(dim0, x.dim(), "transpose")], dims[wrap_dim(dim1, x.dim(), "transpose")]);
  return permute(x, dims);
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  check(x.dim() > 0, "slice: cannot slice a 0-d tensor");
  dim = wrap_dim(dim, x.dim(), "slice");
  check(step > 0, "slice: step must be positive, got ", step);
  const int64_t n = x.sizes()[dim];
  auto clamp_index = [n](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + n : i, 0, n); };
  start = clamp_index(start);
  end = std::max(start, clamp_index(end));
  Shape sizes = x.sizes(), strides = x.strides();
  sizes[dim] = (end - start + step - 1) / step;
  strides[dim] *= step;
  Tensor out = x.as_strided(sizes, strides, x.offset() + start * x.strides()[dim]);
  return record("slice", out, {x}, [in_sizes = x.sizes(), dim, start, step](const Tensor& d) {
    Tensor dx = zeros(in_sizes, d.dtype(), d.device());
    Shape window_strides = dx.strides();
    window_strides[dim] *= step;
    copy_into(dx.as_strided(d.sizes(), window_strides, start * dx.strides()[dim]), d);
    return std::vector<Tensor>{dx};
  });
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  check(x.dim() > 0, "narrow: cannot narrow a 0-d tensor");
  dim = wrap_dim(dim, x.dim(), "narrow");
  const int64_t n = x.sizes()[dim];
  if (start < 0) start += n;
  check(start >= 0 && length >= 0 && start + length <= n, "narrow: [", start, ", ", start + length,
        ") is out of range for dim ", dim, " of shape ", shape_str(x.sizes()));
  return slice(x, dim, start, start + length, 1);
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  dim = wrap_dim(dim, x.dim(), "select");
  const int64_t n = x.sizes()[dim];
  check(index >= -n && index < n, "select: index ", index, " out of range for dim ", dim, " of shape ",
        shape_str(x.sizes()));
  if (index < 0) index += n;
  return squeeze(narrow(x, dim, index, 1), dim);
}

Tensor expand(const Tensor& x, const Shape& sizes) {
  check(static_cast<int64_t>(sizes.size()) >= x.dim(), "expand: cannot expand shape ", shape_str(x.sizes()), " to ",
        shape_str(sizes));
  const int64_t lead = static_cast<int64_t>(sizes.size()) - x.dim();
  Shape out_sizes(sizes.size()), out_strides(sizes.size(), 0);
  for (int64_t d = 0; d < static_cast<int64_t>(sizes.size()); ++d) {
    if (d < lead) {
      check(sizes[d] >= 0, "expand: size -1 not allowed for new leading dim in ", shape_str(sizes));
      out_sizes[d] = sizes[d];
      continue;
    }
    const int64_t have = x.sizes()[d - lead];
    const int64_t want = sizes[d] == -1 ? have : sizes[d];
    check(have == want || have == 1, "expand: cannot expand shape ", shape_str(x.sizes()), " to ", shape_str(sizes));
    out_sizes[d] = want;
    out_strides[d] = have == want ? x.strides()[d - lead] : 0;
  }
  Tensor out = x.as_strided(out_sizes, out_strides, x.offset());
  return record("expand", out, {x}, [in_sizes = x.sizes()](const Tensor& d) {
    return std::vector<Tensor>{sum_to(d, in_sizes)};
  });
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  dim = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  Shape sizes = x.sizes(), strides = x.strides();
  const int64_t stride = dim < x.dim() ? x.strides()[dim] * x.sizes()[dim] : 1;
  sizes.insert(sizes.begin() + dim, 1);
  strides.insert(strides.begin() + dim, stride);
  Tensor out = x.as_strided(sizes, strides, x.offset());
  return record("unsqueeze", out, {x}, [in_sizes = x.sizes()](const Tensor& d) {
    return std::vector<Tensor>{reshape(d, in_sizes)};
  });
}

namespace {
Tensor squeeze_dims(const Tensor& x, const std::vector<bool>& drop) {
  Shape sizes, strides;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (drop[d]) continue;
    sizes.push_back(x.sizes()[d]);
    strides.push_back(x.strides()[d]);
  }
  Tensor out = x.as_strided(sizes, strides, x.offset());
  return record("squeeze", out, {x}, [in_sizes = x.sizes()](const Tensor& d) {
    return std::vector<Tensor>{reshape(d, in_sizes)};
  });
}
}  // namespace

Tensor squeeze(const Tensor& x) {
  std::vector<bool> drop(static_cast<size_t>(x.dim()));
  for (int64_t d = 0; d < x.dim(); ++d) drop[d] = x.sizes()[d] == 1;
  return squeeze_dims(x, drop);
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  if (x.dim() == 0) return squeeze_dims(x, {});
  dim = wrap_dim(dim, x.dim(), "squeeze");
  std::vector<bool> drop(static_cast<size_t>(x.dim()), false);
  drop[dim] = x.sizes()[dim] == 1;
  return squeeze_dims(x, drop);
}

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  return record("contiguous", copy_as(x, x.dtype(), x.device()), {x},
                [](const Tensor& d) { return std::vector<Tensor>{d}; });
}

Tensor clone(const Tensor& x) {
  return record("clone", copy_as(x, x.dtype(), x.device()), {x}, [](const Tensor& d) { return std::vector<Tensor>{d}; });
}

Tensor to(const Tensor& x, DType dtype) {
  if (dtype == x.dtype()) return x;
  if (!is_floating(dtype)) return copy_as(x, dtype, x.device());  // integers carry no gradient
  return record("to_dtype", copy_as(x, dtype, x.device()), {x},
                [from = x.dtype()](const Tensor& d) { return std::vector<Tensor>{copy_as(d, from, d.device())}; });
}

Tensor to(const Tensor& x, Device device) {
  if (device == x.device()) return x;
  return record("to_device", copy_as(x, x.dtype(), device), {x},
                [from = x.device()](const Tensor& d) { return std::vector<Tensor>{copy_as(d, d.dtype(), from)}; });
}

}  // namespace mrcnn::ops
