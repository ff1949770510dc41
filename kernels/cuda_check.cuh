// NN_CUDA_CHECK(expr): every CUDA runtime call and every launch goes through it; a failure throws
// nn::Error naming the call, the file and the CUDA error string.
#pragma once

#include <cuda_runtime.h>

#include "nn/error.h"

#define NN_CUDA_CHECK(expr)                                                                         \
  do {                                                                                              \
    cudaError_t nn_cuda_status_ = (expr);                                                           \
    NN_CHECK(nn_cuda_status_ == cudaSuccess, "CUDA error in ", #expr, " at ", __FILE__, ":", __LINE__, \
             ": ", cudaGetErrorString(nn_cuda_status_));                                            \
  } while (0)

// After a kernel launch: catches launch-configuration errors right away.
#define NN_CUDA_CHECK_LAUNCH() NN_CUDA_CHECK(cudaGetLastError())
