// The library's own single-precision GEMM on the CPU (packed panels, a register-blocked AVX2/FMA
// micro-kernel chosen at run time, a portable one otherwise). Every f32 matrix product of the CPU
// backend goes through it: matmul/linear, the three convolution passes, Winograd's batched products.
//
//   C (m x n, row stride ldc) = alpha * A (m x k) * B (k x n) + beta * C, then + bias, then ReLU
//
// A and B are strided views, so transposes cost nothing: element (i, j) of a view is
// data[i * row_stride + j * col_stride]. 2*m*n*k FLOPs. C is never read when beta == 0.
#pragma once

#include <cstdint>
#include <vector>

namespace nn::cpu {

// A read-only strided matrix view.
struct MatrixRef {
  const float* data;
  int64_t row_stride, col_stride;
  float at(int64_t i, int64_t j) const { return data[i * row_stride + j * col_stride]; }
};

// What is done to the product before it is stored.
struct GemmEpilogue {
  float alpha = 1.0f;
  float beta = 0.0f;                // C = alpha*AB + beta*C (C not read when 0)
  const float* row_bias = nullptr;  // m values: row i gets row_bias[i] (a conv's per-channel bias)
  const float* col_bias = nullptr;  // n values: column j gets col_bias[j] (a linear layer's bias)
  bool relu = false;                // max(0, .) last
};

// On the calling thread only (for callers that already split work over threads).
void sgemm(int64_t m, int64_t n, int64_t k, MatrixRef a, MatrixRef b, float* c, int64_t ldc,
           const GemmEpilogue& epilogue = {});

// Split over the CPU thread pool (by blocks of C's rows or columns, whichever is larger); serial
// when already inside a parallel region or the product is small.
void sgemm_parallel(int64_t m, int64_t n, int64_t k, MatrixRef a, MatrixRef b, float* c, int64_t ldc,
                    const GemmEpilogue& epilogue = {});

// A left operand packed once for many products with different right operands (Winograd's
// transformed weights, a conv's weights over many bands): sgemm_packed skips re-packing A.
class PackedA {
 public:
  PackedA() = default;
  PackedA(int64_t m, int64_t k, MatrixRef a);
  int64_t rows() const { return m_; }
  int64_t depth() const { return k_; }
  const float* panel(int64_t k0, int64_t i0) const;  // internal: the packed block at (k0, i0)

 private:
  int64_t m_ = 0, k_ = 0;
  std::vector<float> data_;
};

// C (a.rows() x n) = a * B, with the epilogue; on the calling thread.
void sgemm_packed(const PackedA& a, int64_t n, MatrixRef b, float* c, int64_t ldc, const GemmEpilogue& epilogue = {});
// The same with B (k x n, row-major, rows ldb floats apart) read in place instead of packed: for
// a B that is small and hot in cache (Winograd's transformed tiles), packing would only copy it.
// Each row must be readable to n rounded up to 16 columns (ldb at least that): the micro-kernel
// reads whole 16-column panels and drops the extra columns' products.
void sgemm_packed_b_in_place(const PackedA& a, int64_t n, const float* b, int64_t ldb, float* c, int64_t ldc,
                             const GemmEpilogue& epilogue = {});

// Which micro-kernel sgemm runs on this CPU: "avx2-fma-6x16" or "portable-6x16".
const char* sgemm_kernel_name();

}  // namespace nn::cpu
