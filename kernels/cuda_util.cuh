// What every CUDA kernel file shares: the stream nn's work runs on, launch sizing, strided
// indexing over up to 8 dims, and dtype dispatch. Kernel wrappers start with
// `cudaStream_t s = stream_for(tensor);`, launch on s, and check each launch with
// NN_CUDA_CHECK_LAUNCH().
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_check.cuh"
#include "kernel_table.h"

namespace nn::cuda {

// The stream all of nn's kernels and copies on device `index` are ordered on (created on first
// use; cuda_runtime.cu). The caching allocator reuses freed blocks in this stream's order.
cudaStream_t stream(int index);

// Makes t's device current and returns its stream.
inline cudaStream_t stream_for(const Tensor& t) {
  NN_CUDA_CHECK(cudaSetDevice(t.device().index));
  return stream(t.device().index);
}

// Blocks for a grid-stride loop over n items with `threads` per block (at least 1, capped so
// huge tensors loop instead of launching millions of blocks).
inline unsigned blocks_for(int64_t n, int threads = 256) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks < 262144 ? blocks : 262144);
}

constexpr int kMaxDims = 8;

// Shape and strides (elements) of a tensor, passed by value to kernels.
struct StridedIndex {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t strides[kMaxDims];
};

inline StridedIndex make_index(const Tensor& t) {
  NN_CHECK(t.dim() <= kMaxDims, "CUDA kernels support at most ", kMaxDims, " dimensions, got ", t.dim());
  StridedIndex s{};
  s.ndim = static_cast<int>(t.dim());
  for (int d = 0; d < s.ndim; ++d) {
    s.shape[d] = t.shape()[d];
    s.strides[d] = t.strides()[d];
  }
  return s;
}

// Element offset of the row-major linear index `linear` in a strided tensor.
__device__ inline int64_t offset_of(const StridedIndex& s, int64_t linear) {
  int64_t off = 0;
  for (int d = s.ndim - 1; d >= 0; --d) {
    off += (linear % s.shape[d]) * s.strides[d];
    linear /= s.shape[d];
  }
  return off;
}

// f(float{}) or f(double{}); other dtypes are a clear error naming the kernel.
template <typename F>
void dispatch_float(DType dtype, const char* kernel, const F& f) {
  switch (dtype) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    default: NN_CHECK(false, kernel, ": dtype ", dtype_name(dtype), " is not supported on CUDA (use f32 or f64)");
  }
}

// For kernels written for f32 only (GEMM, convolution): a clear error otherwise.
inline void require_f32(const Tensor& t, const char* kernel) {
  NN_CHECK(t.dtype() == DType::f32, kernel, ": dtype ", dtype_name(t.dtype()),
           " is not supported on CUDA (this kernel is f32 only)");
}

}  // namespace nn::cuda
