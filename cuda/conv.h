// cuDNN convolutions for ops/conv.cpp. Plain C++: implemented in conv.cu, or by stubs.cpp.
// All tensors are contiguous CUDA tensors of one float dtype; outputs are allocated by the caller.
#pragma once
#include <cstdint>
#include <string>

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
