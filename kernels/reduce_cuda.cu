// Row reductions on CUDA (semantics: reduce_cpu.cpp): x dense (rows, cols) -> one value per row.
// sum_rows accumulates in double (as the CPU); max_rows returns the first maximum of each row, or
// the first NaN when the row has one (CPU: `row[c] > row[best] || isnan(row[c])`, stopping at a
// NaN), with its int64 column. Both are one reduction policy (SumRows / MaxRows) run by the same
// three launch shapes:
//  - cols <= 8: one thread per row (many rows x few cols: no idle lanes);
//  - cols <= 1024, or enough rows to fill the GPU: one warp per row, lanes stride the row
//    (coalesced), shuffle tree at the end;
//  - few long rows: each row is split into `chunks` pieces, one 256-thread block per piece
//    (warp shuffles + a shared-memory tree across warps); with more than one piece the partials
//    go to scratch memory and a second kernel (one warp per row) combines them in a fixed order,
//    so results are deterministic.
// The (value, index) combine of MaxRows is commutative and associative (NaN beats numbers, larger
// beats smaller, ties go to the smaller index), so the reduction order does not change the answer.
// Memory-bound: one read of x.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "cuda_util.cuh"

namespace nn::cuda {
namespace {

constexpr int kBlock = 256;
constexpr unsigned kFullMask = 0xffffffffu;

// ---- reduction policies ----

template <typename T>
struct SumRows {
  using Acc = double;
  __device__ static Acc identity() { return 0.0; }
  __device__ static Acc element(T v, int64_t) { return static_cast<double>(v); }
  __device__ static Acc combine(Acc a, Acc b) { return a + b; }
  __device__ static Acc shfl_xor(Acc a, int lane_mask) { return __shfl_xor_sync(kFullMask, a, lane_mask); }
  __device__ static void store(T* values, int64_t*, int64_t row, Acc a) { values[row] = static_cast<T>(a); }
};

template <typename T>
struct ArgMax {
  T value;
  int64_t index;
};

template <typename T>
struct MaxRows {
  using Acc = ArgMax<T>;
  // Loses to every element (even -inf, through the index tie-break) and is never NaN.
  __device__ static Acc identity() { return {-std::numeric_limits<T>::infinity(), INT64_MAX}; }
  __device__ static Acc element(T v, int64_t i) { return {v, i}; }
  __device__ static Acc combine(Acc a, Acc b) {
    const bool a_nan = std::isnan(a.value), b_nan = std::isnan(b.value);
    if (a_nan != b_nan) return a_nan ? a : b;
    if (!a_nan) {
      if (a.value > b.value) return a;
      if (b.value > a.value) return b;
    }
    return a.index < b.index ? a : b;  // equal values (0 == -0 included) or both NaN: the first
  }
  __device__ static Acc shfl_xor(Acc a, int lane_mask) {
    return {__shfl_xor_sync(kFullMask, a.value, lane_mask), __shfl_xor_sync(kFullMask, a.index, lane_mask)};
  }
  __device__ static void store(T* values, int64_t* indices, int64_t row, Acc a) {
    values[row] = a.value;
    indices[row] = a.index;
  }
};

// ---- warp and block trees ----

// Every lane of a full warp gets the combination of all 32 lanes.
template <typename R>
__device__ inline typename R::Acc warp_allreduce(typename R::Acc a) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) a = R::combine(a, R::shfl_xor(a, m));
  return a;
}

// The combination over the block, valid in thread 0. Called by every thread of the block (it
// synchronises); blockDim.x is a multiple of 32. Ends with a barrier so the shared slots can be
// reused by the next call.
template <typename R>
__device__ inline typename R::Acc block_reduce(typename R::Acc a) {
  __shared__ typename R::Acc warp_results[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  a = warp_allreduce<R>(a);
  if (lane == 0) warp_results[warp] = a;
  __syncthreads();
  if (warp == 0) {
    a = lane < static_cast<int>(blockDim.x >> 5) ? warp_results[lane] : R::identity();
    a = warp_allreduce<R>(a);
  }
  __syncthreads();
  return a;
}

// ---- kernels ----

template <typename T, typename R>
__global__ void rows_thread_kernel(const T* x, int64_t rows, int64_t cols, T* values, int64_t* indices) {
  for (int64_t row = thread_index(); row < rows; row += thread_count()) {
    const T* p = x + row * cols;
    typename R::Acc acc = R::identity();
    for (int64_t c = 0; c < cols; ++c) acc = R::combine(acc, R::element(p[c], c));
    R::store(values, indices, row, acc);
  }
}

template <typename T, typename R>
__global__ void rows_warp_kernel(const T* x, int64_t rows, int64_t cols, T* values, int64_t* indices) {
  const int lane = threadIdx.x & 31;
  const int64_t first_warp = thread_index() >> 5;
  const int64_t warps = thread_count() >> 5;
  for (int64_t row = first_warp; row < rows; row += warps) {  // uniform across the warp
    const T* p = x + row * cols;
    typename R::Acc acc = R::identity();
    for (int64_t c = lane; c < cols; c += 32) acc = R::combine(acc, R::element(p[c], c));
    acc = warp_allreduce<R>(acc);
    if (lane == 0) R::store(values, indices, row, acc);
  }
}

// Work item = (row, chunk) of `chunks` pieces of `chunk_len` columns. With one chunk the block
// stores the row's result; otherwise it writes its partial to partial[item].
template <typename T, typename R>
__global__ void rows_block_kernel(const T* x, int64_t rows, int64_t cols, int64_t chunks, int64_t chunk_len,
                                  T* values, int64_t* indices, typename R::Acc* partial) {
  const int64_t items = rows * chunks;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {  // uniform across the block
    const int64_t row = item / chunks, chunk = item % chunks;
    const int64_t begin = chunk * chunk_len;
    const int64_t end = begin + chunk_len < cols ? begin + chunk_len : cols;
    const T* p = x + row * cols;
    typename R::Acc acc = R::identity();
    for (int64_t c = begin + threadIdx.x; c < end; c += blockDim.x) acc = R::combine(acc, R::element(p[c], c));
    acc = block_reduce<R>(acc);
    if (threadIdx.x == 0) {
      if (chunks == 1) R::store(values, indices, row, acc);
      else partial[item] = acc;
    }
  }
}

// One warp per row combines that row's `chunks` partials.
template <typename T, typename R>
__global__ void combine_partials_kernel(const typename R::Acc* partial, int64_t rows, int64_t chunks, T* values,
                                        int64_t* indices) {
  const int lane = threadIdx.x & 31;
  const int64_t first_warp = thread_index() >> 5;
  const int64_t warps = thread_count() >> 5;
  for (int64_t row = first_warp; row < rows; row += warps) {
    typename R::Acc acc = R::identity();
    for (int64_t k = lane; k < chunks; k += 32) acc = R::combine(acc, partial[row * chunks + k]);
    acc = warp_allreduce<R>(acc);
    if (lane == 0) R::store(values, indices, row, acc);
  }
}

// ---- launch ----

unsigned warp_blocks(int64_t rows) { return blocks_for(rows * 32, kBlock); }

template <typename T, typename R>
void reduce_rows(const Tensor& x, T* values, int64_t* indices, int64_t rows, int64_t cols, cudaStream_t s) {
  const T* xp = static_cast<const T*>(x.raw_data());
  if (cols <= 8) {
    rows_thread_kernel<T, R><<<blocks_for(rows, kBlock), kBlock, 0, s>>>(xp, rows, cols, values, indices);
    NN_CUDA_CHECK_LAUNCH();
    return;
  }
  if (cols <= 1024 || rows >= 8192) {
    rows_warp_kernel<T, R><<<warp_blocks(rows), kBlock, 0, s>>>(xp, rows, cols, values, indices);
    NN_CUDA_CHECK_LAUNCH();
    return;
  }
  // Few long rows: about 1024 blocks in all, each thread reading at least 16 elements.
  int64_t chunks = std::max<int64_t>(1, std::min(ceil_div(1024, rows), ceil_div(cols, kBlock * 16)));
  const int64_t chunk_len = ceil_div(cols, chunks);
  chunks = ceil_div(cols, chunk_len);  // no empty chunk
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows * chunks, 262144));
  if (chunks == 1) {
    rows_block_kernel<T, R><<<grid, kBlock, 0, s>>>(xp, rows, cols, 1, chunk_len, values, indices, nullptr);
    NN_CUDA_CHECK_LAUNCH();
    return;
  }
  using Acc = typename R::Acc;
  const ScratchBuffer scratch(sizeof(Acc) * static_cast<size_t>(rows * chunks), x.device());
  Acc* partial = static_cast<Acc*>(scratch.get());
  rows_block_kernel<T, R><<<grid, kBlock, 0, s>>>(xp, rows, cols, chunks, chunk_len, values, indices, partial);
  NN_CUDA_CHECK_LAUNCH();
  combine_partials_kernel<T, R><<<warp_blocks(rows), kBlock, 0, s>>>(partial, rows, chunks, values, indices);
  NN_CUDA_CHECK_LAUNCH();
}

void sum_rows(const Tensor& x, Tensor& out) {
  NN_CHECK(x.is_contiguous() && out.is_contiguous(), "sum_rows: CUDA operands must be dense");
  const int64_t rows = out.numel();
  if (rows == 0) return;
  const int64_t cols = x.numel() / rows;
  cudaStream_t s = stream_for(out);
  dispatch_float(x.dtype(), "sum_rows", [&](auto tag) {
    using T = decltype(tag);
    T* op = static_cast<T*>(out.raw_data());
    if (cols == 0) {
      NN_CUDA_CHECK(cudaMemsetAsync(op, 0, sizeof(T) * static_cast<size_t>(rows), s));
      return;
    }
    reduce_rows<T, SumRows<T>>(x, op, nullptr, rows, cols, s);
  });
}

void max_rows(const Tensor& x, Tensor& values, Tensor& indices) {
  NN_CHECK(x.is_contiguous() && values.is_contiguous() && indices.is_contiguous(),
           "max_rows: CUDA operands must be dense");
  NN_CHECK(indices.dtype() == DType::i64, "max_rows: indices must be int64");
  const int64_t rows = values.numel();
  if (rows == 0) return;
  const int64_t cols = x.numel() / rows;
  NN_CHECK(cols > 0, "max_rows: reducing over zero elements");
  cudaStream_t s = stream_for(values);
  dispatch_float(x.dtype(), "max_rows", [&](auto tag) {
    using T = decltype(tag);
    reduce_rows<T, MaxRows<T>>(x, static_cast<T*>(values.raw_data()), static_cast<int64_t*>(indices.raw_data()),
                               rows, cols, s);
  });
}

}  // namespace

void register_reduce_cuda(KernelTable& t) {
  t.sum_rows = sum_rows;
  t.max_rows = max_rows;
}

}  // namespace nn::cuda
