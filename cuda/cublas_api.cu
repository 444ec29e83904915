// The cuBLAS function table (cublas_api.h): dlopen + dlsym of the few entry points we call.
#include <dlfcn.h>

#include <string>

#include "cuda/cublas_api.h"
#include "cuda/context.h"
#include "tensor/error.h"

namespace mrcnn::cuda {

namespace {

struct Loaded {
  CublasApi api{};
  std::string error;  // empty once every symbol resolved
};

template <typename F>
void resolve(void* library, const char* name, F& slot, std::string& error) {
  slot = reinterpret_cast<F>(dlsym(library, name));
  if (!slot && error.empty()) error = str_cat("symbol ", name, " not found");
}

Loaded load() {
  Loaded loaded;
  const std::string soname = str_cat("libcublas.so.", CUBLAS_VER_MAJOR);
  void* library = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
#ifdef MRCNN_CUBLAS_DIR
  if (!library) library = dlopen((std::string(MRCNN_CUBLAS_DIR) + "/" + soname).c_str(), RTLD_NOW | RTLD_LOCAL);
#endif
  if (!library) {
    const char* why = dlerror();
    loaded.error = str_cat("cannot load ", soname, " (", why ? why : "not found",
                           "): put the CUDA toolkit's library directory on LD_LIBRARY_PATH");
    return loaded;
  }
  std::string error;
  resolve(library, "cublasCreate_v2", loaded.api.create, error);
  resolve(library, "cublasSetStream_v2", loaded.api.set_stream, error);
  resolve(library, "cublasSetMathMode", loaded.api.set_math_mode, error);
  resolve(library, "cublasSgemmStridedBatched", loaded.api.sgemm_strided_batched, error);
  resolve(library, "cublasDgemmStridedBatched", loaded.api.dgemm_strided_batched, error);
  resolve(library, "cublasGetStatusString", loaded.api.status_string, error);
  if (!error.empty()) loaded.error = str_cat(soname, ": ", error);
  return loaded;
}

const Loaded& loaded() {
  static const Loaded instance = load();  // thread-safe one-time initialisation
  return instance;
}

}  // namespace

const CublasApi& cublas() {
  check(loaded().error.empty(), "cuBLAS: ", loaded().error);
  return loaded().api;
}

std::string cublas_load_error() { return loaded().error; }

}  // namespace mrcnn::cuda
