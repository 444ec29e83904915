// Tensor metadata, raw views, factories, copies between dtypes/devices, and printing.
#include "tensor/tensor.h"

#include <cmath>
#include <cstring>
#include <iomanip>
#include <sstream>

#include "cuda/context.h"
#include "cuda/elementwise.h"
#include "tensor/dispatch.h"
#include "tensor/parallel.h"
#include "tensor/strided_index.h"

namespace mrcnn {

TensorImpl& Tensor::impl() const {
  check(impl_ != nullptr, "operation on an undefined tensor");
  return *impl_;
}

int64_t Tensor::size(int64_t d) const { return sizes()[wrap_dim(d, dim(), "Tensor::size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "Tensor::stride")]; }
int64_t Tensor::numel() const { return shape_numel(sizes()); }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t d = dim() - 1; d >= 0; --d) {
    if (sizes()[d] == 1) continue;
    if (strides()[d] != expected) return false;
    expected *= sizes()[d];
  }
  return true;
}

void* Tensor::raw_data() const {
  return static_cast<char*>(storage()->data()) + offset() * static_cast<int64_t>(dtype_size(dtype()));
}

double Tensor::item_double() const {
  check(numel() == 1, "item: tensor of shape ", shape_str(sizes()), " has ", numel(),
        " elements, expected exactly one");
  const Tensor host = copy_as(*this, dtype(), kCPU);
  return dispatch_all(dtype(), [&](auto tag) {
    using T = decltype(tag);
    return static_cast<double>(*static_cast<const T*>(host.raw_data()));
  });
}

Tensor Tensor::as_strided(const Shape& new_sizes, const Shape& new_strides, int64_t new_offset) const {
  check(new_sizes.size() == new_strides.size(), "as_strided: ", new_sizes.size(), " sizes but ",
        new_strides.size(), " strides");
  auto view = std::make_shared<TensorImpl>();
  view->storage = storage();
  view->offset = new_offset;
  view->sizes = new_sizes;
  view->strides = new_strides;
  view->dtype = dtype();
  // Bounds: the furthest element must lie inside the storage.
  if (shape_numel(new_sizes) > 0) {
    int64_t last = new_offset;
    for (size_t d = 0; d < new_sizes.size(); ++d) last += (new_sizes[d] - 1) * new_strides[d];
    check(new_offset >= 0 && last < static_cast<int64_t>(storage()->nbytes() / dtype_size(dtype())),
          "as_strided: view ", shape_str(new_sizes), " with strides ", shape_str(new_strides),
          " at offset ", new_offset, " runs past the storage");
  }
  return Tensor(view);
}

Tensor Tensor::detach() const { return as_strided(sizes(), strides(), offset()); }

Tensor& Tensor::set_requires_grad(bool flag) {
  check(is_leaf(), "set_requires_grad: only leaf tensors can be flagged; use detach() first");
  check(!flag || is_floating(dtype()), "set_requires_grad: only floating tensors can require "
        "gradients, this one is ", dtype_name(dtype()));
  impl().requires_grad = flag;
  return *this;
}

// --- factories -----------------------------------------------------------------------------------

Tensor empty(const Shape& sizes, DType dtype, Device device) {
  const int64_t n = shape_numel(sizes);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(n) * dtype_size(dtype), device);
  impl->sizes = sizes;
  impl->strides = contiguous_strides(sizes);
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor full(const Shape& sizes, double value, DType dtype, Device device) {
  Tensor out = empty(sizes, dtype, device);
  if (device.is_cuda()) {
    cuda::fill(out, value);
    return out;
  }
  dispatch_all(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = out.data<T>();
    const T v = cast_value<T>(value);
    parallel_for(0, out.numel(), kParallelGrain, [&](int64_t b, int64_t e) { std::fill(p + b, p + e, v); });
  });
  return out;
}

Tensor zeros(const Shape& sizes, DType dtype, Device device) {
  if (!device.is_cuda()) return full(sizes, 0.0, dtype, device);
  Tensor out = empty(sizes, dtype, device);
  cuda::memset_zero(out.raw_data(), out.numel() * dtype_size(dtype));
  return out;
}
Tensor ones(const Shape& sizes, DType dtype, Device device) { return full(sizes, 1.0, dtype, device); }
Tensor scalar_tensor(double value, DType dtype, Device device) { return full({}, value, dtype, device); }
Tensor zeros_like(const Tensor& like) { return zeros(like.sizes(), like.dtype(), like.device()); }
Tensor ones_like(const Tensor& like) { return ones(like.sizes(), like.dtype(), like.device()); }
Tensor empty_like(const Tensor& like) { return empty(like.sizes(), like.dtype(), like.device()); }

Tensor arange(double start, double end, double step, DType dtype, Device device) {
  check(step != 0, "arange: step must be non-zero");
  check(std::isfinite(start) && std::isfinite(end) && std::isfinite(step), "arange: non-finite bounds");
  const double count = std::ceil((end - start) / step);
  const int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
  Tensor host = empty({n}, dtype, kCPU);
  dispatch_all(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = host.data<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = cast_value<T>(start + static_cast<double>(i) * step);
  });
  return device.is_cuda() ? copy_as(host, dtype, device) : host;
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& sizes, Device device) {
  check(static_cast<int64_t>(values.size()) == shape_numel(sizes), "from_vector: ", values.size(),
        " values do not fill shape ", shape_str(sizes));
  Tensor host = empty(sizes, DTypeOf<T>::value, kCPU);
  if (!values.empty()) std::memcpy(host.raw_data(), values.data(), values.size() * sizeof(T));
  return device.is_cuda() ? copy_as(host, host.dtype(), device) : host;
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, Device);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, Device);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, Device);
template Tensor from_vector<uint8_t>(const std::vector<uint8_t>&, const Shape&, Device);

template <typename T>
std::vector<T> to_vector(const Tensor& tensor) {
  const Tensor host = copy_as(tensor, DTypeOf<T>::value, kCPU);
  const T* p = host.data<T>();
  return std::vector<T>(p, p + host.numel());
}
template std::vector<float> to_vector<float>(const Tensor&);
template std::vector<double> to_vector<double>(const Tensor&);
template std::vector<int64_t> to_vector<int64_t>(const Tensor&);
template std::vector<uint8_t> to_vector<uint8_t>(const Tensor&);

// --- copies --------------------------------------------------------------------------------------

namespace {

void cpu_copy_strided(const Tensor& dst, const Tensor& src) {
  const auto index = make_strided_index<2>(dst.sizes(), {&dst, &src}, "copy");
  dispatch_all(dst.dtype(), [&](auto dst_tag) {
    using D = decltype(dst_tag);
    dispatch_all(src.dtype(), [&](auto src_tag) {
      using S = decltype(src_tag);
      D* out = static_cast<D*>(dst.raw_data());
      const S* in = static_cast<const S*>(src.raw_data());
      if (index.all_contiguous() && std::is_same_v<D, S>) {
        parallel_for(0, dst.numel(), kParallelGrain, [&](int64_t b, int64_t e) {
          std::memcpy(out + b, in + b, static_cast<size_t>(e - b) * sizeof(D));
        });
        return;
      }
      parallel_for(0, dst.numel(), kParallelGrain, [&](int64_t b, int64_t e) {
        index.for_each_offsets(b, e, [&](const int64_t* off) { out[off[0]] = cast_value<D>(in[off[1]]); });
      });
    });
  });
}

}  // namespace

void copy_into(const Tensor& dst, const Tensor& src) {
  check(dst.sizes() == src.sizes(), "copy: destination shape ", shape_str(dst.sizes()),
        " differs from source shape ", shape_str(src.sizes()));
  if (dst.numel() == 0) return;
  if (dst.device() != src.device()) {
    // Cross-device: stage a contiguous copy on the destination's device first.
    copy_into(dst, copy_as(src, dst.dtype(), dst.device()));
    return;
  }
  if (dst.device().is_cuda()) cuda::copy_strided(dst, src);
  else cpu_copy_strided(dst, src);
}

void device_synchronize() { cuda::synchronize(); }

Tensor copy_as(const Tensor& src, DType dtype, Device device) {
  Tensor out = empty(src.sizes(), dtype, device);
  if (out.numel() == 0) return out;
  const size_t nbytes = static_cast<size_t>(out.numel()) * dtype_size(dtype);
  if (src.device() == device) {
    copy_into(out, src);
  } else if (device.is_cuda() && src.device().is_cpu()) {
    const Tensor staged = (src.is_contiguous() && src.dtype() == dtype) ? src : copy_as(src, dtype, kCPU);
    cuda::copy_host_to_device(out.raw_data(), staged.raw_data(), nbytes);
  } else if (device.is_cpu() && src.device().is_cuda()) {
    const Tensor staged = (src.is_contiguous() && src.dtype() == dtype) ? src : copy_as(src, dtype, src.device());
    cuda::copy_device_to_host(out.raw_data(), staged.raw_data(), nbytes);
  } else {
    copy_into(out, copy_as(src, dtype, kCPU));  // between two GPUs, through the host
  }
  return out;
}

// --- printing ------------------------------------------------------------------------------------

namespace {

template <typename T>
void print_element(std::ostream& out, T v) {
  if constexpr (std::is_same_v<T, uint8_t>) out << (v ? "True" : "False");
  else if constexpr (std::is_same_v<T, int64_t>) out << v;
  else if (std::isnan(v)) out << "nan";
  else if (std::isinf(v)) out << (v > 0 ? "inf" : "-inf");
  else out << std::fixed << std::setprecision(4) << v;
}

// Prints dims recursively; with more than `kEdge`*2 entries in a dim, the middle is elided.
template <typename T>
void print_dims(std::ostream& out, const T* p, const Shape& sizes, const Shape& strides, size_t d, int indent,
                bool summarize) {
  constexpr int64_t kEdge = 3;
  if (d == sizes.size()) {
    print_element(out, *p);
    return;
  }
  out << '[';
  const int64_t n = sizes[d];
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && n > 2 * kEdge && i == kEdge) {
      out << "...";
      i = n - kEdge - 1;
      out << (d + 1 == sizes.size() ? ", " : ",\n" + std::string(static_cast<size_t>(indent + 1), ' '));
      continue;
    }
    print_dims(out, p + i * strides[d], sizes, strides, d + 1, indent + 1, summarize);
    if (i + 1 < n) out << (d + 1 == sizes.size() ? ", " : ",\n" + std::string(static_cast<size_t>(indent + 1), ' '));
  }
  out << ']';
}

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::ostringstream out;
  const Tensor host = copy_as(*this, dtype(), kCPU);
  out << "tensor(";
  dispatch_all(dtype(), [&](auto tag) {
    using T = decltype(tag);
    print_dims(out, host.data<T>(), host.sizes(), host.strides(), 0, 7, host.numel() > 1000);
  });
  if (dim() != 1 || numel() == 0) out << ", shape=" << shape_str(sizes());
  out << ", dtype=" << dtype_name(dtype());
  if (device().is_cuda()) out << ", device=" << device().str();
  if (requires_grad()) out << ", requires_grad=True";
  out << ')';
  return out.str();
}

std::ostream& operator<<(std::ostream& out, const Tensor& tensor) { return out << tensor.str(); }

}  // namespace mrcnn

namespace mrcnn {

namespace {

// out = a + b elementwise (out may be a itself); shapes, dtypes and devices already checked.
void add_elementwise(const Tensor& out, const Tensor& a, const Tensor& b) {
  if (out.numel() == 0) return;
  if (out.device().is_cuda()) {
    cuda::binary_forward(BinaryOp::Add, 0.0, a, b, out);
    return;
  }
  const bool contiguous = out.is_contiguous() && a.is_contiguous() && b.is_contiguous();
  const auto index = make_strided_index<3>(out.sizes(), {&out, &a, &b}, "add_same_shape");
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* o = static_cast<T*>(out.raw_data());
    const T* x = static_cast<const T*>(a.raw_data());
    const T* y = static_cast<const T*>(b.raw_data());
    parallel_for(0, out.numel(), kParallelGrain, [&](int64_t begin, int64_t end) {
      if (contiguous) {
        // The common case (fresh gradients): a loop the compiler vectorises.
        for (int64_t i = begin; i < end; ++i) o[i] = static_cast<T>(x[i] + y[i]);
        return;
      }
      index.for_each_offsets(begin, end, [&](const int64_t* off) { o[off[0]] = static_cast<T>(x[off[1]] + y[off[2]]); });
    });
  });
}

void check_same_shape(const char* what, const Tensor& a, const Tensor& b) {
  check(a.sizes() == b.sizes() && a.dtype() == b.dtype() && a.device() == b.device(), what, ": ",
        shape_str(a.sizes()), " ", dtype_name(a.dtype()), " vs ", shape_str(b.sizes()), " ", dtype_name(b.dtype()));
}

}  // namespace

Tensor add_same_shape(const Tensor& a, const Tensor& b) {
  check_same_shape("add_same_shape", a, b);
  Tensor out = empty_like(a);
  add_elementwise(out, a, b);
  return out;
}

void add_into(const Tensor& dst, const Tensor& src) {
  check_same_shape("add_into", dst, src);
  add_elementwise(dst, dst, src);
}

}  // namespace mrcnn
