// Convolutions through cuDNN: forward, backward data and backward filter. The algorithm of each
// (shape, direction) is found once by cuDNN's own timing search and cached; workspaces come from the
// caching allocator, so after the first step a convolution allocates nothing from the driver.
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "cuda/allocator.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/conv.h"
#include "cuda/linalg.h"

namespace mrcnn::cuda {

namespace {

cudnnDataType_t data_type(DType dtype) {
  check(dtype == kFloat32 || dtype == kFloat64, "conv2d: CUDA supports float32 and float64, got ", dtype_name(dtype));
  return dtype == kFloat32 ? CUDNN_DATA_FLOAT : CUDNN_DATA_DOUBLE;
}

// The four descriptors of one convolution, destroyed with it.
struct Descriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  Descriptors(const ConvShape& s, DType dtype) {
    const cudnnDataType_t t = data_type(dtype);
    auto i = [](int64_t v) { return static_cast<int>(v); };
    MRCNN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
    MRCNN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
    MRCNN_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
    MRCNN_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    MRCNN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, t, i(s.batch), i(s.in_channels), i(s.in_h), i(s.in_w)));
    MRCNN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, t, i(s.batch), i(s.out_channels), i(s.out_h), i(s.out_w)));
    MRCNN_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, t, CUDNN_TENSOR_NCHW, i(s.out_channels), i(s.in_channels / s.groups),
                                                 i(s.kernel_h), i(s.kernel_w)));
    MRCNN_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, i(s.pad_h), i(s.pad_w), i(s.stride_h), i(s.stride_w),
                                                      i(s.dilation_h), i(s.dilation_w), CUDNN_CROSS_CORRELATION, t));
    MRCNN_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv, i(s.groups)));
    // FMA math keeps float32 convolutions off TF32 tensor cores unless TF32 was asked for.
    MRCNN_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, allow_tf32() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
  }
  ~Descriptors() {
    cudnnDestroyTensorDescriptor(x);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyConvolutionDescriptor(conv);
  }
  Descriptors(const Descriptors&) = delete;
  Descriptors& operator=(const Descriptors&) = delete;
};

// Scratch memory from the caching allocator for the duration of one call (stream-ordered reuse).
struct Workspace {
  void* ptr = nullptr;
  size_t bytes = 0;
  explicit Workspace(size_t n) : ptr(n ? device_malloc(n) : nullptr), bytes(n) {}
  ~Workspace() { device_free(ptr); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
};

enum class Direction { Forward, BackwardData, BackwardFilter };

std::string shape_key(const ConvShape& s, DType dtype, Direction d) {
  return str_cat(static_cast<int>(d), ' ', dtype_name(dtype), ' ', allow_tf32(), ' ', s.batch, ' ', s.in_channels, ' ', s.in_h, ' ',
                 s.in_w, ' ', s.out_channels, ' ', s.out_h, ' ', s.out_w, ' ', s.kernel_h, ' ', s.kernel_w, ' ', s.stride_h,
                 ' ', s.stride_w, ' ', s.pad_h, ' ', s.pad_w, ' ', s.dilation_h, ' ', s.dilation_w, ' ', s.groups);
}

// The fastest algorithm cuDNN's search reports as working, with the math type it was timed with
// (TF32 results are skipped unless TF32 is allowed). Cached per shape key.
template <typename Perf, typename Search>
Perf choose(const std::string& key, Search search) {
  static std::mutex mutex;
  static std::map<std::string, Perf> cache;
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  Perf results[16];
  int count = 0;
  search(results, 16, &count);
  for (int i = 0; i < count; ++i) {
    if (results[i].status != CUDNN_STATUS_SUCCESS) continue;
    if (!allow_tf32() && results[i].mathType == CUDNN_TENSOR_OP_MATH) continue;
    cache.emplace(key, results[i]);
    return results[i];
  }
  throw Error(str_cat("conv2d: cuDNN found no working algorithm for ", key));
}

template <typename T>
void run(DType dtype, T body) {
  if (dtype == kFloat32) {
    const float one = 1, zero = 0;
    body(static_cast<const void*>(&one), static_cast<const void*>(&zero));
  } else {
    const double one = 1, zero = 0;
    body(static_cast<const void*>(&one), static_cast<const void*>(&zero));
  }
}

void zero(const Tensor& t) {
  MRCNN_CUDA_CHECK(cudaMemsetAsync(t.raw_data(), 0, static_cast<size_t>(t.numel()) * dtype_size(t.dtype()), stream()));
}

}  // namespace

void conv_forward(const ConvShape& s, const Tensor& x, const Tensor& w, const Tensor& out) {
  if (out.numel() == 0) return;
  const Descriptors d(s, x.dtype());
  cudnnHandle_t h = cudnn_handle();
  const auto perf = choose<cudnnConvolutionFwdAlgoPerf_t>(shape_key(s, x.dtype(), Direction::Forward), [&](auto* r, int n, int* count) {
    MRCNN_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(h, d.x, d.w, d.conv, d.y, n, count, r));
  });
  MRCNN_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, perf.mathType));
  const Workspace ws(perf.memory);
  run(x.dtype(), [&](const void* one, const void* zero_value) {
    MRCNN_CUDNN_CHECK(cudnnConvolutionForward(h, one, d.x, x.raw_data(), d.w, w.raw_data(), d.conv, perf.algo, ws.ptr, ws.bytes,
                                              zero_value, d.y, out.raw_data()));
  });
}

void conv_backward_input(const ConvShape& s, const Tensor& dout, const Tensor& w, const Tensor& dx) {
  if (dx.numel() == 0) return;
  if (dout.numel() == 0) return zero(dx);
  const Descriptors d(s, dout.dtype());
  cudnnHandle_t h = cudnn_handle();
  const auto perf = choose<cudnnConvolutionBwdDataAlgoPerf_t>(shape_key(s, dout.dtype(), Direction::BackwardData),
                                                              [&](auto* r, int n, int* count) {
    MRCNN_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(h, d.w, d.y, d.conv, d.x, n, count, r));
  });
  MRCNN_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, perf.mathType));
  const Workspace ws(perf.memory);
  run(dout.dtype(), [&](const void* one, const void* zero_value) {
    MRCNN_CUDNN_CHECK(cudnnConvolutionBackwardData(h, one, d.w, w.raw_data(), d.y, dout.raw_data(), d.conv, perf.algo, ws.ptr,
                                                   ws.bytes, zero_value, d.x, dx.raw_data()));
  });
}

void conv_backward_weight(const ConvShape& s, const Tensor& dout, const Tensor& x, const Tensor& dw) {
  if (dw.numel() == 0) return;
  if (s.batch == 0 || dout.numel() == 0) return zero(dw);
  const Descriptors d(s, dout.dtype());
  cudnnHandle_t h = cudnn_handle();
  const auto perf = choose<cudnnConvolutionBwdFilterAlgoPerf_t>(shape_key(s, dout.dtype(), Direction::BackwardFilter),
                                                                [&](auto* r, int n, int* count) {
    MRCNN_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithm(h, d.x, d.y, d.conv, d.w, n, count, r));
  });
  MRCNN_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, perf.mathType));
  const Workspace ws(perf.memory);
  run(dout.dtype(), [&](const void* one, const void* zero_value) {
    MRCNN_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, one, d.x, x.raw_data(), d.y, dout.raw_data(), d.conv, perf.algo, ws.ptr,
                                                     ws.bytes, zero_value, d.w, dw.raw_data()));
  });
}

void add_channel_bias(const Tensor& y, const Tensor& bias) {
  if (y.numel() == 0) return;
  const cudnnDataType_t t = data_type(y.dtype());
  cudnnTensorDescriptor_t yd = nullptr, bd = nullptr;
  MRCNN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&yd));
  MRCNN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&bd));
  MRCNN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, t, static_cast<int>(y.size(0)), static_cast<int>(y.size(1)),
                                               static_cast<int>(y.size(2)), static_cast<int>(y.size(3))));
  MRCNN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(bd, CUDNN_TENSOR_NCHW, t, 1, static_cast<int>(y.size(1)), 1, 1));
  run(y.dtype(), [&](const void* one, const void*) {
    MRCNN_CUDNN_CHECK(cudnnAddTensor(cudnn_handle(), one, bd, bias.raw_data(), one, yd, y.raw_data()));
  });
  cudnnDestroyTensorDescriptor(yd);
  cudnnDestroyTensorDescriptor(bd);
}

}  // namespace mrcnn::cuda
