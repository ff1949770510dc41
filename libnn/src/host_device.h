// What code compiled both by the host compiler (the CPU backend) and by nvcc (kernels/) shares:
// NN_HOST_DEVICE marks a function for both sides, and the integer rounding every tiling plan uses.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define NN_HOST_DEVICE __host__ __device__
// Inlined wherever it is called: a transform's arithmetic must be compiled (and FMA-contracted)
// inside its caller, e.g. inside the CPU's AVX2-target functions.
#define NN_HOST_DEVICE_INLINE __host__ __device__ __forceinline__
#else
#define NN_HOST_DEVICE
#define NN_HOST_DEVICE_INLINE inline __attribute__((always_inline))
#endif

namespace nn {

// a / b rounded up, for a >= 0 and b > 0.
NN_HOST_DEVICE constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// a rounded up to a multiple of b, for a >= 0 and b > 0.
NN_HOST_DEVICE constexpr int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

}  // namespace nn
