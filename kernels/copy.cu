// fill and strided copy (with dtype conversion) on CUDA: one thread per output element, grid-stride
// loop; index arithmetic over up to 8 dims. Memory-bound: one read and one write per element.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_check.cuh"
#include "kernel_table.h"

namespace nn::cuda {
namespace {

constexpr int kMaxDims = 8;

struct StridedIndex {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t strides[kMaxDims];
};

StridedIndex make_index(const Tensor& t) {
  NN_CHECK(t.dim() <= kMaxDims, "CUDA copy: at most ", kMaxDims, " dimensions are supported, got ", t.dim());
  StridedIndex s{};
  s.ndim = static_cast<int>(t.dim());
  for (int d = 0; d < s.ndim; ++d) {
    s.shape[d] = t.shape()[d];
    s.strides[d] = t.strides()[d];
  }
  return s;
}

__device__ inline int64_t offset_of(const StridedIndex& s, int64_t linear) {
  int64_t off = 0;
  for (int d = s.ndim - 1; d >= 0; --d) {
    off += (linear % s.shape[d]) * s.strides[d];
    linear /= s.shape[d];
  }
  return off;
}

template <typename T>
__global__ void fill_kernel(T* out, StridedIndex index, int64_t n, T value) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[offset_of(index, i)] = value;
}

template <typename S, typename D>
__global__ void copy_kernel(const S* src, StridedIndex src_index, D* dst, StridedIndex dst_index, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[offset_of(dst_index, i)] = static_cast<D>(src[offset_of(src_index, i)]);
}

unsigned grid_for(int64_t n) {
  int64_t blocks = (n + 255) / 256;
  return static_cast<unsigned>(blocks < 65535 ? blocks : 65535);
}

template <typename F>
void dispatch_cuda_dtype(DType dtype, const char* kernel, const F& f) {
  switch (dtype) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    case DType::i64: f(int64_t{}); return;
    case DType::i32: f(int32_t{}); return;
    case DType::u8: f(uint8_t{}); return;
    default: NN_CHECK(false, kernel, ": dtype ", dtype_name(dtype), " is not supported on CUDA yet");
  }
}

void fill(Tensor& out, double value) {
  NN_CUDA_CHECK(cudaSetDevice(out.device().index));
  dispatch_cuda_dtype(out.dtype(), "fill", [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = out.numel();
    fill_kernel<T><<<grid_for(n), 256>>>(static_cast<T*>(out.raw_data()), make_index(out), n, static_cast<T>(value));
    NN_CUDA_CHECK_LAUNCH();
  });
}

void copy(const Tensor& src, Tensor& dst) {
  NN_CHECK(src.device() == dst.device(), "CUDA copy: tensors on ", src.device(), " and ", dst.device());
  NN_CUDA_CHECK(cudaSetDevice(dst.device().index));
  dispatch_cuda_dtype(src.dtype(), "copy", [&](auto src_tag) {
    using S = decltype(src_tag);
    dispatch_cuda_dtype(dst.dtype(), "copy", [&](auto dst_tag) {
      using D = decltype(dst_tag);
      const int64_t n = dst.numel();
      copy_kernel<S, D><<<grid_for(n), 256>>>(static_cast<const S*>(src.raw_data()), make_index(src),
                                              static_cast<D*>(dst.raw_data()), make_index(dst), n);
      NN_CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace

void register_copy_cuda(KernelTable& t) {
  t.fill = fill;
  t.copy = copy;
}

}  // namespace nn::cuda
