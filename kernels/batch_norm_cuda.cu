// Batch normalization on CUDA for dense (N, C, S) tensors (S = the spatial size); semantics and
// formulas: batch_norm_cpu.cpp.
//
// The per-channel sums (stats: sum x and sum x^2; backward: sum dy and sum dy * (x - mean)) run in
// two deterministic passes, no atomics: a grid of (chunks, C) blocks, each reducing one chunk of
// its channel's N * S values in double (a block-wide shuffle reduction) into a partial, then one
// thread per channel adding its partials in order. A channel is split into up to kMaxChunks chunks
// of at least kChunk values, so a few channels with large maps still fill the GPU. The forward and
// the input gradient are elementwise (grid-stride over N * C * S; the channel of element i is
// (i / S) % C), with each channel's coefficients recomputed from the small per-channel vectors.
// Reads: stats 1 pass over x; forward 1 over x, 1 write; backward 2 over dy and x, 1 write.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda_util.cuh"

namespace nn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = 8192;  // values per block at least
constexpr int64_t kMaxChunks = 64;

struct Dims {
  int64_t n, c, s;
};

Dims dims_of(const Tensor& x) {
  const int64_t n = x.size(0), c = x.size(1);
  return {n, c, n * c == 0 ? 0 : x.numel() / (n * c)};
}

int64_t chunks_for(const Dims& d) { return std::min<int64_t>(kMaxChunks, std::max<int64_t>(1, ceil_div(d.n * d.s, kChunk))); }

// Sum of v over the block; the result is valid in thread 0.
__device__ inline double block_sum(double v) {
  __shared__ double slots[kThreads / 32];
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) slots[warp] = v;
  __syncthreads();
  double r = 0;
  if (threadIdx.x == 0)
    for (int w = 0; w < kThreads / 32; ++w) r += slots[w];
  __syncthreads();
  return r;
}

// Block (chunk k, channel c) reduces the values e in [k * per, (k + 1) * per) of channel c (value e
// is x[(e / S) * C * S + c * S + e % S]): partial[c][k] = (sum a, sum b) where `terms` gives (a, b)
// for one element.
template <typename T, typename Terms>
__device__ inline void reduce_chunk(const Dims d, int64_t chunks, double2* partial, const Terms& terms) {
  const int64_t c = blockIdx.y, k = blockIdx.x, m = d.n * d.s;
  const int64_t per = ceil_div(m, chunks), begin = k * per, end = std::min(m, begin + per);
  double a = 0, b = 0;
  for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) {
    const int64_t i = (e / d.s) * d.c * d.s + c * d.s + e % d.s;
    const double2 t = terms(i, c);
    a += t.x;
    b += t.y;
  }
  a = block_sum(a);
  b = block_sum(b);
  if (threadIdx.x == 0) partial[c * chunks + k] = make_double2(a, b);
}

template <typename T>
__global__ void stats_partial_kernel(const T* x, Dims d, int64_t chunks, double2* partial) {
  reduce_chunk<T>(d, chunks, partial, [x](int64_t i, int64_t) {
    const double v = x[i];
    return make_double2(v, v * v);
  });
}

template <typename T>
__global__ void stats_finish_kernel(const double2* partial, int64_t chunks, Dims d, T* mean, T* var) {
  for (int64_t c = thread_index(); c < d.c; c += thread_count()) {
    double sum = 0, sum_sq = 0;
    for (int64_t k = 0; k < chunks; ++k) {
      sum += partial[c * chunks + k].x;
      sum_sq += partial[c * chunks + k].y;
    }
    const double m = static_cast<double>(d.n * d.s), mu = sum / m;
    mean[c] = static_cast<T>(mu);
    var[c] = static_cast<T>(fmax(0.0, sum_sq / m - mu * mu));
  }
}

template <typename T>
__global__ void backward_partial_kernel(const T* dy, const T* x, const T* mean, Dims d, int64_t chunks,
                                        double2* partial) {
  reduce_chunk<T>(d, chunks, partial, [dy, x, mean](int64_t i, int64_t c) {
    const double g = dy[i];
    return make_double2(g, g * (static_cast<double>(x[i]) - static_cast<double>(mean[c])));
  });
}

template <typename T>
__global__ void backward_finish_kernel(const double2* partial, int64_t chunks, Dims d, const T* invstd, T* sum_dy,
                                       T* sum_dy_xhat) {
  for (int64_t c = thread_index(); c < d.c; c += thread_count()) {
    double g = 0, gx = 0;
    for (int64_t k = 0; k < chunks; ++k) {
      g += partial[c * chunks + k].x;
      gx += partial[c * chunks + k].y;
    }
    sum_dy[c] = static_cast<T>(g);
    sum_dy_xhat[c] = static_cast<T>(gx * static_cast<double>(invstd[c]));
  }
}

template <typename T>
__global__ void forward_kernel(const T* x, const T* mean, const T* invstd, const T* weight, const T* bias, Dims d,
                               T* y) {
  const int64_t total = d.n * d.c * d.s;
  for (int64_t i = thread_index(); i < total; i += thread_count()) {
    const int64_t c = (i / d.s) % d.c;
    const T scale = invstd[c] * (weight ? weight[c] : T(1));
    const T shift = (bias ? bias[c] : T(0)) - mean[c] * scale;
    y[i] = x[i] * scale + shift;
  }
}

template <typename T>
__global__ void backward_input_kernel(const T* dy, const T* x, const T* mean, const T* invstd, const T* weight,
                                      const T* sum_dy, const T* sum_dy_xhat, bool batch_stats, Dims d, T* dx) {
  const int64_t total = d.n * d.c * d.s;
  const T inv_m = static_cast<T>(1.0 / static_cast<double>(d.n * d.s > 0 ? d.n * d.s : 1));
  for (int64_t i = thread_index(); i < total; i += thread_count()) {
    const int64_t c = (i / d.s) % d.c;
    const T is = invstd[c];
    const T k = is * (weight ? weight[c] : T(1));
    if (!batch_stats) {
      dx[i] = k * dy[i];
      continue;
    }
    const T c1 = sum_dy[c] * inv_m, c2 = sum_dy_xhat[c] * inv_m;
    const T a = k * c2 * is, b = a * mean[c] - k * c1;
    dx[i] = k * dy[i] - a * x[i] + b;
  }
}

template <typename T>
const T* data_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr;
}

void check_dense(std::initializer_list<const Tensor*> ts, const char* kernel) {
  for (const Tensor* t : ts)
    NN_CHECK(!t->defined() || t->is_contiguous(), kernel, ": CUDA operands must be dense");
}

void batch_norm_stats(const Tensor& x, Tensor& mean, Tensor& var) {
  check_dense({&x, &mean, &var}, "batch_norm_stats");
  const Dims d = dims_of(x);
  if (d.c == 0) return;
  cudaStream_t s = stream_for(x);
  const int64_t chunks = chunks_for(d);
  ScratchBuffer partial(static_cast<size_t>(d.c * chunks) * sizeof(double2), x.device());
  auto* pp = static_cast<double2*>(partial.get());
  dispatch_float(x.dtype(), "batch_norm_stats", [&](auto tag) {
    using T = decltype(tag);
    NN_CHECK(d.c <= 65535, "batch_norm_stats: at most 65535 channels on CUDA, got ", d.c);
    stats_partial_kernel<T><<<dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(d.c)), kThreads, 0, s>>>(
        static_cast<const T*>(x.raw_data()), d, chunks, pp);
    NN_CUDA_CHECK_LAUNCH();
    stats_finish_kernel<T><<<blocks_for(d.c), 256, 0, s>>>(pp, chunks, d, static_cast<T*>(mean.raw_data()),
                                                             static_cast<T*>(var.raw_data()));
    NN_CUDA_CHECK_LAUNCH();
  });
}

void batch_norm_forward(const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                        const Tensor& bias, Tensor& y) {
  check_dense({&x, &mean, &invstd, &weight, &bias, &y}, "batch_norm_forward");
  const Dims d = dims_of(x);
  if (d.n * d.c * d.s == 0) return;
  cudaStream_t s = stream_for(y);
  dispatch_float(x.dtype(), "batch_norm_forward", [&](auto tag) {
    using T = decltype(tag);
    forward_kernel<T><<<blocks_for(d.n * d.c * d.s), 256, 0, s>>>(
        static_cast<const T*>(x.raw_data()), static_cast<const T*>(mean.raw_data()),
        static_cast<const T*>(invstd.raw_data()), data_or_null<T>(weight), data_or_null<T>(bias), d,
        static_cast<T*>(y.raw_data()));
    NN_CUDA_CHECK_LAUNCH();
  });
}

void batch_norm_backward_reduce(const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                                Tensor& sum_dy, Tensor& sum_dy_xhat) {
  check_dense({&dy, &x, &mean, &invstd, &sum_dy, &sum_dy_xhat}, "batch_norm_backward_reduce");
  const Dims d = dims_of(x);
  if (d.c == 0) return;
  cudaStream_t s = stream_for(x);
  const int64_t chunks = chunks_for(d);
  ScratchBuffer partial(static_cast<size_t>(d.c * chunks) * sizeof(double2), x.device());
  auto* pp = static_cast<double2*>(partial.get());
  dispatch_float(x.dtype(), "batch_norm_backward_reduce", [&](auto tag) {
    using T = decltype(tag);
    NN_CHECK(d.c <= 65535, "batch_norm_backward_reduce: at most 65535 channels on CUDA, got ", d.c);
    backward_partial_kernel<T><<<dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(d.c)), kThreads, 0, s>>>(
        static_cast<const T*>(dy.raw_data()), static_cast<const T*>(x.raw_data()),
        static_cast<const T*>(mean.raw_data()), d, chunks, pp);
    NN_CUDA_CHECK_LAUNCH();
    backward_finish_kernel<T><<<blocks_for(d.c), 256, 0, s>>>(pp, chunks, d, static_cast<const T*>(invstd.raw_data()),
                                                                static_cast<T*>(sum_dy.raw_data()),
                                                                static_cast<T*>(sum_dy_xhat.raw_data()));
    NN_CUDA_CHECK_LAUNCH();
  });
}

void batch_norm_backward_input(const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                               const Tensor& weight, const Tensor& sum_dy, const Tensor& sum_dy_xhat, bool batch_stats,
                               Tensor& dx) {
  check_dense({&dy, &x, &mean, &invstd, &weight, &sum_dy, &sum_dy_xhat, &dx}, "batch_norm_backward_input");
  const Dims d = dims_of(x);
  if (d.n * d.c * d.s == 0) return;
  cudaStream_t s = stream_for(dx);
  dispatch_float(x.dtype(), "batch_norm_backward_input", [&](auto tag) {
    using T = decltype(tag);
    backward_input_kernel<T><<<blocks_for(d.n * d.c * d.s), 256, 0, s>>>(
        static_cast<const T*>(dy.raw_data()), static_cast<const T*>(x.raw_data()),
        static_cast<const T*>(mean.raw_data()), static_cast<const T*>(invstd.raw_data()), data_or_null<T>(weight),
        static_cast<const T*>(sum_dy.raw_data()), static_cast<const T*>(sum_dy_xhat.raw_data()), batch_stats, d,
        static_cast<T*>(dx.raw_data()));
    NN_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

void register_batch_norm_cuda(KernelTable& t) {
  t.batch_norm_stats = batch_norm_stats;
  t.batch_norm_forward = batch_norm_forward;
  t.batch_norm_backward_reduce = batch_norm_backward_reduce;
  t.batch_norm_backward_input = batch_norm_backward_input;
}

}  // namespace nn::cuda
