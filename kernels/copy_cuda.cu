// fill and strided copy (with dtype conversion) on CUDA: one thread per output element, grid-stride
// loop; index arithmetic over up to 8 dims. Memory-bound: one read and one write per element.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_util.cuh"

namespace nn::cuda {
namespace {

template <typename T>
__global__ void fill_kernel(T* out, StridedIndex index, int64_t n, T value) {
  for (int64_t i = thread_index(); i < n; i += thread_count())
    out[offset_of(index, i)] = value;
}

template <typename S, typename D>
__global__ void copy_kernel(const S* src, StridedIndex src_index, D* dst, StridedIndex dst_index, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_count())
    dst[offset_of(dst_index, i)] = static_cast<D>(src[offset_of(src_index, i)]);
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
  cudaStream_t s = stream_for(out);
  dispatch_cuda_dtype(out.dtype(), "fill", [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = out.numel();
    fill_kernel<T><<<blocks_for(n), 256, 0, s>>>(static_cast<T*>(out.raw_data()), make_index(out), n, static_cast<T>(value));
    NN_CUDA_CHECK_LAUNCH();
  });
}

void copy(const Tensor& src, Tensor& dst) {
  NN_CHECK(src.device() == dst.device(), "CUDA copy: tensors on ", src.device(), " and ", dst.device());
  cudaStream_t s = stream_for(dst);
  dispatch_cuda_dtype(src.dtype(), "copy", [&](auto src_tag) {
    using S = decltype(src_tag);
    dispatch_cuda_dtype(dst.dtype(), "copy", [&](auto dst_tag) {
      using D = decltype(dst_tag);
      const int64_t n = dst.numel();
      copy_kernel<S, D><<<blocks_for(n), 256, 0, s>>>(static_cast<const S*>(src.raw_data()), make_index(src),
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
