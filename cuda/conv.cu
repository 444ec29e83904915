// Convolutions through cuDNN: forward, backward data and backward filter. The algorithm of each
// (shape, direction) is found by cuDNN's own timing search, once per batch bucket, and cached (a
// 1x1 convolution may run as cuBLAS products instead, when they time faster there);
// workspaces come from the caching allocator, so after the first steps a convolution allocates
// nothing from the driver.
#include <atomic>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "cuda/allocator.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/conv.h"
#include "cuda/linalg.h"
#include "ops/conv_profile.h"

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

// What differs between the three cuDNN directions: the perf record, the search, the workspace
// query and the call. `first` and `second` are the tensors in the order the public functions take
// them: forward (x, w), backward data (dout, w), backward filter (dout, x).
template <Direction D>
struct Call;

template <>
struct Call<Direction::Forward> {
  using Perf = cudnnConvolutionFwdAlgoPerf_t;
  static void find(cudnnHandle_t h, const Descriptors& d, int n, int* count, Perf* r) {
    MRCNN_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(h, d.x, d.w, d.conv, d.y, n, count, r));
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const Descriptors& d, const Perf& p, size_t* bytes) {
    return cudnnGetConvolutionForwardWorkspaceSize(h, d.x, d.w, d.conv, d.y, p.algo, bytes);
  }
  static void run(cudnnHandle_t h, const Descriptors& d, const Perf& p, const void* one, const void* zero, const Tensor& x,
                  const Tensor& w, void* ws, const Tensor& out) {
    MRCNN_CUDNN_CHECK(cudnnConvolutionForward(h, one, d.x, x.raw_data(), d.w, w.raw_data(), d.conv, p.algo, ws, p.memory, zero,
                                              d.y, out.raw_data()));
  }
};

template <>
struct Call<Direction::BackwardData> {
  using Perf = cudnnConvolutionBwdDataAlgoPerf_t;
  static void find(cudnnHandle_t h, const Descriptors& d, int n, int* count, Perf* r) {
    MRCNN_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(h, d.w, d.y, d.conv, d.x, n, count, r));
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const Descriptors& d, const Perf& p, size_t* bytes) {
    return cudnnGetConvolutionBackwardDataWorkspaceSize(h, d.w, d.y, d.conv, d.x, p.algo, bytes);
  }
  static void run(cudnnHandle_t h, const Descriptors& d, const Perf& p, const void* one, const void* zero, const Tensor& dout,
                  const Tensor& w, void* ws, const Tensor& dx) {
    MRCNN_CUDNN_CHECK(cudnnConvolutionBackwardData(h, one, d.w, w.raw_data(), d.y, dout.raw_data(), d.conv, p.algo, ws,
                                                   p.memory, zero, d.x, dx.raw_data()));
  }
};

template <>
struct Call<Direction::BackwardFilter> {
  using Perf = cudnnConvolutionBwdFilterAlgoPerf_t;
  static void find(cudnnHandle_t h, const Descriptors& d, int n, int* count, Perf* r) {
    MRCNN_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithm(h, d.x, d.y, d.conv, d.w, n, count, r));
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const Descriptors& d, const Perf& p, size_t* bytes) {
    return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, d.x, d.y, d.conv, d.w, p.algo, bytes);
  }
  static void run(cudnnHandle_t h, const Descriptors& d, const Perf& p, const void* one, const void* zero, const Tensor& dout,
                  const Tensor& x, void* ws, const Tensor& dw) {
    MRCNN_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, one, d.x, x.raw_data(), d.y, dout.raw_data(), d.conv, p.algo, ws,
                                                     p.memory, zero, d.w, dw.raw_data()));
  }
};

std::atomic<size_t> workspace_limit{std::numeric_limits<size_t>::max()};

// The start value of pointwise_route(): MRCNN_POINTWISE_CONV, read at the first convolution.
PointwiseRoute route_from_environment() {
  const char* value = std::getenv("MRCNN_POINTWISE_CONV");
  if (value == nullptr || *value == 0) return PointwiseRoute::Timed;
  const std::string v = value;
  if (v == "products") return PointwiseRoute::Products;
  if (v == "cudnn") return PointwiseRoute::Cudnn;
  throw Error(str_cat("MRCNN_POINTWISE_CONV: expected products or cudnn (or unset), got '", v, "'"));
}

std::atomic<int> route_setting{-1};  // -1: not yet read from the environment

std::string shape_key(const ConvShape& s, DType dtype, Direction d) {
  return str_cat(static_cast<int>(d), ' ', static_cast<int>(pointwise_route()), ' ', dtype_name(dtype), ' ', allow_tf32(), ' ',
                 workspace_limit.load(), ' ', s.batch, ' ', s.in_channels, ' ', s.in_h, ' ', s.in_w, ' ', s.out_channels, ' ',
                 s.out_h, ' ', s.out_w, ' ', s.kernel_h, ' ', s.kernel_w, ' ', s.stride_h, ' ', s.stride_w, ' ', s.pad_h, ' ',
                 s.pad_w, ' ', s.dilation_h, ' ', s.dilation_w, ' ', s.groups);
}

// The algorithm cuDNN's timing search reports for `searched` that choose_algorithm picks (the
// fastest allowed one within the workspace limit), with the math type it was timed with.
template <Direction D>
typename Call<D>::Perf search(cudnnHandle_t h, const Descriptors& searched, const std::string& key) {
  using Perf = typename Call<D>::Perf;
  Perf results[16];
  int count = 0;
  Call<D>::find(h, searched, 16, &count, results);
  std::vector<AlgorithmCandidate> candidates;
  for (int i = 0; i < count; ++i)
    candidates.push_back({results[i].status == CUDNN_STATUS_SUCCESS, results[i].mathType == CUDNN_TENSOR_OP_MATH, results[i].memory});
  const int chosen = choose_algorithm(candidates, allow_tf32(), workspace_limit.load());
  if (chosen < 0) throw Error(str_cat("conv2d: cuDNN found no working algorithm for ", key));
  return results[chosen];
}

// A 1x1 convolution with stride 1, no padding and one group is a matrix product per image over
// its h * w pixels (NCHW: each image's [channels, pixels] block is a row-major matrix). cuDNN's
// float32 FMA algorithms ran R50-FPN's (the bottleneck and lateral projections) at 7-26% of the
// FMA peak on an H200, these products at 29-35%.
bool pointwise(const ConvShape& s) {
  return s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0 &&
         s.groups == 1;
}

// Direction D of a pointwise convolution through cuBLAS, `first`, `second` as in Call<D>::run.
template <Direction D>
void convolve_as_products(const ConvShape& s, DType dtype, const void* first, const void* second, void* out) {
  const int64_t pixels = s.in_h * s.in_w, in_c = s.in_channels, out_c = s.out_channels;
  if constexpr (D == Direction::Forward) {  // out_n [out_c, pixels] = w [out_c, in_c] @ x_n [in_c, pixels]
    gemm_strided(dtype, false, false, out_c, pixels, in_c, second, in_c, 0, first, pixels, in_c * pixels, out, out_c * pixels,
                 s.batch, false);
  } else if constexpr (D == Direction::BackwardData) {  // dx_n [in_c, pixels] = w^T @ dout_n [out_c, pixels]
    gemm_strided(dtype, true, false, in_c, pixels, out_c, second, in_c, 0, first, pixels, out_c * pixels, out, in_c * pixels,
                 s.batch, false);
  } else {  // dw [out_c, in_c] = sum over n of dout_n [out_c, pixels] @ x_n^T, image after image
    const size_t bytes = dtype_size(dtype);
    for (int64_t n = 0; n < s.batch; ++n)
      gemm_strided(dtype, false, true, out_c, in_c, pixels, static_cast<const char*>(first) + n * out_c * pixels * bytes, pixels, 0,
                   static_cast<const char*>(second) + n * in_c * pixels * bytes, pixels, 0, out, 0, 1, n > 0);
  }
}

// The time of convolve_as_products at shape s, in ms (the mean of 3 runs after one to warm up),
// on scratch tensors: compared with the time cuDNN's search reported for its best algorithm.
template <Direction D>
float products_ms(const ConvShape& s, DType dtype, Device device) {
  const Shape x{s.batch, s.in_channels, s.in_h, s.in_w}, y{s.batch, s.out_channels, s.out_h, s.out_w},
      w{s.out_channels, s.in_channels, 1, 1};
  const Shape first = D == Direction::Forward ? x : y, second = D == Direction::BackwardFilter ? x : w,
              out = D == Direction::Forward ? y : D == Direction::BackwardData ? x : w;
  const Tensor a = empty(first, dtype, device), b = empty(second, dtype, device), c = empty(out, dtype, device);
  const auto run = [&] { convolve_as_products<D>(s, dtype, a.raw_data(), b.raw_data(), c.raw_data()); };
  run();
  cudaEvent_t start = nullptr, stop = nullptr;
  MRCNN_CUDA_CHECK(cudaEventCreate(&start));
  MRCNN_CUDA_CHECK(cudaEventCreate(&stop));
  MRCNN_CUDA_CHECK(cudaEventRecord(start, stream()));
  for (int i = 0; i < 3; ++i) run();
  MRCNN_CUDA_CHECK(cudaEventRecord(stop, stream()));
  MRCNN_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  MRCNN_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / 3;
}

// What runs one (shape, direction): cuDNN's algorithm, or for a pointwise convolution cuBLAS's
// products when they timed faster than that algorithm at the search shape.
template <Direction D>
struct Plan {
  typename Call<D>::Perf perf;
  bool products = false;
};

// The algorithm (and its workspace size) for one exact shape. The timing search runs once per
// shape with the batch rounded up to a power of two (search_batch): the mask head's batch is the
// number of RoIs, different at nearly every step, and a search per distinct count would cost more
// than the convolutions. The bucket's algorithm is checked against the exact shape by asking for its
// workspace; should cuDNN refuse it there (or want more than the limit, where it fitted at the
// bucket: keep_bucket_algorithm), the exact shape is searched.
// Both maps are per process.
// A pointwise convolution's choice between cuDNN and cuBLAS is made at the search shape too.
template <Direction D>
Plan<D> plan(cudnnHandle_t h, const ConvShape& s, DType dtype, const Descriptors& d, Device device) {
  static std::mutex mutex;
  static std::map<std::string, Plan<D>> by_shape, by_search_shape;
  std::lock_guard<std::mutex> lock(mutex);
  const std::string key = shape_key(s, dtype, D);
  if (auto it = by_shape.find(key); it != by_shape.end()) return it->second;
  ConvShape bucket = s;
  bucket.batch = search_batch(s.batch);
  const std::string bucket_key = shape_key(bucket, dtype, D);
  auto found = by_search_shape.find(bucket_key);
  if (found == by_search_shape.end()) {
    const Descriptors searched(bucket, dtype);
    Plan<D> searched_plan{search<D>(h, searched, bucket_key)};
    const PointwiseRoute route = pointwise_route();
    searched_plan.products = pointwise(bucket) && route != PointwiseRoute::Cudnn &&
                             (route == PointwiseRoute::Products || products_ms<D>(bucket, dtype, device) < searched_plan.perf.time);
    found = by_search_shape.emplace(bucket_key, searched_plan).first;
  }
  Plan<D> chosen = found->second;
  if (!chosen.products) {
    MRCNN_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, chosen.perf.mathType));
    size_t bytes = 0;
    const bool usable = Call<D>::workspace(h, d, chosen.perf, &bytes) == CUDNN_STATUS_SUCCESS;
    if (keep_bucket_algorithm(usable, bytes, found->second.perf.memory, workspace_limit.load())) chosen.perf.memory = bytes;
    else chosen.perf = search<D>(h, d, key);
  }
  by_shape.emplace(key, chosen);
  return chosen;
}

std::mutex workspace_record_mutex;
ConvWorkspaceRecord workspace_record;

template <Direction D>
void note_workspace(const ConvShape& s, DType dtype, size_t bytes, int algorithm) {
  std::lock_guard<std::mutex> lock(workspace_record_mutex);
  if (bytes <= workspace_record.bytes) return;
  const char* direction = D == Direction::Forward ? "forward" : D == Direction::BackwardData ? "backward data" : "backward filter";
  workspace_record = {bytes, str_cat(direction, ' ', dtype_name(dtype), " x [", s.batch, ", ", s.in_channels, ", ", s.in_h, ", ",
                                     s.in_w, "] w [", s.out_channels, ", ", s.in_channels / s.groups, ", ", s.kernel_h, ", ",
                                     s.kernel_w, "] stride ", s.stride_h, " pad ", s.pad_h, ", algorithm ", algorithm)};
}

// One convolution in direction D: out = op(first, second), overwritten.
template <Direction D>
void convolve(const ConvShape& s, const Tensor& first, const Tensor& second, const Tensor& out) {
  const DType dtype = first.dtype();
  const Descriptors d(s, dtype);
  cudnnHandle_t h = cudnn_handle();
  const Plan<D> chosen = plan<D>(h, s, dtype, d, first.device());
  if (chosen.products) {
    cpu::note_conv_route("cuBLAS (1x1 as products)");
    return convolve_as_products<D>(s, dtype, first.raw_data(), second.raw_data(), out.raw_data());
  }
  cpu::note_conv_route("cuDNN");
  const auto& perf = chosen.perf;
  MRCNN_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, perf.mathType));
  note_workspace<D>(s, dtype, perf.memory, static_cast<int>(perf.algo));
  const Workspace ws(perf.memory);
  if (dtype == kFloat32) {
    const float one = 1, zero = 0;
    Call<D>::run(h, d, perf, &one, &zero, first, second, ws.ptr, out);
  } else {
    const double one = 1, zero = 0;
    Call<D>::run(h, d, perf, &one, &zero, first, second, ws.ptr, out);
  }
}

void zero(const Tensor& t) {
  MRCNN_CUDA_CHECK(cudaMemsetAsync(t.raw_data(), 0, static_cast<size_t>(t.numel()) * dtype_size(t.dtype()), stream()));
}

}  // namespace

void set_pointwise_route(PointwiseRoute route) { route_setting.store(static_cast<int>(route)); }
PointwiseRoute pointwise_route() {
  if (route_setting.load() < 0) {
    int unread = -1;
    route_setting.compare_exchange_strong(unread, static_cast<int>(route_from_environment()));
  }
  return static_cast<PointwiseRoute>(route_setting.load());
}

void set_conv_workspace_limit(size_t bytes) { workspace_limit.store(bytes); }
size_t conv_workspace_limit() { return workspace_limit.load(); }

ConvWorkspaceRecord largest_conv_workspace() {
  std::lock_guard<std::mutex> lock(workspace_record_mutex);
  return workspace_record;
}

void reset_conv_workspace_record() {
  std::lock_guard<std::mutex> lock(workspace_record_mutex);
  workspace_record = {};
}

void conv_forward(const ConvShape& s, const Tensor& x, const Tensor& w, const Tensor& out) {
  if (out.numel() == 0) return;
  convolve<Direction::Forward>(s, x, w, out);
}

void conv_backward_input(const ConvShape& s, const Tensor& dout, const Tensor& w, const Tensor& dx) {
  if (dx.numel() == 0) return;
  if (dout.numel() == 0) return zero(dx);
  convolve<Direction::BackwardData>(s, dout, w, dx);
}

void conv_backward_weight(const ConvShape& s, const Tensor& dout, const Tensor& x, const Tensor& dw) {
  if (dw.numel() == 0) return;
  if (s.batch == 0 || dout.numel() == 0) return zero(dw);
  convolve<Direction::BackwardFilter>(s, dout, x, dw);
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
  const float one_f = 1;
  const double one_d = 1;
  const void* one = y.dtype() == kFloat32 ? static_cast<const void*>(&one_f) : static_cast<const void*>(&one_d);
  MRCNN_CUDNN_CHECK(cudnnAddTensor(cudnn_handle(), one, bd, bias.raw_data(), one, yd, y.raw_data()));
  cudnnDestroyTensorDescriptor(yd);
  cudnnDestroyTensorDescriptor(bd);
}

}  // namespace mrcnn::cuda
