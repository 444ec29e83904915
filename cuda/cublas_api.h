// cuBLAS through a function table loaded on first use. Linking libcublas would load it (and the
// 500 MB libcublasLt behind it) into every process of a CUDA build: ~150 MB of memory and 0.2 s at
// start-up even for CPU-only runs, `mrcnn --help` included. CUDA-only header (included by .cu files).
#pragma once
#include <cublas_v2.h>

namespace mrcnn::cuda {

struct CublasApi {
  decltype(&cublasCreate_v2) create;
  decltype(&cublasSetStream_v2) set_stream;
  decltype(&cublasSetMathMode) set_math_mode;
  decltype(&cublasSgemmStridedBatched) sgemm_strided_batched;
  decltype(&cublasDgemmStridedBatched) dgemm_strided_batched;
  decltype(&cublasGetStatusString) status_string;
};

// Loads libcublas.so.<major> the first time (the dynamic linker's search path, then the toolkit
// directory recorded at build time); throws one Error naming the library and the reason otherwise.
const CublasApi& cublas();

}  // namespace mrcnn::cuda
