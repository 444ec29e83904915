// The CUDA API when the project is built without CUDA (MRCNN_CUDA=OFF or no nvcc/cuDNN): queries
// report no device and anything that would touch one throws a clear error.
#include <limits>

#include "cuda/allocator.h"
#include "cuda/boxes.h"
#include "cuda/context.h"
#include "cuda/conv.h"
#include "cuda/elementwise.h"
#include "cuda/index.h"
#include "cuda/interpolate.h"
#include "cuda/linalg.h"
#include "cuda/norm.h"
#include "cuda/optim.h"
#include "cuda/paste_masks.h"
#include "cuda/pool.h"
#include "cuda/reduce.h"
#include "cuda/roi_align.h"
#include "cuda/softmax.h"
#include "cuda/sort.h"

namespace mrcnn::cuda {

namespace {
[[noreturn]] void unavailable(const char* what) {
  throw Error(str_cat(what, ": this build has no CUDA support (configure with -DMRCNN_CUDA=ON on a machine with nvcc and cuDNN)"));
}
}  // namespace

bool built_with_cuda() { return false; }
int device_count() { return 0; }
bool is_available() { return false; }
std::string device_name(int) { unavailable("device_name"); }
std::string unavailable_reason() { return "built without CUDA"; }
std::string cublas_load_error() { return "built without CUDA"; }
void* device_malloc(size_t) { unavailable("CUDA tensor requested"); }
void device_free(void*) noexcept {}
void copy_host_to_device(void*, const void*, size_t) { unavailable("copy_host_to_device"); }
void copy_device_to_host(void*, const void*, size_t) { unavailable("copy_device_to_host"); }
void copy_device_to_device(void*, const void*, size_t) { unavailable("copy_device_to_device"); }
void memset_zero(void*, size_t) { unavailable("memset_zero"); }
void synchronize() {}
TransferStats transfer_stats() { return {}; }
void reset_transfer_stats() {}
void set_fill_uninitialized(bool) {}
GpuFmaPeak measure_fma_peak(double) { unavailable("measure_fma_peak"); }

void fill(const Tensor&, double) { unavailable("fill"); }
void copy_strided(const Tensor&, const Tensor&) { unavailable("copy"); }
void unary_forward(UnaryOp, double, double, const Tensor&, const Tensor&) { unavailable("unary op"); }
void binary_forward(BinaryOp, double, const Tensor&, const Tensor&, const Tensor&) { unavailable("binary op"); }
void compare_forward(CompareOp, const Tensor&, const Tensor&, const Tensor&) { unavailable("compare op"); }
void where_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&) { unavailable("where"); }
void sum_reduce(const Tensor&, int64_t, int64_t, int64_t, const Tensor&) { unavailable("sum"); }


MemoryStats memory_stats() { return {}; }
void empty_cache() {}
void reset_peak_memory() {}
void set_allow_tf32(bool) {}
bool allow_tf32() { return false; }
void set_deterministic(bool) {}
bool deterministic() { return false; }

void gemm_batched(bool, bool, int64_t, int64_t, int64_t, const Tensor&, int64_t, int64_t, const Tensor&, int64_t, int64_t,
                  const Tensor&, int64_t) { unavailable("matmul"); }
void set_pointwise_route(PointwiseRoute) {}
PointwiseRoute pointwise_route() { return PointwiseRoute::Timed; }
void conv_forward(const ConvShape&, const Tensor&, const Tensor&, const Tensor&) { unavailable("conv2d"); }
void conv_backward_input(const ConvShape&, const Tensor&, const Tensor&, const Tensor&) { unavailable("conv2d"); }
void conv_backward_weight(const ConvShape&, const Tensor&, const Tensor&, const Tensor&) { unavailable("conv2d"); }
void add_channel_bias(const Tensor&, const Tensor&) { unavailable("conv2d"); }
void set_conv_workspace_limit(size_t) {}
size_t conv_workspace_limit() { return std::numeric_limits<size_t>::max(); }
ConvWorkspaceRecord largest_conv_workspace() { return {}; }
void reset_conv_workspace_record() {}
void max_pool2d_forward(const PoolShape&, const Tensor&, const Tensor&, const Tensor&) { unavailable("max_pool2d"); }
void max_pool2d_backward(const PoolShape&, const Tensor&, const Tensor&, const Tensor&) { unavailable("max_pool2d"); }
void interpolate_forward(const ResizeTaps&, const Tensor&, const Tensor&) { unavailable("interpolate"); }
void interpolate_backward(const ResizeTaps&, const Tensor&, const Tensor&) { unavailable("interpolate"); }
void paste_masks(const Tensor&, const std::vector<PasteBox>&, int64_t, const Tensor&) { unavailable("paste_masks"); }
void channel_affine(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, const Tensor&, bool, const Tensor&) {
  unavailable("channel_affine");
}
void channel_affine_relu_input_grad(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, const Tensor&,
                                    const Tensor&) {
  unavailable("channel_affine_relu_input_grad");
}
void group_norm_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, int64_t,
                        const Tensor&) {
  unavailable("group_norm");
}
void group_norm_input_grad(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                           const Tensor&, int64_t, int64_t, int64_t, const Tensor&) {
  unavailable("group_norm");
}
void roi_align_forward(const RoiAlignShape&, const Tensor&, const Tensor&, const Tensor&) { unavailable("roi_align"); }
void roi_align_backward(const RoiAlignShape&, const Tensor&, const Tensor&, const Tensor&) { unavailable("roi_align"); }
void softmax_forward(const Tensor&, int64_t, int64_t, int64_t, bool, const Tensor&) { unavailable("softmax"); }
void arg_extreme(const Tensor&, int64_t, int64_t, int64_t, bool, const Tensor&, const Tensor&) { unavailable("max/min"); }
void index_select(const Tensor&, int64_t, int64_t, int64_t, const Tensor&, const Tensor&) { unavailable("index_select"); }
void index_add(const Tensor&, int64_t, int64_t, int64_t, const Tensor&, const Tensor&) { unavailable("index_add"); }
void gather_scatter(const Tensor&, int64_t, const Tensor&, const Tensor&, bool) { unavailable("gather/scatter_add"); }
void sort_rows(const Tensor&, int64_t, int64_t, bool, const Tensor&, const Tensor&) { unavailable("sort"); }
void box_area(const Tensor&, const Tensor&) { unavailable("box_area"); }
void box_iou(const Tensor&, const Tensor&, const Tensor&) { unavailable("box_iou"); }
void sgd_step(float*, const float*, float*, const SgdScalars<float>&, int64_t) { unavailable("sgd step"); }
void sgd_step(double*, const double*, double*, const SgdScalars<double>&, int64_t) { unavailable("sgd step"); }
void adamw_step(float*, const float*, float*, float*, const AdamWScalars<float>&, int64_t) { unavailable("adamw step"); }
void adamw_step(double*, const double*, double*, double*, const AdamWScalars<double>&, int64_t) { unavailable("adamw step"); }
void average_step(float*, const float*, float, int64_t) { unavailable("average step"); }
void average_step(double*, const double*, double, int64_t) { unavailable("average step"); }
std::vector<int64_t> nms_segments(const Tensor&, const Tensor&, const std::vector<int64_t>&, double, const Tensor&,
                                  const Tensor&) {
  unavailable("nms");
}
void decode_proposals(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const ProposalColumns&, const Tensor&,
                      const ProposalRule&, const Tensor&, const Tensor&, const Tensor&) {
  unavailable("decode_proposals");
}

}  // namespace mrcnn::cuda
