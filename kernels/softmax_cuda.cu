// Softmax and log-softmax over the last dim of a dense (rows, cols) tensor on CUDA (semantics:
// softmax_cpu.cpp). Forward is max-subtracted so no exponent overflows, with the sum of
// exponentials in double: y = exp(x - m) * (1/s), log: y = x - (m + log s). Backward:
// softmax dx = y * (dy - sum(dy * y)); log-softmax dx = dy - exp(y) * sum(dy), sums in double.
// One warp per row when cols <= 1024 (lanes stride the row, shuffle all-reduce), else one
// 512-thread block per row (warp shuffles, then the per-warp results through shared memory).
// A row is read 3 times (forward) or twice (backward); the re-reads of a row hit L1/L2.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "cuda_util.cuh"

namespace nn::cuda {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarpRowMaxCols = 1024;
constexpr int kRowBlock = 512;

// Max (NaN-ignoring; a NaN in the row makes the exponential sum NaN anyway, as on the CPU) or sum,
// in double: float maxima convert exactly.
template <bool kMax>
__device__ inline double combine(double a, double b) {
  if constexpr (kMax) return b > a ? b : a;
  else return a + b;
}

template <bool kMax>
__device__ inline double warp_allreduce(double v) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v = combine<kMax>(v, __shfl_xor_sync(kFullMask, v, m));
  return v;
}

// Every thread of the block gets the result; called by all threads (it synchronises).
template <bool kMax>
__device__ inline double block_allreduce(double v) {
  __shared__ double slots[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_allreduce<kMax>(v);
  if (lane == 0) slots[warp] = v;
  __syncthreads();
  double r = slots[0];
  for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w) r = combine<kMax>(r, slots[w]);
  __syncthreads();  // slots are reused by the next call
  return r;
}

// The threads that share one row: a warp or a block.
struct WarpRow {
  int rank;
  static constexpr int size = 32;
  template <bool kMax>
  __device__ double allreduce(double v) const { return warp_allreduce<kMax>(v); }
};
struct BlockRow {
  int rank;
  int size;
  template <bool kMax>
  __device__ double allreduce(double v) const { return block_allreduce<kMax>(v); }
};

template <typename T, typename Group>
__device__ inline void softmax_forward_row(const T* in, T* out, int64_t cols, bool log, const Group& g) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t c = g.rank; c < cols; c += g.size) m = in[c] > m ? in[c] : m;
  m = static_cast<T>(g.template allreduce<true>(static_cast<double>(m)));
  double s = 0;
  for (int64_t c = g.rank; c < cols; c += g.size) s += static_cast<double>(std::exp(in[c] - m));
  s = g.template allreduce<false>(s);
  if (log) {
    const T lse = m + static_cast<T>(std::log(s));
    for (int64_t c = g.rank; c < cols; c += g.size) out[c] = in[c] - lse;
  } else {
    const T inv = static_cast<T>(1.0 / s);
    for (int64_t c = g.rank; c < cols; c += g.size) out[c] = std::exp(in[c] - m) * inv;
  }
}

template <typename T, typename Group>
__device__ inline void softmax_backward_row(const T* dy, const T* y, T* dx, int64_t cols, bool log, const Group& g) {
  double s = 0;
  if (log) {
    for (int64_t c = g.rank; c < cols; c += g.size) s += static_cast<double>(dy[c]);
  } else {
    for (int64_t c = g.rank; c < cols; c += g.size) s += static_cast<double>(dy[c]) * static_cast<double>(y[c]);
  }
  const T st = static_cast<T>(g.template allreduce<false>(s));
  if (log) {
    for (int64_t c = g.rank; c < cols; c += g.size) dx[c] = dy[c] - std::exp(y[c]) * st;
  } else {
    for (int64_t c = g.rank; c < cols; c += g.size) dx[c] = y[c] * (dy[c] - st);
  }
}

// ---- kernels: rows in a grid-stride loop, uniform across each warp (block) ----

__device__ inline int64_t first_warp() { return thread_index() >> 5; }
__device__ inline int64_t warp_count() { return thread_count() >> 5; }

template <typename T>
__global__ void softmax_forward_warp_kernel(const T* x, T* y, int64_t rows, int64_t cols, bool log) {
  const WarpRow g{static_cast<int>(threadIdx.x & 31)};
  for (int64_t row = first_warp(); row < rows; row += warp_count())
    softmax_forward_row(x + row * cols, y + row * cols, cols, log, g);
}

template <typename T>
__global__ void softmax_forward_block_kernel(const T* x, T* y, int64_t rows, int64_t cols, bool log) {
  const BlockRow g{static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x)};
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x)
    softmax_forward_row(x + row * cols, y + row * cols, cols, log, g);
}

template <typename T>
__global__ void softmax_backward_warp_kernel(const T* dy, const T* y, T* dx, int64_t rows, int64_t cols, bool log) {
  const WarpRow g{static_cast<int>(threadIdx.x & 31)};
  for (int64_t row = first_warp(); row < rows; row += warp_count())
    softmax_backward_row(dy + row * cols, y + row * cols, dx + row * cols, cols, log, g);
}

template <typename T>
__global__ void softmax_backward_block_kernel(const T* dy, const T* y, T* dx, int64_t rows, int64_t cols, bool log) {
  const BlockRow g{static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x)};
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x)
    softmax_backward_row(dy + row * cols, y + row * cols, dx + row * cols, cols, log, g);
}

// ---- launch ----

struct RowShape {
  int64_t rows, cols;
};
RowShape row_shape(const Tensor& t) {
  const int64_t cols = t.dim() == 0 ? 1 : t.shape().back();
  return {cols == 0 ? 0 : t.numel() / cols, cols};
}

unsigned warp_grid(int64_t rows) { return blocks_for(rows * 32, 256); }
unsigned block_grid(int64_t rows) { return static_cast<unsigned>(std::min<int64_t>(rows, 262144)); }

void softmax_forward(const Tensor& x, Tensor& y, bool log) {
  NN_CHECK(x.is_contiguous() && y.is_contiguous(), "softmax_forward: CUDA operands must be dense");
  const RowShape r = row_shape(x);
  if (r.rows == 0) return;
  cudaStream_t s = stream_for(y);
  dispatch_float(x.dtype(), "softmax_forward", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.raw_data());
    T* yp = static_cast<T*>(y.raw_data());
    if (r.cols <= kWarpRowMaxCols)
      softmax_forward_warp_kernel<T><<<warp_grid(r.rows), 256, 0, s>>>(xp, yp, r.rows, r.cols, log);
    else
      softmax_forward_block_kernel<T><<<block_grid(r.rows), kRowBlock, 0, s>>>(xp, yp, r.rows, r.cols, log);
    NN_CUDA_CHECK_LAUNCH();
  });
}

void softmax_backward(const Tensor& dy, const Tensor& y, Tensor& dx, bool log) {
  NN_CHECK(dy.is_contiguous() && y.is_contiguous() && dx.is_contiguous(),
           "softmax_backward: CUDA operands must be dense");
  const RowShape r = row_shape(y);
  if (r.rows == 0) return;
  cudaStream_t s = stream_for(dx);
  dispatch_float(y.dtype(), "softmax_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* gp = static_cast<const T*>(dy.raw_data());
    const T* yp = static_cast<const T*>(y.raw_data());
    T* dp = static_cast<T*>(dx.raw_data());
    if (r.cols <= kWarpRowMaxCols)
      softmax_backward_warp_kernel<T><<<warp_grid(r.rows), 256, 0, s>>>(gp, yp, dp, r.rows, r.cols, log);
    else
      softmax_backward_block_kernel<T><<<block_grid(r.rows), kRowBlock, 0, s>>>(gp, yp, dp, r.rows, r.cols, log);
    NN_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

void register_softmax_cuda(KernelTable& t) {
  t.softmax_forward = softmax_forward;
  t.softmax_backward = softmax_backward;
}

}  // namespace nn::cuda
