// matmul and linear. Operands that are transposed views are handed to GEMM as transposed, without a copy.
#include "ops/linalg.h"

#include "autograd/node.h"
#include "cuda/linalg.h"
#include "ops/elementwise.h"
#include "ops/gemm.h"
#include "ops/reduce.h"
#include "ops/view.h"
#include "tensor/dispatch.h"
#include "tensor/flop_count.h"
#include "tensor/parallel.h"

namespace mrcnn::ops {

using autograd::record;

namespace {

// How GEMM reads the last two dims of an operand: row-major with leading dim `ld`, or transposed.
struct MatrixLayout {
  Tensor t;
  bool transposed = false;
  int64_t ld = 0;
};

bool row_major(const Tensor& x) {
  const int64_t nd = x.dim();
  const int64_t rows = x.sizes()[nd - 2], cols = x.sizes()[nd - 1];
  return x.strides()[nd - 1] == 1 && (x.strides()[nd - 2] >= std::max<int64_t>(cols, 1) || rows == 1);
}

bool column_major(const Tensor& x) {
  const int64_t nd = x.dim();
  const int64_t rows = x.sizes()[nd - 2], cols = x.sizes()[nd - 1];
  return x.strides()[nd - 2] == 1 && (x.strides()[nd - 1] >= std::max<int64_t>(rows, 1) || cols == 1);
}

MatrixLayout matrix_layout(const Tensor& x) {
  const int64_t nd = x.dim();
  const int64_t rows = x.sizes()[nd - 2], cols = x.sizes()[nd - 1];
  if (row_major(x)) return {x, false, rows == 1 ? std::max<int64_t>(cols, 1) : x.strides()[nd - 2]};
  if (column_major(x)) return {x, true, cols == 1 ? std::max<int64_t>(rows, 1) : x.strides()[nd - 1]};
  const Tensor c = contiguous(x.detach());
  return {c, false, std::max<int64_t>(cols, 1)};
}

Tensor matmul_forward(const Tensor& a, const Tensor& b) {
  const bool batched = a.dim() == 3;
  const int64_t batch = batched ? a.sizes()[0] : 1;
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  Tensor out = empty(batched ? Shape{batch, m, n} : Shape{m, n}, a.dtype(), a.device());
  count_flops(2 * batch * m * n * k);  // backward's products come through here too
  const MatrixLayout la = matrix_layout(a), lb = matrix_layout(b);
  if (a.device().is_cuda()) {
    const int64_t sa = batched ? la.t.strides()[0] : 0, sb = batched ? lb.t.strides()[0] : 0;
    cuda::gemm_batched(la.transposed, lb.transposed, m, n, k, la.t, la.ld, sa, lb.t, lb.ld, sb, out, batch);
    return out;
  }
  dispatch_floating(a.dtype(), "matmul", [&](auto tag) {
    using T = decltype(tag);
    const T* pa = static_cast<const T*>(la.t.raw_data());
    const T* pb = static_cast<const T*>(lb.t.raw_data());
    T* pc = out.data<T>();
    const int64_t sa = batched ? la.t.strides()[0] : 0, sb = batched ? lb.t.strides()[0] : 0;
    parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        cpu::gemm<T>(la.transposed, lb.transposed, m, n, k, pa + i * sa, la.ld, pb + i * sb, lb.ld, pc + i * m * n, n);
    });
  });
  return out;
}

// lhs @ rhs, stored the way `operand` is: an operand that is a transposed view (linear's weight^T)
// gets its gradient as (rhs^T lhs^T)^T, the transpose of a contiguous product, so that the gradient
// reaches the weight contiguous instead of being copied out of a transposed view there.
Tensor product_laid_out_like(const Tensor& operand, const Tensor& lhs, const Tensor& rhs) {
  if (operand.dim() != 2 || row_major(operand) || !column_major(operand)) return matmul(lhs, rhs);
  return transpose(matmul(transpose(rhs, -1, -2), transpose(lhs, -1, -2)), -1, -2);
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check(a.device() == b.device(), "matmul: tensors on different devices: ", a.device().str(), " and ", b.device().str());
  check(a.dtype() == b.dtype(), "matmul: dtype mismatch: ", dtype_name(a.dtype()), " and ", dtype_name(b.dtype()));
  if (a.dim() == 3 && b.dim() == 2) {
    // [B, M, K] @ [K, N] is one [B*M, K] @ [K, N] product.
    check(a.size(2) == b.size(0), "matmul: shapes ", shape_str(a.sizes()), " and ", shape_str(b.sizes()),
          " cannot be multiplied (", a.size(2), " != ", b.size(0), ")");
    return reshape(matmul(reshape(a, {-1, a.size(2)}), b), {a.size(0), a.size(1), b.size(1)});
  }
  const bool ok = (a.dim() == 2 && b.dim() == 2) || (a.dim() == 3 && b.dim() == 3 && a.size(0) == b.size(0));
  check(ok, "matmul: unsupported shapes ", shape_str(a.sizes()), " and ", shape_str(b.sizes()),
        " (supported: [M,K]@[K,N], [B,M,K]@[B,K,N], [B,M,K]@[K,N])");
  check(a.size(-1) == b.size(-2), "matmul: shapes ", shape_str(a.sizes()), " and ", shape_str(b.sizes()),
        " cannot be multiplied (", a.size(-1), " != ", b.size(-2), ")");
  return record("matmul", matmul_forward(a, b), {a, b},
                [a = a.detach(), b = b.detach(), need_a = a.requires_grad(), need_b = b.requires_grad()](const Tensor& d) {
                  // dA = dC B^T, dB = A^T dC; the transposes are views GEMM reads in place.
                  return std::vector<Tensor>{need_a ? product_laid_out_like(a, d, transpose(b, -1, -2)) : Tensor(),
                                             need_b ? product_laid_out_like(b, transpose(a, -1, -2), d) : Tensor()};
                });
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check(weight.dim() == 2, "linear: weight must be [out, in], got ", shape_str(weight.sizes()));
  check(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input ", shape_str(x.sizes()),
        " does not end in weight's in_features ", weight.size(1));
  if (bias.defined())
    check(bias.dim() == 1 && bias.size(0) == weight.size(0), "linear: bias ", shape_str(bias.sizes()),
          " does not match out_features ", weight.size(0));
  Shape out_shape = x.sizes();
  out_shape.back() = weight.size(0);
  Tensor y = matmul(reshape(x, {-1, weight.size(1)}), transpose(weight, 0, 1));
  if (bias.defined()) y = add(y, bias);
  return reshape(y, out_shape);
}

}  // namespace mrcnn::ops
