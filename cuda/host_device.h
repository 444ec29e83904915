// MRCNN_HD marks per-element functions that run both in CPU loops and in CUDA kernels, so one body
// serves both backends and its indexing is exercised by CPU tests on machines without a GPU.
#pragma once
#ifdef __CUDACC__
#define MRCNN_HD __host__ __device__
#else
#define MRCNN_HD
#endif
