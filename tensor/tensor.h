// Tensor: a strided view (sizes, strides, offset) into a Storage, plus the autograd metadata that
// makes it a node of the graph (requires_grad, grad, grad_fn). Differentiable operations on tensors
// live in ops/ as free functions (ops::reshape, ops::add, ...); this file holds only what needs no
// autograd: metadata, raw element access, factories and printing.
#pragma once
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/shape.h"
#include "tensor/storage.h"

namespace mrcnn {

namespace autograd {
class Node;
}

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape sizes;
  Shape strides;
  DType dtype = kFloat32;
  // Autograd: a leaf that requires grad accumulates into `grad`; a non-leaf has a grad_fn.
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<autograd::Node> grad_fn;
  std::shared_ptr<autograd::Node> grad_accumulator;  // cached for leaves; holds only a weak ref back
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& sizes() const { return impl().sizes; }
  const Shape& strides() const { return impl().strides; }
  int64_t size(int64_t dim) const;    // negative dims count from the end
  int64_t stride(int64_t dim) const;
  int64_t dim() const { return static_cast<int64_t>(impl().sizes.size()); }
  int64_t numel() const;
  int64_t offset() const { return impl().offset; }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }

  // Pointer to element [0, ..., 0]; T must match the dtype (uint8_t for bool).
  template <typename T> T* data() const {
    check(DTypeOf<T>::value == dtype(), "Tensor::data: tensor is ", dtype_name(dtype()),
          ", requested ", dtype_name(DTypeOf<T>::value));
    // Host code reading device memory would crash or read garbage: say so instead.
    check(!device().is_cuda(), "Tensor::data: the tensor is on ", device().str(),
          "; host code needs a CPU copy (ops::to(t, kCPU))");
    return static_cast<T*>(raw_data());
  }
  void* raw_data() const;
  // The single element of a one-element tensor, converted to T (copies from the GPU if needed).
  template <typename T> T item() const { return static_cast<T>(item_double()); }
  double item_double() const;

  // A view sharing storage, not recorded by autograd. ops/ builds differentiable views on this.
  Tensor as_strided(const Shape& sizes, const Shape& strides, int64_t offset) const;
  // Same data, cut from the graph: no grad_fn, requires_grad false.
  Tensor detach() const;

  // Autograd metadata.
  bool requires_grad() const { return impl().requires_grad; }
  // Only leaves (tensors without grad_fn) can be flagged; only floating tensors can require grad.
  Tensor& set_requires_grad(bool requires_grad);
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  const std::shared_ptr<autograd::Node>& grad_fn() const { return impl().grad_fn; }
  Tensor grad() const { return Tensor(impl().grad); }
  void set_grad(const Tensor& grad) { impl().grad = grad.impl_; }
  void zero_grad() { impl().grad.reset(); }

  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

  std::string str() const;  // PyTorch-like text: tensor([[1.0000, 2.0000]], dtype=float32)

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& out, const Tensor& tensor);
std::ostream& operator<<(std::ostream& out, const Shape& shape);

// --- factories -----------------------------------------------------------------------------------
Tensor empty(const Shape& sizes, DType dtype = kFloat32, Device device = kCPU);
Tensor zeros(const Shape& sizes, DType dtype = kFloat32, Device device = kCPU);
Tensor ones(const Shape& sizes, DType dtype = kFloat32, Device device = kCPU);
Tensor full(const Shape& sizes, double value, DType dtype = kFloat32, Device device = kCPU);
Tensor scalar_tensor(double value, DType dtype = kFloat32, Device device = kCPU);  // 0-d
// [start, end) in steps of `step`, like torch.arange.
Tensor arange(double start, double end, double step = 1, DType dtype = kInt64, Device device = kCPU);
inline Tensor arange(int64_t end, DType dtype = kInt64, Device device = kCPU) {
  return arange(0, static_cast<double>(end), 1, dtype, device);
}
Tensor zeros_like(const Tensor& like);
Tensor ones_like(const Tensor& like);
Tensor empty_like(const Tensor& like);  // contiguous, same dtype and device

// From host values; the vector's element type picks the dtype (uint8_t gives bool).
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& sizes, Device device = kCPU);
// A 1-D host tensor of the values (index lists, scores).
template <typename T>
Tensor from_vector(const std::vector<T>& values) {
  return from_vector(values, {static_cast<int64_t>(values.size())});
}
// Copies the elements (in logical order) to a host vector of T, converting from the tensor's dtype.
template <typename T>
std::vector<T> to_vector(const Tensor& tensor);

// Raw copy with cast to a new contiguous tensor; not recorded by autograd (ops::to and
// ops::contiguous add the graph). Handles every dtype pair and device pair.
Tensor copy_as(const Tensor& src, DType dtype, Device device);
// Element-wise copy of `src` into the (possibly strided) view `dst` of the same shape and dtype.
void copy_into(const Tensor& dst, const Tensor& src);
// Waits until the GPU has finished all queued work (no-op without one): for timing.
void device_synchronize();
// a + b for tensors of one shape, dtype and device, not recorded by autograd: the engine's
// gradient accumulation (which sits below ops/ and cannot call ops::add).
Tensor add_same_shape(const Tensor& a, const Tensor& b);
// dst += src in place (same shape, dtype and device; dst may be strided but must not overlap src
// except exactly): the engine's sum into a gradient buffer that only it holds.
void add_into(const Tensor& dst, const Tensor& src);

}  // namespace mrcnn
