// Error-check macros for the CUDA runtime, cuBLAS and cuDNN: a failing call throws mrcnn::Error
// naming the call, the file and line, and the library's error string. Only included by .cu files.
#pragma once
#include <cuda_runtime.h>
#include <cudnn.h>

#include "cuda/cublas_api.h"
#include "tensor/error.h"

#define MRCNN_CUDA_CHECK(call)                                                                           \
  do {                                                                                                  \
    const cudaError_t mrcnn_status = (call);                                                            \
    if (mrcnn_status != cudaSuccess)                                                                    \
      throw ::mrcnn::Error(::mrcnn::str_cat("CUDA error at ", __FILE__, ":", __LINE__, ": ", #call, ": ", \
                                            cudaGetErrorString(mrcnn_status)));                         \
  } while (0)

#define MRCNN_CUBLAS_CHECK(call)                                                                         \
  do {                                                                                                  \
    const cublasStatus_t mrcnn_status = (call);                                                         \
    if (mrcnn_status != CUBLAS_STATUS_SUCCESS)                                                          \
      throw ::mrcnn::Error(::mrcnn::str_cat("cuBLAS error at ", __FILE__, ":", __LINE__, ": ", #call, ": ", \
                                            ::mrcnn::cuda::cublas().status_string(mrcnn_status)));       \
  } while (0)

#define MRCNN_CUDNN_CHECK(call)                                                                          \
  do {                                                                                                  \
    const cudnnStatus_t mrcnn_status = (call);                                                          \
    if (mrcnn_status != CUDNN_STATUS_SUCCESS)                                                           \
      throw ::mrcnn::Error(::mrcnn::str_cat("cuDNN error at ", __FILE__, ":", __LINE__, ": ", #call, ": ", \
                                            cudnnGetErrorString(mrcnn_status)));                        \
  } while (0)

// Checks the last kernel launch (launch-configuration errors surface here, not at the launch).
#define MRCNN_CUDA_CHECK_LAUNCH() MRCNN_CUDA_CHECK(cudaGetLastError())

namespace mrcnn::cuda {
cudaStream_t stream();          // the one stream all work goes to
cublasHandle_t cublas_handle();  // bound to stream()
cudnnHandle_t cudnn_handle();    // bound to stream()
}  // namespace mrcnn::cuda
