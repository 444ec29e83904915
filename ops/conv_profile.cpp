// Per-call convolution timing for `mrcnn bench --profile` (see ops/conv_profile.h).
#include "ops/conv_profile.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>

#include "tensor/error.h"
#include "tensor/tensor.h"

namespace mrcnn {

namespace {
std::atomic<bool> profiling{false};
std::mutex records_mutex;
std::vector<ops::ConvCallRecord> records;
// The route of the call being timed on this thread: the dispatchers append to it.
thread_local std::string* current_route = nullptr;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// "[4, 128, 64, 48] * [128, 128, 3, 3] s1 p1" in the op's own terms: a transposed conv's input is g's
// output and its weight [C, O/groups, kh, kw] has g's channels swapped.
std::string shape_of(const cpu::ConvGeometry& g, bool transposed) {
  const int64_t in_c = transposed ? g.out_channels : g.in_channels, in_h = transposed ? g.out_h : g.in_h,
                in_w = transposed ? g.out_w : g.in_w;
  // Either way the weight is [g.out_channels, g.in_channels / groups, kh, kw]: conv2d's [O, C/groups]
  // is g's, and conv_transpose2d's [C, O/groups] names g's channels from the other side.
  std::string s = str_cat("[", g.batch, ", ", in_c, ", ", in_h, ", ", in_w, "] * [", g.out_channels, ", ", g.in_channels / g.groups,
                          ", ", g.kernel_h, ", ", g.kernel_w, "]");
  const auto pair = [](int64_t a, int64_t b) { return a == b ? std::to_string(a) : str_cat(a, "x", b); };
  s += " s" + pair(g.stride.h, g.stride.w) + " p" + pair(g.padding.h, g.padding.w);
  if (g.dilation.h != 1 || g.dilation.w != 1) s += " d" + pair(g.dilation.h, g.dilation.w);
  if (g.groups != 1) s += str_cat(" g", g.groups);
  return s;
}
}  // namespace

namespace ops {

void set_conv_profiling(bool on) { profiling.store(on); }

std::vector<ConvCallRecord> conv_profile() {
  std::lock_guard<std::mutex> lock(records_mutex);
  std::vector<ConvCallRecord> sorted = records;
  std::stable_sort(sorted.begin(), sorted.end(), [](const ConvCallRecord& a, const ConvCallRecord& b) { return a.ms > b.ms; });
  return sorted;
}

void reset_conv_profile() {
  std::lock_guard<std::mutex> lock(records_mutex);
  records.clear();
}

namespace detail {

ConvCallTimer::ConvCallTimer(const char* op, const char* pass, const cpu::ConvGeometry& g, bool transposed, Device device)
    : on_(profiling.load()), op_(op), pass_(pass), g_(g), transposed_(transposed), device_(device) {
  if (!on_) return;
  // time this call's kernels only, not what was queued before (cuda/conv.cu names the route)
  if (device_.is_cuda()) device_synchronize();
  outer_route_ = current_route;
  current_route = &route_;
  start_ns_ = now_ns();
}

ConvCallTimer::~ConvCallTimer() {
  if (!on_) return;
  if (device_.is_cuda()) device_synchronize();
  const double ms = static_cast<double>(now_ns() - start_ns_) * 1e-6;
  current_route = outer_route_;
  const std::string shape = shape_of(g_, transposed_);
  const int64_t flops = 2 * g_.batch * g_.out_channels * g_.out_plane() * g_.col_rows();
  std::lock_guard<std::mutex> lock(records_mutex);
  auto it = std::find_if(records.begin(), records.end(), [&](const ConvCallRecord& r) {
    return r.op == op_ && r.pass == pass_ && r.shape == shape && r.route == route_;
  });
  if (it == records.end()) it = records.insert(records.end(), ConvCallRecord{op_, pass_, shape, route_});
  ++it->calls;
  it->ms += ms;
  it->flops += flops;
}

}  // namespace detail
}  // namespace ops

namespace cpu {
bool conv_route_wanted() { return current_route != nullptr; }

void note_conv_route(const char* route) {
  if (current_route == nullptr) return;
  if (!current_route->empty()) *current_route += " > ";
  *current_route += route;
}
}  // namespace cpu

}  // namespace mrcnn
