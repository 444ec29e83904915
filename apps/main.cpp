// The `mrcnn` binary. For now: `version` (build facts: CUDA, threads) and `inspect` (list the tensors
// of a safetensors file). train/predict/eval/bench/selftest arrive with the model issues.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cuda/context.h"
#include "tensor/parallel.h"
#include "tensor/safetensors.h"

int main(int argc, char** argv) {
  CLI::App app{"mrcnn: Mask R-CNN in C++ (CPU and CUDA), from tensors to training"};
  app.require_subcommand(1);
  auto* version = app.add_subcommand("version", "print build and machine facts");
  auto* inspect = app.add_subcommand("inspect", "list the tensors and metadata of a safetensors file");
  std::string path;
  inspect->add_option("file", path, "a .safetensors file")->required();
  CLI11_PARSE(app, argc, argv);
  try {
    if (*version) {
      std::cout << "mrcnn 0.1\n"
                << "cuda: " << (mrcnn::cuda::built_with_cuda() ? "built" : "not built") << ", "
                << (mrcnn::cuda::is_available() ? "device " + mrcnn::cuda::device_name(0) : mrcnn::cuda::unavailable_reason())
                << "\nthreads: " << mrcnn::num_threads() << "\n";
    } else if (*inspect) {
      const auto file = mrcnn::safetensors::load(path);
      for (const auto& [key, value] : file.metadata) std::cout << "metadata " << key << " = " << value << "\n";
      for (const auto& [name, tensor] : file.tensors)
        std::cout << name << " " << mrcnn::dtype_name(tensor.dtype()) << " " << mrcnn::shape_str(tensor.sizes()) << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "mrcnn: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
