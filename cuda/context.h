// The CUDA context as the rest of the project sees it: device query, one stream, device memory and
// host<->device copies. Plain C++: implemented in context.cu, or by stubs.cpp when CUDA is off.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace mrcnn::cuda {

bool built_with_cuda();
int device_count();       // 0 when built without CUDA or when no driver/device is present
bool is_available();      // device_count() > 0
std::string device_name(int index);
// Why is_available() is false, for SKIPPED lines: "built without CUDA", "no CUDA device: ...".
std::string unavailable_reason();
// "" when cuBLAS (loaded on first use, not at start-up: cublas_api.h) is usable, else why not.
std::string cublas_load_error();

void* device_malloc(size_t nbytes);
void device_free(void* ptr) noexcept;
void copy_host_to_device(void* dst, const void* src, size_t nbytes);
void copy_device_to_host(void* dst, const void* src, size_t nbytes);  // waits for the stream
void copy_device_to_device(void* dst, const void* src, size_t nbytes);
void memset_zero(void* dst, size_t nbytes);
void synchronize();
// Copies between host and GPU since the last reset: every download makes the host wait for the
// GPU's queue, so `downloads` per training step is how often the pipeline drains (bench --profile).
// The waits' time: downloads (the GPU's queue up to the copy, and the copy), and uploads (only when
// the staging ring's space is still being read by the GPU).
struct TransferStats {
  int64_t downloads = 0, download_bytes = 0, uploads = 0, upload_bytes = 0;
  int64_t download_wait_ns = 0, upload_wait_ns = 0;
};
TransferStats transfer_stats();
void reset_transfer_stats();
// The GPU's float32 FMA throughput, measured like the CPU's (ops/fma_peak.h): every SM full of
// threads running independent FMA chains in registers, about `seconds`, best of three. Also what
// bounds it: SMs x 128 float32 lanes (the most any NVIDIA SM has had) x 2 flops x the maximum clock.
struct GpuFmaPeak {
  double gflops = 0;
  int multiprocessors = 0;
  double max_clock_ghz = 0;
};
GpuFmaPeak measure_fma_peak(double seconds = 0.05);
// Tests: every block handed out is first filled with 0xFF bytes (NaN for floats, -1 for int64), so an
// output element a kernel forgot to write shows up in a comparison.
void set_fill_uninitialized(bool fill);

}  // namespace mrcnn::cuda
