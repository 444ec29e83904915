// Where the convolutions' time goes, call by call (`mrcnn bench --profile`): while on, every
// conv2d / conv_transpose2d forward, input gradient and weight gradient is timed (on a GPU, with a
// wait before and after) and added up per (op, pass, shape, kernel route). Off by default: then a
// call costs a branch. The route is what the CPU dispatch chose (the direct kernel's tile,
// Winograd, the implicit-im2col GEMM, ...), noted by the dispatchers themselves, so it cannot
// drift from what ran.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ops/conv_geometry.h"
#include "tensor/dtype.h"

namespace mrcnn::ops {

struct ConvCallRecord {
  std::string op;     // "conv2d" or "conv_transpose2d"
  std::string pass;   // "forward", "input grad" or "weight grad"
  std::string shape;  // input * weight, then stride/padding/dilation/groups where not 1/0/1/1
  std::string route;  // the kernel(s) that ran
  int64_t calls = 0;
  double ms = 0;       // summed over calls
  int64_t flops = 0;   // 2 per multiply-add of the direct convolution, summed over calls
};

void set_conv_profiling(bool on);
// The records so far, slowest first; reset_conv_profile() clears them.
std::vector<ConvCallRecord> conv_profile();
void reset_conv_profile();

namespace detail {
// Times one call into the records when profiling is on (for `op`'s `pass`; g is the direct
// convolution the call runs, in the op's own terms for the shape column).
class ConvCallTimer {
 public:
  ConvCallTimer(const char* op, const char* pass, const cpu::ConvGeometry& g, bool transposed, Device device);
  ~ConvCallTimer();
  ConvCallTimer(const ConvCallTimer&) = delete;
  ConvCallTimer& operator=(const ConvCallTimer&) = delete;

 private:
  bool on_ = false;
  const char* op_;
  const char* pass_;
  cpu::ConvGeometry g_;
  bool transposed_ = false;
  Device device_;
  std::string route_;
  std::string* outer_route_ = nullptr;
  int64_t start_ns_ = 0;
};
}  // namespace detail

}  // namespace mrcnn::ops

namespace mrcnn::cpu {
// Called by the CPU conv dispatchers with the kernel they chose; appended to the route of the call
// being timed on this thread (nothing happens when none is). conv_route_wanted() says whether a
// call is being timed, for routes that cost something to name.
void note_conv_route(const char* route);
bool conv_route_wanted();
}  // namespace mrcnn::cpu
