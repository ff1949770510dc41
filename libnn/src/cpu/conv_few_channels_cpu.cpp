// The forward convolution on the CPU for very few input channels (conv_few_channels_cpu.h): f32,
// C <= 4, 3x3, stride 1, padding 0..2; VGG's first layer (3 -> 64 at 224x224, 3 -> 16 at 128x128
// for the pneumonia model).
//
// WHY. im2col + GEMM has depth C*9 = 27 there: the GEMM packs a 27-row col matrix as wide as the
// image for 27 steps per micro-tile, and the 2x2 max pool after the layer (the pneumonia model's
// VGG11) reads the whole output back. Here the input is read in place (a few rows at a time) and
// the pool is made before anything is stored.
//
// ALGORITHM. y[o][r][q] = b[o] + sum over c, i, j of w[o][c][i][j] * xp[c][r + i][q + j], with xp
// the input zero-padded by (pad_h, pad_w). A work item is one image's output row pair (r, r + 1):
// its four padded input rows per channel are copied into a thread-local buffer (zeros outside the
// input, and past it up to a whole number of 16-column blocks), then for each block of 3 output
// channels and 16 output columns, 12 AVX2 accumulators (3 channels x 2 rows x 16 columns) take
// C * 4 rows * 3 shifts of two unaligned 8-float loads, each used by the 3 channels' broadcast
// weights for the one or two output rows it feeds: 324 FMAs per block for C = 3, against 72 loads
// and 81 weight broadcasts. The weights are repacked once per call as [block][c][tap][3] (zeros
// past O). Epilogue: + bias, ReLU (max with 0), then either the two rows stored, or the 2x2 max
// pool made in registers (even and odd columns split by a shuffle, the comparison and window
// order of max_pool2d, so the bits are max_pool2d's of the unpooled values) and one row of 8 stored.
// An odd last output row is computed as a pair whose second row is never stored.
//
// COST per item: 2 * 27 * O * 2 * OW' FLOPs (OW' = OW rounded up to 16), the item's 4 * C input
// rows copied once, y written once (a quarter of it with the pool). Threads split the items.
// A portable version of the same loops (scalar) runs where AVX2/FMA is missing.
#include "cpu/conv_few_channels_cpu.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/cpu_util.h"
#include "cpu/max_pool_step.h"
#include "cpu/parallel.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define NN_FEW_X86 1
#else
#define NN_FEW_X86 0
#endif

namespace nn::cpu {
namespace {

constexpr int kOutBlock = 2;    // output channels per block
constexpr int kColBlock = 16;   // output columns per block
constexpr int kTaps = 9;        // 3x3

struct Plan {
  const Conv2dGeometry& g;
  int64_t pw;       // padded row length: OW rounded up to 16, + 2
  int64_t pairs;    // output row pairs: ceil(OH / 2)
  int64_t oblocks;  // ceil(O / 3)
  int64_t cblocks;  // ceil(OW / 16)
  bool pool;
  int64_t ph_out, pw_out;  // pooled size (OH / 2, OW / 2)
};

// wp[block][c][tap][3] = w[3 * block + k][c][tap], zero past O.
std::vector<float> pack_weights(const float* w, const Conv2dGeometry& g, int64_t oblocks) {
  std::vector<float> wp(static_cast<size_t>(oblocks * g.c * kTaps * kOutBlock), 0.0f);
  for (int64_t o = 0; o < g.o; ++o)
    for (int64_t c = 0; c < g.c; ++c)
      for (int t = 0; t < kTaps; ++t)
        wp[static_cast<size_t>((((o / kOutBlock) * g.c + c) * kTaps + t) * kOutBlock + o % kOutBlock)] =
            w[(o * g.c + c) * kTaps + t];
  return wp;
}

// The item's padded input rows: rows[(c * 4 + k) * pw + q] = xp[c][r0 + k][q].
void load_rows(const float* x_image, const Plan& p, int64_t r0, float* rows) {
  const Conv2dGeometry& g = p.g;
  for (int64_t c = 0; c < g.c; ++c)
    for (int64_t k = 0; k < 4; ++k) {
      float* row = rows + (c * 4 + k) * p.pw;
      const int64_t ih = r0 + k - g.pad_h;
      if (ih < 0 || ih >= g.h) {
        std::fill(row, row + p.pw, 0.0f);
        continue;
      }
      std::fill(row, row + g.pad_w, 0.0f);
      std::memcpy(row + g.pad_w, x_image + (c * g.h + ih) * g.w, sizeof(float) * static_cast<size_t>(g.w));
      std::fill(row + g.pad_w + g.w, row + p.pw, 0.0f);
    }
}

// Stores a block's finished values v[k][r][col] (3 channels, 2 rows, 16 columns; after bias and
// ReLU): the valid rows and columns of y, or their 2x2 max pool.
void store_block(const float (&v)[kOutBlock][2][kColBlock], const Plan& p, float* y_image, int64_t o0, int64_t r0,
                 int64_t q0) {
  const Conv2dGeometry& g = p.g;
  for (int k = 0; k < kOutBlock && o0 + k < g.o; ++k) {
    if (p.pool) {
      const int64_t pr = r0 / 2, pq0 = q0 / 2;
      if (pr >= p.ph_out) continue;
      float* out = y_image + ((o0 + k) * p.ph_out + pr) * p.pw_out;
      for (int64_t j = 0; j < kColBlock / 2 && pq0 + j < p.pw_out; ++j)
        out[pq0 + j] = max_pool_step(max_pool_step(max_pool_step(v[k][0][2 * j], v[k][0][2 * j + 1]), v[k][1][2 * j]),
                                     v[k][1][2 * j + 1]);
    } else {
      for (int r = 0; r < 2 && r0 + r < g.oh; ++r) {
        float* out = y_image + ((o0 + k) * g.oh + r0 + r) * g.ow;
        const int64_t n = std::min<int64_t>(kColBlock, g.ow - q0);
        std::memcpy(out + q0, v[k][r], sizeof(float) * static_cast<size_t>(n));
      }
    }
  }
}

// ---- portable ----

void item_generic(const float* rows, const float* wp, const float* bias, bool relu, const Plan& p, float* y_image,
                  int64_t r0) {
  const Conv2dGeometry& g = p.g;
  for (int64_t ob = 0; ob < p.oblocks; ++ob) {
    const float* wb = wp + ob * g.c * kTaps * kOutBlock;
    for (int64_t cb = 0; cb < p.cblocks; ++cb) {
      const int64_t q0 = cb * kColBlock;
      float v[kOutBlock][2][kColBlock] = {};
      for (int64_t c = 0; c < g.c; ++c)
        for (int r = 0; r < 2; ++r)
          for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 3; ++j) {
              const float* xr = rows + (c * 4 + r + i) * p.pw + q0 + j;
              for (int k = 0; k < kOutBlock; ++k) {
                const float wv = wb[(c * kTaps + i * 3 + j) * kOutBlock + k];
                for (int q = 0; q < kColBlock; ++q) v[k][r][q] += wv * xr[q];
              }
            }
      for (int k = 0; k < kOutBlock; ++k) {
        const float b = bias != nullptr && ob * kOutBlock + k < g.o ? bias[ob * kOutBlock + k] : 0.0f;
        for (int r = 0; r < 2; ++r)
          for (int q = 0; q < kColBlock; ++q) {
            const float s = v[k][r][q] + b;
            v[k][r][q] = relu ? std::max(s, 0.0f) : s;
          }
      }
      store_block(v, p, y_image, ob * kOutBlock, r0, q0);
    }
  }
}

#if NN_FEW_X86
#define NN_AVX2_FN __attribute__((target("avx2,fma")))

template <int C>
NN_AVX2_FN void item_avx2(const float* rows, const float* wp, const float* bias, bool relu, const Plan& p,
                          float* y_image, int64_t r0) {
  const Conv2dGeometry& g = p.g;
  const int64_t pw = p.pw;
  const __m256 zero = _mm256_setzero_ps();
  int64_t offsets[C * kTaps];  // tap (c, i, j) -> its input row and shift in `rows`
  for (int t = 0; t < C * kTaps; ++t) offsets[t] = (t / kTaps * 4 + t % kTaps / 3) * pw + t % 3;
  for (int64_t ob = 0; ob < p.oblocks; ++ob) {
    const float* wb = wp + ob * C * kTaps * kOutBlock;
    const int64_t o0 = ob * kOutBlock;
    __m256 vb[kOutBlock];
    for (int k = 0; k < kOutBlock; ++k)
      vb[k] = _mm256_set1_ps(bias != nullptr && o0 + k < g.o ? bias[o0 + k] : 0.0f);
    for (int64_t cb = 0; cb < p.cblocks; ++cb) {
      const int64_t q0 = cb * kColBlock;
      // Without this, GCC hoists the weight broadcasts out of the column loop and spills the
      // accumulators.
      const float* w_block = wb;
      asm("" : "+r"(w_block));
      __m256 acc[kOutBlock][2][2];
      for (int k = 0; k < kOutBlock; ++k)
        for (int r = 0; r < 2; ++r) acc[k][r][0] = acc[k][r][1] = zero;
      // Tap by tap (c, i, j), as the GEMM's depth runs: the same sums in the same order as im2col +
      // GEMM. 8 accumulators, 4 input vectors and a weight: 13 registers. A loop, not unrolled:
      // unrolled, GCC loaded ahead and spilled.
      const float* x_block = rows + q0;
#pragma GCC unroll 1
      for (int t = 0; t < C * kTaps; ++t) {
        const float* xa = x_block + offsets[t];  // input row r0 + i: output row r0
        const float* xb = xa + pw;               // input row r0 + i + 1: output row r0 + 1
        const __m256 a0 = _mm256_loadu_ps(xa), a1 = _mm256_loadu_ps(xa + 8);
        const __m256 b0 = _mm256_loadu_ps(xb), b1 = _mm256_loadu_ps(xb + 8);
#pragma GCC unroll 2
        for (int k = 0; k < kOutBlock; ++k) {
          const __m256 wv = _mm256_broadcast_ss(w_block + t * kOutBlock + k);
          acc[k][0][0] = _mm256_fmadd_ps(wv, a0, acc[k][0][0]);
          acc[k][0][1] = _mm256_fmadd_ps(wv, a1, acc[k][0][1]);
          acc[k][1][0] = _mm256_fmadd_ps(wv, b0, acc[k][1][0]);
          acc[k][1][1] = _mm256_fmadd_ps(wv, b1, acc[k][1][1]);
        }
      }
      for (int k = 0; k < kOutBlock; ++k)
        for (int r = 0; r < 2; ++r)
          for (int h = 0; h < 2; ++h) {
            acc[k][r][h] = _mm256_add_ps(acc[k][r][h], vb[k]);
            if (relu) acc[k][r][h] = _mm256_max_ps(acc[k][r][h], zero);
          }
      const bool full_columns = q0 + kColBlock <= g.ow;
      if (p.pool && full_columns && r0 / 2 < p.ph_out) {
        // 2 rows x 16 columns -> 8 pooled columns, in max_pool2d's window order.
        for (int k = 0; k < kOutBlock && o0 + k < g.o; ++k) {
          __m256 left0, right0, left1, right1;  // rows 0 and 1: the 8 windows' left and right columns
          split_even_odd_avx2(acc[k][0][0], acc[k][0][1], left0, right0);
          split_even_odd_avx2(acc[k][1][0], acc[k][1][1], left1, right1);
          const __m256 m = max_pool_step_avx2(max_pool_step_avx2(max_pool_step_avx2(left0, right0), left1), right1);
          _mm256_storeu_ps(y_image + ((o0 + k) * p.ph_out + r0 / 2) * p.pw_out + q0 / 2, m);
        }
      } else if (!p.pool && full_columns && r0 + 1 < g.oh) {
        for (int k = 0; k < kOutBlock && o0 + k < g.o; ++k)
          for (int r = 0; r < 2; ++r) {
            float* out = y_image + ((o0 + k) * g.oh + r0 + r) * g.ow + q0;
            _mm256_storeu_ps(out, acc[k][r][0]);
            _mm256_storeu_ps(out + 8, acc[k][r][1]);
          }
      } else {  // edges: through a staging block
        alignas(32) float v[kOutBlock][2][kColBlock];
        for (int k = 0; k < kOutBlock; ++k)
          for (int r = 0; r < 2; ++r) {
            _mm256_store_ps(v[k][r], acc[k][r][0]);
            _mm256_store_ps(v[k][r] + 8, acc[k][r][1]);
          }
        store_block(v, p, y_image, o0, r0, q0);
      }
    }
  }
}
#endif

using ItemFn = void (*)(const float*, const float*, const float*, bool, const Plan&, float*, int64_t);

std::atomic<bool> force_portable{false};

ItemFn item_kernel(int64_t c) {
#if NN_FEW_X86
  if (cpu_has_avx2_fma() && !force_portable.load(std::memory_order_relaxed)) {
    switch (c) {
      case 1: return item_avx2<1>;
      case 2: return item_avx2<2>;
      case 3: return item_avx2<3>;
      case 4: return item_avx2<4>;
      default: break;
    }
  }
#endif
  return item_generic;
}

}  // namespace

void few_channels_use_portable_kernel(bool portable) { force_portable = portable; }

bool few_channels_applicable(const Conv2dGeometry& g) {
  return g.c >= 1 && g.c <= kFewChannelsMax && g.kh == 3 && g.kw == 3 && g.stride_h == 1 && g.stride_w == 1 &&
         g.pad_h >= 0 && g.pad_h <= 2 && g.pad_w >= 0 && g.pad_w <= 2 && g.oh >= 1 && g.ow >= 1 &&
         g.oh == g.h + 2 * g.pad_h - 2 && g.ow == g.w + 2 * g.pad_w - 2;
}

void conv_few_channels_forward(const float* x, const float* w, const float* bias, bool relu, float* y,
                               const Conv2dGeometry& g, bool max_pool_2x2) {
  Plan p{g, 0, 0, 0, 0, max_pool_2x2, g.oh / 2, g.ow / 2};
  p.cblocks = (g.ow + kColBlock - 1) / kColBlock;
  p.pw = p.cblocks * kColBlock + 2;
  p.pairs = (g.oh + 1) / 2;
  p.oblocks = (g.o + kOutBlock - 1) / kOutBlock;
  if (g.n == 0 || g.o == 0) return;
  const std::vector<float> wp = pack_weights(w, g, p.oblocks);
  const ItemFn item = item_kernel(g.c);
  const int64_t out_image = max_pool_2x2 ? g.o * p.ph_out * p.pw_out : g.o * g.oh * g.ow;
  // About 2 * 27 * O * 32 FLOPs per 16 columns of a pair: items of at least ~64 KFLOP apiece.
  const int64_t item_flops = 2 * 2 * kTaps * g.c * g.o * p.cblocks * kColBlock;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, item_flops));
  parallel_for(0, g.n * p.pairs, grain, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<float> rows;
    rows.resize(static_cast<size_t>(g.c * 4 * p.pw));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / p.pairs, r0 = 2 * (i % p.pairs);
      load_rows(x + n * g.c * g.h * g.w, p, r0, rows.data());
      item(rows.data(), wp.data(), bias, relu, p, y + n * out_image, r0);
    }
  });
}

}  // namespace nn::cpu
