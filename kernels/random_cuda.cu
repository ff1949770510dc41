// Random fills on CUDA from the same counter-based Philox stream as random_cpu.cpp: one thread per
// Philox block b (grid-stride), philox4x32(seed, counter + b) gives the 4 words of elements 2b and
// 2b+1, so every value depends only on (seed, counter, i) and equals the CPU's. Uniform and
// dropout use 24 random bits per f32 element (one word) or 53 per f64 (two words); normal is
// Box-Muller in double on the block's two 53-bit uniforms (1 - u1 keeps the log argument in
// (0, 1]), exactly the CPU's formula. Compute-bound on Philox (10 rounds per 2 elements).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cuda_util.cuh"
#include "nn/generator.h"

namespace nn::cuda {
namespace {

constexpr int kThreads = 256;

// Element j (0 or 1) of a block's uniform in [0, 1).
template <typename T>
__device__ inline T unit_from_block(const uint32_t w[4], int j) {
  if constexpr (std::is_same_v<T, float>) return uint_to_unit_float(w[2 * j]);
  else return uints_to_unit_double(w[2 * j], w[2 * j + 1]);
}

// low + (high - low) * u computed in double, kept below `top` (the largest T below high): in f32
// the rounded value can land on high.
template <typename T>
__global__ void random_uniform_kernel(T* out, int64_t n, uint64_t seed, uint64_t counter, double low, double high,
                                      T top) {
  const int64_t blocks = (n + 1) / 2;
  for (int64_t b = thread_index(); b < blocks; b += thread_count()) {
    uint32_t w[4];
    philox4x32(seed, counter + static_cast<uint64_t>(b), 0, w);
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int64_t i = 2 * b + j;
      if (i >= n) break;
      const T v = static_cast<T>(low + (high - low) * static_cast<double>(unit_from_block<T>(w, j)));
      out[i] = v < top ? v : top;
    }
  }
}

template <typename T>
__global__ void random_normal_kernel(T* out, int64_t n, uint64_t seed, uint64_t counter, double mean, double std) {
  const int64_t blocks = (n + 1) / 2;
  for (int64_t b = thread_index(); b < blocks; b += thread_count()) {
    uint32_t w[4];
    philox4x32(seed, counter + static_cast<uint64_t>(b), 0, w);
    const double u1 = 1.0 - uints_to_unit_double(w[0], w[1]);
    const double u2 = uints_to_unit_double(w[2], w[3]);
    const double r = ::sqrt(-2.0 * ::log(u1));
    const double z[2] = {r * ::cos(2 * M_PI * u2), r * ::sin(2 * M_PI * u2)};
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int64_t i = 2 * b + j;
      if (i >= n) break;
      out[i] = static_cast<T>(mean + std * z[j]);
    }
  }
}

// out[i] = uniform_i >= p ? 1/(1-p) : 0, the comparison in T as on the CPU.
template <typename T>
__global__ void dropout_mask_kernel(T* out, int64_t n, uint64_t seed, uint64_t counter, T threshold, T scale) {
  const int64_t blocks = (n + 1) / 2;
  for (int64_t b = thread_index(); b < blocks; b += thread_count()) {
    uint32_t w[4];
    philox4x32(seed, counter + static_cast<uint64_t>(b), 0, w);
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int64_t i = 2 * b + j;
      if (i >= n) break;
      out[i] = unit_from_block<T>(w, j) >= threshold ? scale : T(0);
    }
  }
}

int64_t philox_blocks(int64_t n) { return (n + 1) / 2; }

void random_uniform(Tensor& out, uint64_t seed, uint64_t counter, double low, double high) {
  NN_CHECK(out.is_contiguous(), "random_uniform: CUDA output must be dense");
  const int64_t n = out.numel();
  if (n == 0) return;
  cudaStream_t s = stream_for(out);
  dispatch_float(out.dtype(), "random_uniform", [&](auto tag) {
    using T = decltype(tag);
    const T top = high > low ? std::nextafter(static_cast<T>(high), static_cast<T>(low)) : static_cast<T>(high);
    random_uniform_kernel<T><<<blocks_for(philox_blocks(n), kThreads), kThreads, 0, s>>>(
        static_cast<T*>(out.raw_data()), n, seed, counter, low, high, top);
    NN_CUDA_CHECK_LAUNCH();
  });
}

void random_normal(Tensor& out, uint64_t seed, uint64_t counter, double mean, double std) {
  NN_CHECK(out.is_contiguous(), "random_normal: CUDA output must be dense");
  const int64_t n = out.numel();
  if (n == 0) return;
  cudaStream_t s = stream_for(out);
  dispatch_float(out.dtype(), "random_normal", [&](auto tag) {
    using T = decltype(tag);
    random_normal_kernel<T><<<blocks_for(philox_blocks(n), kThreads), kThreads, 0, s>>>(
        static_cast<T*>(out.raw_data()), n, seed, counter, mean, std);
    NN_CUDA_CHECK_LAUNCH();
  });
}

void dropout_mask(Tensor& out, uint64_t seed, uint64_t counter, double p_drop) {
  NN_CHECK(out.is_contiguous(), "dropout_mask: CUDA output must be dense");
  const int64_t n = out.numel();
  if (n == 0) return;
  cudaStream_t s = stream_for(out);
  dispatch_float(out.dtype(), "dropout_mask", [&](auto tag) {
    using T = decltype(tag);
    const T scale = static_cast<T>(1.0 / (1.0 - p_drop));
    const T threshold = static_cast<T>(p_drop);
    dropout_mask_kernel<T><<<blocks_for(philox_blocks(n), kThreads), kThreads, 0, s>>>(
        static_cast<T*>(out.raw_data()), n, seed, counter, threshold, scale);
    NN_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

void register_random_cuda(KernelTable& t) {
  t.random_uniform = random_uniform;
  t.random_normal = random_normal;
  t.dropout_mask = dropout_mask;
}

}  // namespace nn::cuda
