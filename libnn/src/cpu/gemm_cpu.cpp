// The CPU backend's f32 GEMM, written the way BLIS and GotoBLAS structure it:
//
//   for each NC-wide column block of B and C            (B block: KC x NC, lives in L3)
//     for each KC-deep slice of the shared dimension    (pack B's KC x NC block into NR-wide panels)
//       for each MC-tall row block of A                 (pack A's MC x KC block into MR-tall panels: L2)
//         for each NR-wide panel of B, MR-tall panel of A: the micro-kernel (MR x NR tile, in registers)
//
// The micro-kernel keeps a 6x16 tile of C in 12 AVX registers and, per step of k, loads 16 values
// of B (2 registers) and broadcasts 6 of A: 12 FMAs for 3 loads, so the two FMA pipes of a Zen 3
// or Skylake core stay busy (its measured rate: bench/README.md, "Measurements moved out of the CPU
// kernels' comments"). Packing makes every micro-kernel read contiguous and turns
// transposed or strided operands (MatrixRef) into the same layout, so no case needs its own kernel.
// Each micro-tile lands in a small buffer and the epilogue (alpha, beta, bias, ReLU) is applied
// when it is stored, only on the last KC slice for ReLU, so fusing costs no extra pass over C.
//
// The AVX2/FMA kernel is compiled with a target attribute and picked at run time (cpuid), so the
// library stays correct when built without -march=native and run on an older CPU; the portable
// kernel is plain C++ that compilers vectorise.
//
// Block sizes (f32): MR=6, NR=16, KC=256 (a 16 KiB B panel and 6 KiB A panel per micro-kernel
// call fit L1), MC=120 (A block 120 KiB in the 512 KiB L2), NC=3072 (B block 3 MiB of the 32 MiB
// L3). Bytes moved per MC x NC x KC step: A and B blocks packed once each, C read/written once per
// KC slice.
#include "cpu/gemm_cpu.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/parallel.h"
#include "nn/error.h"

namespace nn::cpu {
namespace {

constexpr int64_t MR = 6, NR = 16;
constexpr int64_t KC = 256, MC = 120, NC = 3072;
static_assert(MC % MR == 0 && NC % NR == 0, "blocks must hold whole panels");

// What a micro-kernel does with its finished tile when it stores it straight into C (full tiles):
// first KC slice: C = alpha*AB + beta*C + row_bias[i] + col_bias[j]; later slices: C += alpha*AB;
// ReLU after the last slice. row_bias and col_bias point at the tile's first row and column.
struct TileStore {
  float alpha, beta;
  const float* row_bias;
  const float* col_bias;
  bool first, last, relu;
};

// A 6x16 tile of AB over kc steps of a packed panel a (kc x MR) and 16 columns of B, ldb floats
// apart from one step to the next (NR for a packed panel, B's row stride when read in place). With
// c == nullptr the raw product goes to `tile` (row-major MR x NR) for the caller to store;
// otherwise it is stored into c (row stride ldc) as `store` says.
using MicroKernel = void (*)(int64_t kc, const float* a, const float* b, int64_t ldb, float* tile, float* c,
                             int64_t ldc, const TileStore& store);

void store_rows_portable(const float* acc, float* c, int64_t ldc, const TileStore& s) {
  for (int64_t i = 0; i < MR; ++i) {
    float* out = c + i * ldc;
    for (int64_t j = 0; j < NR; ++j) {
      float v;
      if (s.first) {
        v = s.alpha * acc[i * NR + j] + (s.beta == 0.0f ? 0.0f : s.beta * out[j]);
        if (s.row_bias) v += s.row_bias[i];
        if (s.col_bias) v += s.col_bias[j];
      } else {
        v = out[j] + s.alpha * acc[i * NR + j];
      }
      out[j] = s.last && s.relu ? std::max(v, 0.0f) : v;
    }
  }
}

void micro_kernel_portable(int64_t kc, const float* a, const float* b, int64_t ldb, float* tile, float* c,
                           int64_t ldc, const TileStore& store) {
  float acc[MR * NR] = {};
  for (int64_t p = 0; p < kc; ++p, a += MR, b += ldb)
    for (int64_t i = 0; i < MR; ++i)
      for (int64_t j = 0; j < NR; ++j) acc[i * NR + j] += a[i] * b[j];
  if (c) store_rows_portable(acc, c, ldc, store);
  else std::memcpy(tile, acc, sizeof acc);
}

#if defined(__x86_64__) || defined(__i386__)
#define NN_GEMM_HAVE_AVX2 1
// One row of a tile (two registers) into C.
__attribute__((target("avx2,fma"))) inline void store_row_avx2(__m256 lo, __m256 hi, float* out, int64_t row,
                                                               const TileStore& s) {
  const __m256 alpha = _mm256_set1_ps(s.alpha);
  if (s.first) {
    lo = _mm256_mul_ps(lo, alpha);
    hi = _mm256_mul_ps(hi, alpha);
    if (s.beta != 0.0f) {
      const __m256 beta = _mm256_set1_ps(s.beta);
      lo = _mm256_fmadd_ps(beta, _mm256_loadu_ps(out), lo);
      hi = _mm256_fmadd_ps(beta, _mm256_loadu_ps(out + 8), hi);
    }
    if (s.row_bias) {
      const __m256 rb = _mm256_set1_ps(s.row_bias[row]);
      lo = _mm256_add_ps(lo, rb);
      hi = _mm256_add_ps(hi, rb);
    }
    if (s.col_bias) {
      lo = _mm256_add_ps(lo, _mm256_loadu_ps(s.col_bias));
      hi = _mm256_add_ps(hi, _mm256_loadu_ps(s.col_bias + 8));
    }
  } else {
    lo = _mm256_fmadd_ps(lo, alpha, _mm256_loadu_ps(out));
    hi = _mm256_fmadd_ps(hi, alpha, _mm256_loadu_ps(out + 8));
  }
  if (s.last && s.relu) {
    lo = _mm256_max_ps(lo, _mm256_setzero_ps());
    hi = _mm256_max_ps(hi, _mm256_setzero_ps());
  }
  _mm256_storeu_ps(out, lo);
  _mm256_storeu_ps(out + 8, hi);
}

__attribute__((target("avx2,fma"))) void micro_kernel_avx2(int64_t kc, const float* a, const float* b, int64_t ldb,
                                                          float* tile, float* c, int64_t ldc, const TileStore& store) {
  if (c)
    for (int64_t i = 0; i < MR; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    __m256 ai = _mm256_broadcast_ss(a);
    c00 = _mm256_fmadd_ps(ai, b0, c00);
    c01 = _mm256_fmadd_ps(ai, b1, c01);
    ai = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(ai, b0, c10);
    c11 = _mm256_fmadd_ps(ai, b1, c11);
    ai = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(ai, b0, c20);
    c21 = _mm256_fmadd_ps(ai, b1, c21);
    ai = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(ai, b0, c30);
    c31 = _mm256_fmadd_ps(ai, b1, c31);
    ai = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(ai, b0, c40);
    c41 = _mm256_fmadd_ps(ai, b1, c41);
    ai = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(ai, b0, c50);
    c51 = _mm256_fmadd_ps(ai, b1, c51);
    a += MR;
    b += ldb;
  }
  if (c) {
    store_row_avx2(c00, c01, c, 0, store);
    store_row_avx2(c10, c11, c + ldc, 1, store);
    store_row_avx2(c20, c21, c + 2 * ldc, 2, store);
    store_row_avx2(c30, c31, c + 3 * ldc, 3, store);
    store_row_avx2(c40, c41, c + 4 * ldc, 4, store);
    store_row_avx2(c50, c51, c + 5 * ldc, 5, store);
    return;
  }
  _mm256_storeu_ps(tile + 0, c00), _mm256_storeu_ps(tile + 8, c01);
  _mm256_storeu_ps(tile + 16, c10), _mm256_storeu_ps(tile + 24, c11);
  _mm256_storeu_ps(tile + 32, c20), _mm256_storeu_ps(tile + 40, c21);
  _mm256_storeu_ps(tile + 48, c30), _mm256_storeu_ps(tile + 56, c31);
  _mm256_storeu_ps(tile + 64, c40), _mm256_storeu_ps(tile + 72, c41);
  _mm256_storeu_ps(tile + 80, c50), _mm256_storeu_ps(tile + 88, c51);
}

// The left half of a tile, for a last panel of at most 8 columns: half the FMAs of the 6x16
// kernel (its six accumulators keep the FMA pipes about 3/4 busy). Always to `tile` (row-major
// MR x NR, columns 8..15 left as they are) for the caller to store.
__attribute__((target("avx2,fma"))) void micro_kernel_avx2_6x8(int64_t kc, const float* a, const float* b, int64_t ldb,
                                                              float* tile) {
  __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b);
    c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a), b0, c0);
    c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 1), b0, c1);
    c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 2), b0, c2);
    c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 3), b0, c3);
    c4 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 4), b0, c4);
    c5 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 5), b0, c5);
    a += MR;
    b += ldb;
  }
  _mm256_storeu_ps(tile + 0 * NR, c0);
  _mm256_storeu_ps(tile + 1 * NR, c1);
  _mm256_storeu_ps(tile + 2 * NR, c2);
  _mm256_storeu_ps(tile + 3 * NR, c3);
  _mm256_storeu_ps(tile + 4 * NR, c4);
  _mm256_storeu_ps(tile + 5 * NR, c5);
}

// One column of a tile, for a last panel of one or two columns (Winograd's 49 tiles at 28x28 are
// three panels and one column): the six rows of a step of k are contiguous in the A panel, so they
// go in the lanes of one vector, times B's value broadcast; four accumulators cover the FMA
// latency. Lanes 6 and 7 pick up the next step's values and are dropped. About one cycle per step
// of k against the 6x8 kernel's three. Always to column `col` of `tile` (rows 0..5).
__attribute__((target("avx2,fma"))) void micro_kernel_avx2_6x1(int64_t kc, const float* a, const float* b, int64_t ldb,
                                                              float* tile) {
  __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
  int64_t p = 0;
  for (; p + 4 < kc; p += 4, a += 4 * MR, b += 4 * ldb) {  // not the last step: it may not have 8 floats
    c0 = _mm256_fmadd_ps(_mm256_loadu_ps(a), _mm256_broadcast_ss(b), c0);
    c1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + MR), _mm256_broadcast_ss(b + ldb), c1);
    c2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + 2 * MR), _mm256_broadcast_ss(b + 2 * ldb), c2);
    c3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + 3 * MR), _mm256_broadcast_ss(b + 3 * ldb), c3);
  }
  const __m256i six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
  for (; p < kc; ++p, a += MR, b += ldb) c0 = _mm256_fmadd_ps(_mm256_maskload_ps(a, six), _mm256_broadcast_ss(b), c0);
  alignas(32) float sum[8];
  _mm256_store_ps(sum, _mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)));
  for (int64_t i = 0; i < MR; ++i) tile[i * NR] = sum[i];
}
#endif

struct KernelChoice {
  MicroKernel kernel;
  const char* name;
};

KernelChoice choose_kernel() {
#ifdef NN_GEMM_HAVE_AVX2
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return {micro_kernel_avx2, "avx2-fma-6x16"};
#endif
  return {micro_kernel_portable, "portable-6x16"};
}

const KernelChoice& kernel_choice() {
  static const KernelChoice choice = choose_kernel();
  return choice;
}

#ifdef NN_GEMM_HAVE_AVX2
// r[0..7] (8 rows of 8) -> r[j] = column j, in registers.
__attribute__((target("avx2,fma"))) inline void transpose_8x8_avx2(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// One full NR-wide panel of a B whose columns are contiguous (B = X^T, row_stride 1): column j is
// col[j * cs + p]. 8x8 blocks are transposed in registers: 8 loads along p, 8 stores along j.
__attribute__((target("avx2,fma"))) void pack_b_panel_columns_avx2(const float* base, int64_t cs, int64_t kc,
                                                                   float* out) {
  int64_t p = 0;
  for (; p + 8 <= kc; p += 8) {
    for (int64_t jb = 0; jb < NR; jb += 8) {
      __m256 r[8];
      for (int64_t j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(base + (jb + j) * cs + p);
      transpose_8x8_avx2(r);
      float* o = out + p * NR + jb;
      for (int64_t q = 0; q < 8; ++q) _mm256_storeu_ps(o + q * NR, r[q]);
    }
  }
  for (; p < kc; ++p)
    for (int64_t j = 0; j < NR; ++j) out[p * NR + j] = base[j * cs + p];
}

// One full MR-tall panel of an A whose rows are contiguous (row i at r[i]): out[p * MR + i] =
// r[i][p]. 8 steps of p at a time: the six rows (and two zero rows) transposed in registers, each
// step's six values stored as 8 floats whose last two the next store overwrites (the last store
// writes exactly six).
__attribute__((target("avx2,fma"))) void pack_a_panel_rows_avx2(const float* const r[MR], int64_t kc, float* out) {
  int64_t p = 0;
  for (; p + 8 <= kc; p += 8, out += 8 * MR) {
    __m256 v[8];
    for (int64_t i = 0; i < MR; ++i) v[i] = _mm256_loadu_ps(r[i] + p);
    v[6] = v[7] = _mm256_setzero_ps();
    transpose_8x8_avx2(v);
    for (int64_t q = 0; q < 7; ++q) _mm256_storeu_ps(out + q * MR, v[q]);
    _mm_storeu_ps(out + 7 * MR, _mm256_castps256_ps128(v[7]));
    _mm_storel_pi(reinterpret_cast<__m64*>(out + 7 * MR + 4), _mm256_extractf128_ps(v[7], 1));
  }
  for (; p < kc; ++p, out += MR)
    for (int64_t i = 0; i < MR; ++i) out[i] = r[i][p];
}
#endif

bool have_avx2() { return kernel_choice().kernel != micro_kernel_portable; }

// Packs rows [i0, i0+mc) x columns [p0, p0+kc) of A into MR-tall panels, each kc x MR (p-major),
// the last panel padded with zeros.
void pack_a(MatrixRef a, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* out) {
  for (int64_t ir = 0; ir < mc; ir += MR, out += kc * MR) {
    const int64_t rows = std::min(MR, mc - ir);
    const float* base = a.data + (i0 + ir) * a.row_stride + p0 * a.col_stride;
    if (rows == MR && a.col_stride == 1) {
      const float* r[MR];
      for (int64_t i = 0; i < MR; ++i) r[i] = base + i * a.row_stride;
#ifdef NN_GEMM_HAVE_AVX2
      if (have_avx2()) {
        pack_a_panel_rows_avx2(r, kc, out);
        continue;
      }
#endif
      for (int64_t p = 0; p < kc; ++p)
        for (int64_t i = 0; i < MR; ++i) out[p * MR + i] = r[i][p];
    } else if (rows == MR && a.row_stride == 1) {
      for (int64_t p = 0; p < kc; ++p)
        for (int64_t i = 0; i < MR; ++i) out[p * MR + i] = base[p * a.col_stride + i];
    } else {
      for (int64_t p = 0; p < kc; ++p)
        for (int64_t i = 0; i < MR; ++i)
          out[p * MR + i] = i < rows ? base[i * a.row_stride + p * a.col_stride] : 0.0f;
    }
  }
}

// Packs rows [p0, p0+kc) x columns [j0, j0+nc) of B into NR-wide panels, each kc x NR (p-major),
// the last panel padded with zeros.
void pack_b(MatrixRef b, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* out) {
  for (int64_t jr = 0; jr < nc; jr += NR, out += kc * NR) {
    const int64_t cols = std::min(NR, nc - jr);
    const float* base = b.data + p0 * b.row_stride + (j0 + jr) * b.col_stride;
    if (cols == NR && b.col_stride == 1) {
      // Rows are contiguous: 16 floats per step of p (a fixed-size copy the compiler vectorises).
      const int64_t rs = b.row_stride;
      for (int64_t p = 0; p < kc; ++p) {
        const float* src = base + p * rs;
        float* dst = out + p * NR;
        for (int64_t j = 0; j < NR; ++j) dst[j] = src[j];
      }
#ifdef NN_GEMM_HAVE_AVX2
    } else if (cols == NR && b.row_stride == 1 && have_avx2()) {
      pack_b_panel_columns_avx2(base, b.col_stride, kc, out);
#endif
    } else if (b.row_stride == 1) {
      // Columns are contiguous: read each along p, write with stride NR.
      for (int64_t j = 0; j < NR; ++j) {
        if (j < cols) {
          const float* col = base + j * b.col_stride;
          for (int64_t p = 0; p < kc; ++p) out[p * NR + j] = col[p];
        } else {
          for (int64_t p = 0; p < kc; ++p) out[p * NR + j] = 0.0f;
        }
      }
    } else {
      for (int64_t p = 0; p < kc; ++p)
        for (int64_t j = 0; j < NR; ++j) out[p * NR + j] = j < cols ? base[p * b.row_stride + j * b.col_stride] : 0.0f;
    }
  }
}

// Stores the valid rows x cols of a micro-tile into C at (i, j) (global indices for the biases).
// first: this is the first KC slice (apply beta and the biases); last: the final one (ReLU).
inline void store_tile(const float* tile, int64_t rows, int64_t cols, float* c, int64_t ldc, int64_t i, int64_t j,
                       const GemmEpilogue& e, bool first, bool last) {
  for (int64_t r = 0; r < rows; ++r) {
    float* out = c + r * ldc;
    const float* t = tile + r * NR;
    float v[NR];
    if (first) {
      const float rb = e.row_bias ? e.row_bias[i + r] : 0.0f;
      if (e.beta == 0.0f) {
        for (int64_t q = 0; q < NR; ++q) v[q] = e.alpha * t[q] + rb;
      } else {
        for (int64_t q = 0; q < NR; ++q) v[q] = e.alpha * t[q] + rb + (q < cols ? e.beta * out[q] : 0.0f);
      }
      if (e.col_bias)
        for (int64_t q = 0; q < cols; ++q) v[q] += e.col_bias[j + q];
    } else {
      for (int64_t q = 0; q < cols; ++q) v[q] = out[q] + e.alpha * t[q];
    }
    if (last && e.relu)
      for (int64_t q = 0; q < NR; ++q) v[q] = std::max(v[q], 0.0f);
    std::memcpy(out, v, static_cast<size_t>(cols) * sizeof(float));
  }
}

// C[i0:i0+mc, j0:j0+nc] (+)= packed A block (mc x kc) * B block (kc x nc): packed into NR-wide
// panels (ldb == 0), or B's rows in place, ldb apart.
void macro_kernel(int64_t mc, int64_t nc, int64_t kc, const float* ap, const float* bp, int64_t ldb, float* c,
                  int64_t ldc, int64_t i0, int64_t j0, const GemmEpilogue& e, bool first, bool last) {
  const MicroKernel kernel = kernel_choice().kernel;
  alignas(64) float tile[MR * NR];
  const int64_t step = ldb > 0 ? ldb : NR;
  for (int64_t jr = 0; jr < nc; jr += NR) {
    const float* b_panel = ldb > 0 ? bp + jr : bp + jr * kc;
    const int64_t cols = std::min(NR, nc - jr);
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int64_t rows = std::min(MR, mc - ir);
      float* c_tile = c + (i0 + ir) * ldc + j0 + jr;
      const TileStore store{e.alpha, e.beta, e.row_bias ? e.row_bias + i0 + ir : nullptr,
                            e.col_bias ? e.col_bias + j0 + jr : nullptr, first, last, e.relu};
      if (rows == MR && cols == NR) {
        kernel(kc, ap + ir * kc, b_panel, step, nullptr, c_tile, ldc, store);
#ifdef NN_GEMM_HAVE_AVX2
      } else if (cols == NR && kernel == micro_kernel_avx2) {
        // A last panel of fewer rows (m not a multiple of 6: every Winograd point product of VGG),
        // full width: its rows stored as the full tiles' are, not through store_tile's scalar loop.
        kernel(kc, ap + ir * kc, b_panel, step, tile, nullptr, 0, store);
        for (int64_t r = 0; r < rows; ++r)
          store_row_avx2(_mm256_load_ps(tile + r * NR), _mm256_load_ps(tile + r * NR + 8), c_tile + r * ldc, r, store);
#endif
      } else {
#ifdef NN_GEMM_HAVE_AVX2
        if (cols <= 2 && kernel == micro_kernel_avx2) {
          for (int64_t j = 0; j < cols; ++j) micro_kernel_avx2_6x1(kc, ap + ir * kc, b_panel + j, step, tile + j);
        } else if (cols <= NR / 2 && kernel == micro_kernel_avx2) {
          micro_kernel_avx2_6x8(kc, ap + ir * kc, b_panel, step, tile);
        } else
#endif
        {
          kernel(kc, ap + ir * kc, b_panel, step, tile, nullptr, 0, TileStore{});
        }
        store_tile(tile, rows, cols, c_tile, ldc, i0 + ir, j0 + jr, e, first, last);
      }
    }
  }
}

// This thread's packing buffers (they only grow).
float* pack_buffer_a() {
  thread_local std::vector<float> buffer(static_cast<size_t>(MC * KC));
  return buffer.data();
}
float* pack_buffer_b() {
  thread_local std::vector<float> buffer(static_cast<size_t>(KC * NC));
  return buffer.data();
}

// C = epilogue(0 * AB): only beta, biases and ReLU (k == 0).
void apply_epilogue_only(int64_t m, int64_t n, float* c, int64_t ldc, const GemmEpilogue& e) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float v = (e.beta == 0.0f ? 0.0f : e.beta * c[i * ldc + j]) + (e.row_bias ? e.row_bias[i] : 0.0f) +
                (e.col_bias ? e.col_bias[j] : 0.0f);
      c[i * ldc + j] = e.relu ? std::max(v, 0.0f) : v;
    }
}

// The blocked loops; A comes packed (packed != nullptr) or is packed here per (KC, MC) block; B is
// packed per (NC, KC) block, or read in place (b_in_place: rows contiguous, readable to whole
// NR-column panels).
void gemm_blocked(int64_t m, int64_t n, int64_t k, MatrixRef a, const PackedA* packed, MatrixRef b, float* c,
                  int64_t ldc, const GemmEpilogue& e, bool b_in_place = false) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) return apply_epilogue_only(m, n, c, ldc, e);
  float* bp = pack_buffer_b();
  float* ap_buffer = packed ? nullptr : pack_buffer_a();
  // With very few rows (a linear layer on a small batch) each B panel is used once or twice and the
  // product streams B from memory: deeper, narrower slices read B's rows in longer runs (faster on
  // VGG16's fc6 shape at batch 8; bench/README.md). The pack buffer keeps its size.
  const int64_t kc_block = !packed && m <= 2 * MR ? 4 * KC : KC;
  const int64_t nc_block = NC * KC / kc_block;
  for (int64_t j0 = 0; j0 < n; j0 += nc_block) {
    const int64_t nc = std::min(nc_block, n - j0);
    for (int64_t p0 = 0; p0 < k; p0 += kc_block) {
      const int64_t kc = std::min(kc_block, k - p0);
      const float* b_block = bp;
      int64_t ldb = 0;
      if (b_in_place) {
        b_block = b.data + p0 * b.row_stride + j0;
        ldb = b.row_stride;
      } else {
        pack_b(b, p0, kc, j0, nc, bp);
      }
      for (int64_t i0 = 0; i0 < m; i0 += MC) {
        const int64_t mc = std::min(MC, m - i0);
        const float* ap;
        if (packed) {
          ap = packed->panel(p0, i0);
        } else {
          pack_a(a, i0, mc, p0, kc, ap_buffer);
          ap = ap_buffer;
        }
        macro_kernel(mc, nc, kc, ap, b_block, ldb, c, ldc, i0, j0, e, p0 == 0, p0 + kc >= k);
      }
    }
  }
}

// Below this many FLOPs sgemm_parallel stays on the calling thread.
constexpr int64_t kParallelFlops = int64_t{1} << 21;

}  // namespace

void sgemm(int64_t m, int64_t n, int64_t k, MatrixRef a, MatrixRef b, float* c, int64_t ldc, const GemmEpilogue& e) {
  gemm_blocked(m, n, k, a, nullptr, b, c, ldc, e);
}

void sgemm_parallel(int64_t m, int64_t n, int64_t k, MatrixRef a, MatrixRef b, float* c, int64_t ldc,
                    const GemmEpilogue& e) {
  const int64_t threads = get_num_threads();
  if (threads <= 1 || omp_in_parallel() || 2 * m * n * k < kParallelFlops) return sgemm(m, n, k, a, b, c, ldc, e);
  // One contiguous block of C per thread, cut along the longer side on panel boundaries; each
  // thread packs its own operands (the shared one is packed once per thread: k*min(m,n) values,
  // small next to the product).
  if (n >= m) {
    const int64_t per = (n / NR + threads - 1) / threads * NR;
    const int64_t chunk = std::max<int64_t>(NR, per);
    parallel_for(0, (n + chunk - 1) / chunk, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t j0 = t * chunk, cols = std::min(chunk, n - j0);
        GemmEpilogue part = e;
        if (e.col_bias) part.col_bias = e.col_bias + j0;
        sgemm(m, cols, k, a, MatrixRef{b.data + j0 * b.col_stride, b.row_stride, b.col_stride}, c + j0, ldc, part);
      }
    });
  } else {
    const int64_t per = (m / MR + threads - 1) / threads * MR;
    const int64_t chunk = std::max<int64_t>(MR, per);
    parallel_for(0, (m + chunk - 1) / chunk, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t i0 = t * chunk, rows = std::min(chunk, m - i0);
        GemmEpilogue part = e;
        if (e.row_bias) part.row_bias = e.row_bias + i0;
        sgemm(rows, n, k, MatrixRef{a.data + i0 * a.row_stride, a.row_stride, a.col_stride}, b, c + i0 * ldc, ldc,
              part);
      }
    });
  }
}

PackedA::PackedA(int64_t m, int64_t k, MatrixRef a) : m_(m), k_(k) {
  NN_CHECK(m >= 0 && k >= 0, "PackedA: negative size ", m, "x", k);
  const int64_t padded = (m + MR - 1) / MR * MR;
  data_.resize(static_cast<size_t>(padded * k));
  // Per KC slice, the slice's MR panels one after another (what panel() indexes).
  for (int64_t p0 = 0; p0 < k; p0 += KC) {
    const int64_t kc = std::min(KC, k - p0);
    pack_a(a, 0, m, p0, kc, data_.data() + p0 * padded);
  }
}

const float* PackedA::panel(int64_t k0, int64_t i0) const {
  const int64_t padded = (m_ + MR - 1) / MR * MR;
  const int64_t kc = std::min(KC, k_ - k0);
  return data_.data() + k0 * padded + i0 / MR * kc * MR;
}

void sgemm_packed(const PackedA& a, int64_t n, MatrixRef b, float* c, int64_t ldc, const GemmEpilogue& e) {
  gemm_blocked(a.rows(), n, a.depth(), MatrixRef{nullptr, 0, 0}, &a, b, c, ldc, e);
}

void sgemm_packed_b_in_place(const PackedA& a, int64_t n, const float* b, int64_t ldb, float* c, int64_t ldc,
                             const GemmEpilogue& e) {
  NN_CHECK(ldb >= (n + NR - 1) / NR * NR, "sgemm_packed_b_in_place: B's rows (", ldb, " floats apart) must hold ",
           (n + NR - 1) / NR * NR, " readable columns");
  gemm_blocked(a.rows(), n, a.depth(), MatrixRef{nullptr, 0, 0}, &a, MatrixRef{b, ldb, 1}, c, ldc, e, true);
}

const char* sgemm_kernel_name() { return kernel_choice().name; }

}  // namespace nn::cpu
