// cuDNN convolutions for ops/conv.cpp. Plain C++: implemented in conv.cu, or by stubs.cpp.
// All tensors are contiguous CUDA tensors of one float dtype; outputs are allocated by the caller.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace mrcnn::cuda {

// The direct convolution x [batch, in_channels, in_h, in_w] * w [out_channels, in_channels/groups,
// kernel_h, kernel_w] -> [batch, out_channels, out_h, out_w]; a transposed convolution is described
// by the direct one it is the transpose of (as on the CPU side).
struct ConvShape {
  int64_t batch = 0, in_channels = 0, in_h = 0, in_w = 0, out_channels = 0, out_h = 0, out_w = 0;
  int64_t kernel_h = 0, kernel_w = 0, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
};

// The batch cuDNN's algorithm search is timed at for a convolution of batch n: n rounded up to a
// power of two, so a head whose batch is the number of RoIs searches once per octave, not once per
// count. (Header-only so CPU tests check it in every build.)
constexpr int64_t search_batch(int64_t n) {
  int64_t bucket = 1;
  while (bucket < n) bucket *= 2;
  return bucket;
}

// One algorithm of cuDNN's timing search, as it reports them (fastest first).
struct AlgorithmCandidate {
  bool succeeded = true;
  bool tensor_op_math = false;  // TF32 tensor cores (float32)
  size_t workspace = 0;
};

// Which candidate a convolution uses: the fastest that succeeded, is allowed (tensor-op math only
// with TF32) and needs at most limit_bytes of workspace; when none fits the limit, the allowed one
// needing the least (the faster of equals). -1 when none is allowed. Header-only: CPU tests check it.
inline int choose_algorithm(const std::vector<AlgorithmCandidate>& candidates, bool allow_tf32, size_t limit_bytes) {
  int fastest_fitting = -1, smallest = -1;
  for (int i = 0; i < static_cast<int>(candidates.size()); ++i) {
    const AlgorithmCandidate& c = candidates[static_cast<size_t>(i)];
    if (!c.succeeded || (c.tensor_op_math && !allow_tf32)) continue;
    if (fastest_fitting < 0 && c.workspace <= limit_bytes) fastest_fitting = i;
    if (smallest < 0 || c.workspace < candidates[static_cast<size_t>(smallest)].workspace) smallest = i;
  }
  return fastest_fitting >= 0 ? fastest_fitting : smallest;
}

// Whether an exact shape keeps its batch bucket's algorithm (else cuDNN searches the exact shape):
// when cuDNN accepts it there and its workspace fits the limit, or when it did not fit even at the
// bucket (the limit is below every algorithm's need there, so the least-hungry one was taken; a
// search per exact shape, one per new RoI count of the mask head, would end the same way).
inline bool keep_bucket_algorithm(bool usable_at_exact_shape, size_t exact_bytes, size_t bucket_bytes, size_t limit_bytes) {
  return usable_at_exact_shape && (exact_bytes <= limit_bytes || bucket_bytes > limit_bytes);
}

// The most workspace one convolution may take (`mrcnn --cudnn-workspace-limit`); by default none, so
// cuDNN's fastest algorithm is used whatever it needs. Algorithms already chosen for a shape are
// kept per limit: changing it chooses afresh.
void set_conv_workspace_limit(size_t bytes);
size_t conv_workspace_limit();

// How a pointwise convolution (1x1, stride 1, unpadded, one group) runs: cuBLAS products when they
// time faster than cuDNN's best algorithm at the search shape (Timed, the default), or always one
// of the two. MRCNN_POINTWISE_CONV=products or =cudnn in the environment sets the start value (for
// A/B benchmarks); the tests set it to check both routes. Plans made under one route are kept per route.
enum class PointwiseRoute { Timed, Products, Cudnn };
void set_pointwise_route(PointwiseRoute route);
PointwiseRoute pointwise_route();

void conv_forward(const ConvShape& s, const Tensor& x, const Tensor& w, const Tensor& out);
void conv_backward_input(const ConvShape& s, const Tensor& dout, const Tensor& w, const Tensor& dx);
void conv_backward_weight(const ConvShape& s, const Tensor& dout, const Tensor& x, const Tensor& dw);
// y[n, c, :, :] += bias[c] for y [N, C, H, W].
void add_channel_bias(const Tensor& y, const Tensor& bias);

// The largest workspace a convolution's chosen algorithm took from the allocator since the last
// reset, and which convolution it was (for `bench --profile`: workspaces count in the tensor-memory
// peak, and cuDNN's fastest algorithm may want hundreds of MB). Zero bytes and "" without CUDA.
struct ConvWorkspaceRecord {
  size_t bytes = 0;
  std::string convolution;  // "forward float32 x [2, 256, 128, 128] w [256, 256, 3, 3] stride 1 pad 1, algorithm 6"
};
ConvWorkspaceRecord largest_conv_workspace();
void reset_conv_workspace_record();

}  // namespace mrcnn::cuda
