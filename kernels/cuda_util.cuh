// What every CUDA kernel file shares: the stream nn's work runs on, launch sizing and grid-stride
// indexing, strided indexing over up to 8 dims, dtype dispatch, alignment tests, the device's SM
// count and scratch memory from nn's allocator (ceil_div and round_up come from host_device.h).
// Kernel wrappers start with `cudaStream_t s = stream_for(tensor);`, launch on s, and check each
// launch with NN_CUDA_CHECK_LAUNCH().
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "cuda_check.cuh"
#include "device_memory.h"
#include "host_device.h"
#include "kernel_table.h"

namespace nn::cuda {

// The stream all of nn's kernels and copies on device `index` are ordered on (created on first
// use; cuda_memory.cu). The caching allocator reuses freed blocks in this stream's order.
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

// A grid-stride loop over n items: for (i = thread_index(); i < n; i += thread_count()).
__device__ inline int64_t thread_index() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ inline int64_t thread_count() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

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

// Whether p is a multiple of `bytes` (a power of two), as vector loads and stores of that width need.
inline bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }
inline bool aligned16(const void* p) { return aligned(p, 16); }

// The current device's number of SMs (queried once per device), for sizing grids and splits.
inline int multiprocessor_count() {
  static std::atomic<int> cached[64] = {};
  int device = 0;
  NN_CUDA_CHECK(cudaGetDevice(&device));
  if (device < 0 || device >= 64) device = 0;
  int count = cached[device].load();
  if (count == 0) {
    NN_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    cached[device].store(count);
  }
  return count;
}

// Device scratch memory from nn's caching allocator for one scope (none for 0 bytes), freed when
// the scope ends. The allocator hands a freed block out again in the order of nn's stream for the
// device (cuda_memory.cu), so kernels queued on that stream may still be using it when it is freed;
// work on any other stream must be waited for first.
class ScratchBuffer {
 public:
  ScratchBuffer(size_t bytes, Device device) : device_(device) {
    if (bytes > 0) ptr_ = detail::device_allocate(bytes, device);
  }
  ~ScratchBuffer() {
    if (ptr_ != nullptr) detail::device_free(ptr_, device_);
  }
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  Device device_;
};

}  // namespace nn::cuda
