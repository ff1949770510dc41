// Our FP32 GEMM on CUDA (defined in matmul_cuda.cu): the raw launcher behind the `gemm` kernel-table
// entry, also called directly by bench/cuda_gemm_bench.cu and tests/cuda_peers. Plain C++ (no
// device code), so host-only .cpp files can include it.
//
// Row-major, batched, strided:
//   C[i] = alpha * op(A[i]) * op(B[i]) + beta * C[i]   for i in [0, batch)
// where op(A) is (m,k): A stored (m,k) with row stride lda, or (k,m) when trans_a; op(B) is (k,n):
// B stored (k,n) with row stride ldb, or (n,k) when trans_b; C (m,n) with row stride ldc. Batch
// strides are in elements; a batch stride of 0 on A or B broadcasts it. beta == 0 ignores C's
// old contents (NaN included). FP32 arithmetic throughout (no TF32).
//
// All work is queued on `s` (nothing waits for it). Problems too small to fill the GPU run split-K,
// with a scratch buffer from nn's device allocator; the allocator orders reuse on nn's stream for
// the current device, so when `s` is another stream the launcher waits for `s` before freeing it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace nn::cuda {

void sgemm(cudaStream_t s, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, int64_t batch_stride_a, const float* b, int64_t ldb,
           int64_t batch_stride_b, float beta, float* c, int64_t ldc, int64_t batch_stride_c, int64_t batch);

// How sgemm would run a problem on a GPU with `sm_count` multiprocessors (for tests and the
// benchmark's labels): tile configuration and split-K factor.
struct SgemmPlan {
  bool large_tiles = true;  // 128x128 block tiles (else 64x64)
  int splits = 1;           // K is cut into this many ranges of k_per_split (a multiple of 8)
  int64_t k_per_split = 0;
};
SgemmPlan plan_sgemm(int64_t m, int64_t n, int64_t k, int64_t batch, int sm_count);

}  // namespace nn::cuda
