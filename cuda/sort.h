// CUDA sort for ops/sort.cpp. Plain C++: implemented in sort.cu, or by stubs.cpp.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace mrcnn::cuda {

// Sorts each row of contiguous x [lanes, n] (stable: equal keys keep their order) into values and
// indices (int64), both [lanes, n]. CUB's segmented radix sort.
void sort_rows(const Tensor& x, int64_t lanes, int64_t n, bool descending, const Tensor& values, const Tensor& indices);

}  // namespace mrcnn::cuda
