// Winograd F(4x4, 3x3) convolution on the CPU (float32, NCHW, 3x3 kernels, stride 1, padding 0..2).
//
// ALGORITHM (Lavin & Gray 2016; the matrices B^T, G, A^T, points 0, +-1, +-2, infinity, and their
// 1-D transforms are in conv_winograd_transforms.h, shared with the CUDA path). The output is cut
// into 4x4 tiles; tile (th, tw) of image n needs the 6x6 input patch d at rows 4th - pad_h .. +5,
// columns 4tw - pad_w .. +5 (zero outside the input; edge tiles partly outside the output are
// computed whole and only their inside is stored). Per tile and output channel o:
//   Y = A^T [ sum_c  U(o,c) (.) V(c) ] A,   U(o,c) = G g(o,c) G^T (6x6),   V(c) = B^T d(c) B (6x6)
// (.) elementwise. The sum over c at each of the 36 points p = (i, j) is a matrix product, so for a
// block of T tiles:   M[p] (O x T) = U[p] (O x C) * V[p] (C x T),  36 GEMMs through the library GEMM
// (gemm_cpu.h; U[p] packed once per call as a PackedA and reused for every block of tiles).
// The backward-input pass is the same machinery: for stride 1, dx = a convolution of dy with the
// kernel rotated by 180 degrees, O and C swapped and padding 2 - pad, so only the weight transform
// differs (it reads w[o][c][2-i][2-j] as the filter from channel o to channel c).
//
// LAYOUT AND BLOCKING. Flatten the tiles of the batch, t = (n * tiles_h + th) * tiles_w + tw, and cut
// them into blocks of at most T consecutive tiles (kBlockTiles = 64), whole GEMM panels of 16 tiles
// each but the batch's last, split evenly over the threads (THREADS). Per block, on one thread, in
// its thread_local workspaces (they only grow: nothing is allocated per call once warm; 64-byte
// aligned):
//   1. input transform into V[36][C][ld]: ld = T rounded up to the GEMM's 16-column panels, plus 16
//      (the tail columns are scratch, computed on but never stored; a multiple of 16, so that every
//      row's panels start on a cache line); the point stride is padded to
//      an odd number of cache lines, else the 36 points of a tile alias in one or two L1 sets. A
//      block is a few runs of tiles along tile rows; per (run, channel) the six input rows are
//      combined vertically (B^T, along whole rows: contiguous SIMD), then 8 tiles at a time are
//      transposed into SIMD lanes (lane = tile; an 8x4 and an 8x2 in-register transpose per row)
//      and combined horizontally (B); each point's 8 values go out as one 32-byte store (no scatter).
//      The next channel's rows are prefetched meanwhile.
//   2. 36 GEMMs M[p] (O x T) = U[p] * V[p] into M[36][O][ld] (serial sgemm on this thread). With
//      U packed (PackedA), the GEMM reads V's rows in place (sgemm_packed_b_in_place) instead of
//      copying them into panels: V is already row-major and hot in cache.
//   3. output transform: 8 tiles at a time in SIMD lanes, 36 vector loads, A^T . A, + bias[o], ReLU,
//      a 4x8 transpose back to four 32-float rows of y, stored straight into y where the 8 tiles are
//      inside the output, through a staging tile at the edges. With the 2x2 max pool (Problem::pool),
//      the 4x4 outputs are pooled in registers first and only two 16-float rows are stored: VGG's
//      pooled layers write a quarter of their output and never read it back (about 3 ms of VGG16's
//      65 ms batch-1 forward: bench/README.md, "Winograd on the CPU").
// Bytes per thread: V + M = 36 * 4 * ld * (C + O) (0.7 MiB at 64 -> 64 channels, 11 MiB at 512 ->
// 512). T sets U's reuse: each block reads all of U (2T FLOPs per byte of U): 64 keeps U's traffic
// (38 MB per block at 512 x 512) near V's and M's. U = the weight transform, [36][C][O] in the
// calling thread's workspace, packed once into 36 PackedA when every thread has at least two blocks
// to reuse them, else read in place (the GEMM packs it as it goes: no allocation, no extra pass).
// The transforms have AVX2/FMA versions (intrinsics under a target attribute, chosen at run time
// with __builtin_cpu_supports) and portable ones (plain loops over 8 lanes).
//
// THREADS. With enough tiles (>= threads * kMinBlockTiles) the threads take contiguous runs of
// the tiles' 16-tile GEMM panels, as even as whole panels allow, cut into blocks of at most
// kBlockTiles; each thread has its own workspace, and they never synchronise until the end. With fewer tiles (small images at small batch) all tiles form one
// block: the threads split its input transform over channels into one shared V, then split O for
// the GEMMs and the output transform. The weight transform is split over input channels. Inside a
// parallel region, with one thread, or under 2^23 GEMM FLOPs, everything runs on the calling thread.
//
// COST per call, with P = N * tiles_h * tiles_w tiles (P = N*OH*OW/16 when OH, OW are multiples of 4):
//   GEMMs            2 * 36 * O * C * P FLOPs (direct: 2 * 9 * O * C * N*OH*OW = 2 * 144 * O*C*P, 4x more)
//   input transform  per (tile, input channel): 6 rows x 6 columns of 12 ops vertically (done along
//                    whole rows, 4 columns per tile) + 6 x 12 horizontally = ~150 FLOPs, 36 floats
//                    stored (2.25x the tile's 16 input elements)
//   output transform per (tile, output channel): 6 x 10 + 4 x 10 ops + bias, ReLU = ~130 FLOPs
//   weight transform per (o, c) filter: ~120 FLOPs, 36 floats stored (4x the weights): 38 MB for
//                    512 x 512 channels, memory-bound: the fixed cost that small images do not
//                    amortise (see winograd_applicable)
//   bytes            x read ~1.5x (tile rows overlap by 2 of 6), y written once, V and M written and
//                    read once each (9 * C * P and 9 * O * P floats), U read once per block.
//
// ERROR. tests/test_conv_winograd.cpp checks every pass against a float64 direct convolution and
// asserts max|y - y_ref| / max|y_ref| <= 1e-4; the errors it measured, and the timings behind the
// choices here, are in bench/README.md ("Winograd on the CPU").
//
// BACKWARD WEIGHT (winograd_conv2d_backward_weight). With V[p] (C x T) the forward's input
// transform of x (the same code) and dM[p] (O x T) = A dY A^T per tile, the adjoint of the output
// transform (dY = the tile's 4x4 of dy, zero outside the output; A = (A^T)^T above):
//   dU[p] (O x C) = sum over all tiles  dM[p] V[p]^T,     dw(o,c) = G^T dU(o,c) G (3x3),
// the adjoint of U = G g G^T. Per block of T tiles: input transform into V[36][C][ld], dY transform
// into M[36][O][ld] (vertical A along whole rows, then 8 tiles per SIMD group through a 4x8
// transpose; AVX2 and portable), then 36 sgemm with beta = 1 (beta = 0 for a thread's first block)
// into dU[36][O][C], V[p]^T a transposed view (row stride 1) that the GEMM packs with its 8x8 AVX
// transpose; the GEMM's depth is the block's exact tile count, so the transforms' scratch columns
// past it are never read. At the end G^T . G per (o, c), 8 input channels per step, the threads'
// accumulators summed on the way, parallel over o.
// Threads: many tiles: contiguous runs of blocks per thread, each thread with a private dU
// (36*O*C floats: 38 MB per thread at 512 -> 512 channels, 2.4 MB at 128 -> 128) in its
// thread_local workspace (grows only). Few tiles for the accumulator's size (fewer than 2 blocks
// per thread when O*C > 128*128, or fewer than kMinBlockTiles per thread): blocks of up to 256
// tiles one after the other, each split over C for the input transform and over O for the dY
// transform and the products, into one shared dU (no reduction). Block size T: every block reads
// and writes the thread's whole dU, so deeper blocks pay for it with more channels: T = 64 up to
// 128x128 channels, 128 up to 128x256, 256 (the GEMM's KC) above.
// Cost: GEMMs 2 * 36 * O * C * P FLOPs (the im2col path: 2 * 144 * O * C * P), transforms of x
// and dy as in the forward (~150 and ~100 FLOPs per tile and channel), dU traffic 36*O*C*8 bytes
// per block, the final G^T . G ~100 FLOPs per (o, c) per accumulator.
#include "cpu/conv_winograd_cpu.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define NN_WINOGRAD_X86 1
#define NN_AVX2_FN __attribute__((target("avx2,fma")))
#else
#define NN_WINOGRAD_X86 0
#endif

#include "conv_winograd_transforms.h"
#include "cpu/cpu_util.h"
#include "cpu/gemm_cpu.h"
#include "cpu/max_pool_step.h"
#include "cpu/parallel.h"
#include "host_device.h"
#include "nn/error.h"

#define NN_INLINE inline __attribute__((always_inline))

namespace nn::cpu {
namespace {

using winograd_transforms::kPoints;  // 6x6 transform points
constexpr int kLanes = 8;            // tiles per SIMD group
constexpr int64_t kGemmColumns = 16;  // the GEMM micro-kernel's width (a partial panel is stored slowly)

// Tiles per block (LAYOUT AND BLOCKING at the top): fewer read U from memory more often, more push V
// and M out of L2 (the measurements: bench/README.md, "Winograd on the CPU").
constexpr int64_t kBlockTiles = 64;
constexpr int64_t kMinBlockTiles = 32;
// The backward-weight pass's deepest blocks (its GEMMs' depth; the GEMM's KC).
constexpr int64_t kMaxWgradBlockTiles = 256;
// Below this many GEMM FLOPs a call runs on the calling thread.
constexpr int64_t kParallelFlops = int64_t{1} << 23;

// A convolution as the Winograd core sees it: forward, or backward-input with (C, O) swapped.
struct Problem {
  const float* in;  // (n, cin, ih, iw)
  float* out;       // (n, cout, oh, ow)
  const float* bias;
  bool relu;
  // out holds the 2x2 stride-2 max pool of the convolution's output (N, O, OH / 2, OW / 2): a
  // window never straddles two 4x4 tiles, so each tile's 2x2 pooled outputs are made in its output
  // transform and the full-size output is never written.
  bool pool;
  int64_t n, cin, cout, ih, iw, oh, ow, pad_h, pad_w;
  int64_t tiles_h, tiles_w, tiles;  // tiles: of the whole batch
};

// A run of consecutive tiles along one tile row: tiles (img, th, tw .. tw + len), at column `b` of
// the block's V and M rows.
struct Run {
  int64_t img, th, tw, len, b;
};

template <typename F>
void for_each_run(const Problem& P, int64_t t0, int64_t t1, const F& f) {
  const int64_t per_image = P.tiles_h * P.tiles_w;
  for (int64_t t = t0; t < t1;) {
    const int64_t img = t / per_image, r = t % per_image, th = r / P.tiles_w, tw = r % P.tiles_w;
    const int64_t len = std::min(t1 - t, P.tiles_w - tw);
    f(Run{img, th, tw, len, t - t0});
    t += len;
  }
}

// This thread's scratch buffers (they only grow).
struct Workspace {
  std::vector<float> v, m, rows, zeros, u, du;
};
Workspace& workspace() {
  thread_local Workspace ws;
  return ws;
}
float* grow(std::vector<float>& buf, int64_t n) {
  if (static_cast<int64_t>(buf.size()) < n + 16) buf.resize(static_cast<size_t>(n + 16));
  const uintptr_t p = reinterpret_cast<uintptr_t>(buf.data());
  return buf.data() + ((64 - p % 64) % 64) / sizeof(float);  // 64-byte aligned (p is 4-aligned)
}

// ---- the 1-D transforms (conv_winograd_transforms.h, shared with the CUDA path) ----

using winograd_transforms::filter_1d;                // u = G g
using winograd_transforms::filter_grad_1d_factored;  // g = G^T u
using winograd_transforms::input_1d;                 // v = B^T d
using winograd_transforms::output_1d;                // y = A^T m
using winograd_transforms::output_grad_1d;           // m = A y

// ---- weight transform: U[p][c][r] = (G g(r,c) G^T)[p] ----

// For the GEMM's rows r (output channels of the problem) and depth c (its input channels): g(r, c)
// = w[r][c] (forward: w is (rows, cols, 3, 3)), or w[c][r] rotated by 180 degrees (backward input:
// w is (cols, rows, 3, 3)). U is stored depth-major (each point's matrix is transposed, rows
// contiguous), the layout PackedA packs fastest (6 contiguous rows per step of depth). Columns
// [c0, c1) of every point, 8 rows at a time.
NN_INLINE void weight_cols_impl(const float* w, int64_t rows, int64_t cols, bool backward, float* U, int64_t c0,
                                int64_t c1) {
  const int64_t plane = rows * cols;
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t r0 = 0; r0 < rows; r0 += kLanes) {
      const int lanes = static_cast<int>(std::min<int64_t>(kLanes, rows - r0));
      float g[9][kLanes] = {};
      if (backward) {
        const float* f = w + (c * rows + r0) * 9;  // the lanes' filters are consecutive
        for (int l = 0; l < lanes; ++l)
          for (int k = 0; k < 9; ++k) g[k][l] = f[l * 9 + 8 - k];
      } else {
        const float* f = w + (r0 * cols + c) * 9;
        for (int l = 0; l < lanes; ++l)
          for (int k = 0; k < 9; ++k) g[k][l] = f[l * cols * 9 + k];
      }
      // Vertical: tmp[i][v] = sum_u G[i][u] g[u][v]. The operands are loaded in order before each
      // call (GCC evaluates arguments right to left, and the order of the loads decides which
      // products FMA contraction fuses): the bits then stay those the tests validated.
      float tmp[6][3][kLanes];
      for (int v = 0; v < 3; ++v)
        for (int l = 0; l < kLanes; ++l) {
          const float g0 = g[v][l], g1 = g[3 + v][l], g2 = g[6 + v][l];
          filter_1d(g0, g1, g2, &tmp[0][v][l], 3 * kLanes);
        }
      // Horizontal: u[i][j] = sum_v tmp[i][v] G[j][v].
      float u[kPoints][kLanes];
      for (int i = 0; i < 6; ++i)
        for (int l = 0; l < kLanes; ++l) {
          const float g0 = tmp[i][0][l], g1 = tmp[i][1][l], g2 = tmp[i][2][l];
          filter_1d(g0, g1, g2, &u[i * 6][l], kLanes);
        }
      float* dst = U + c * rows + r0;
      if (lanes == kLanes) {
        for (int p = 0; p < kPoints; ++p) std::memcpy(dst + p * plane, u[p], sizeof(float) * kLanes);
      } else {
        for (int p = 0; p < kPoints; ++p)
          for (int l = 0; l < lanes; ++l) dst[p * plane + l] = u[p][l];
      }
    }
  }
}

// ---- input transform of one run of tiles of one channel ----

// Vertical pass: rows t[i] (stride wb) = sum_r B^T[i][r] * d_r over columns [0, wb), where input row
// r holds columns [lo, hi) at d[r][0 ..] and zeros elsewhere.
NN_INLINE void input_vertical(const float* const d[6], int64_t lo, int64_t hi, int64_t wb, float* t) {
  for (int i = 0; i < 6; ++i) {
    std::fill(t + i * wb, t + i * wb + lo, 0.0f);
    std::fill(t + i * wb + hi, t + (i + 1) * wb, 0.0f);
  }
  const float *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3], *d4 = d[4], *d5 = d[5];
  float* out = t + lo;
  const int64_t n = hi - lo;
#pragma GCC ivdep
  for (int64_t k = 0; k < n; ++k) input_1d(d0[k], d1[k], d2[k], d3[k], d4[k], d5[k], out + k, wb);
}

// Horizontal pass for 8 tiles (portable): the 6 rows at t (stride wb), tile k at columns 4k .. 4k+5;
// point (i, j) of the 8 tiles is stored at v + (6i + j) * pstride.
NN_INLINE void input_group_generic(const float* t, int64_t wb, float* v, int64_t pstride) {
  for (int i = 0; i < 6; ++i) {
    const float* row = t + i * wb;
    float s[6][kLanes];
    for (int j = 0; j < 6; ++j)
      for (int k = 0; k < kLanes; ++k) s[j][k] = row[4 * k + j];
    float* vi = v + 6 * i * pstride;
    for (int k = 0; k < kLanes; ++k) input_1d(s[0][k], s[1][k], s[2][k], s[3][k], s[4][k], s[5][k], vi + k, pstride);
  }
}

// ---- output transform of 8 tiles of one channel ----

// y tile rows: out[a * 32 + 4k + q] = Y[a][q] of tile k, for 8 tiles; m + p * pstride holds point p
// of the 8 tiles.
NN_INLINE void output_group_generic(const float* m, int64_t pstride, float bias, bool relu, float* out) {
  float r[6][4][kLanes];
  for (int i = 0; i < 6; ++i) {
    const float* mi = m + 6 * i * pstride;
    for (int k = 0; k < kLanes; ++k)
      output_1d(mi[k], mi[pstride + k], mi[2 * pstride + k], mi[3 * pstride + k], mi[4 * pstride + k],
                mi[5 * pstride + k], &r[i][0][k], kLanes);
  }
  for (int q = 0; q < 4; ++q)
    for (int k = 0; k < kLanes; ++k) {
      float y[4];
      output_1d(r[0][q][k], r[1][q][k], r[2][q][k], r[3][q][k], r[4][q][k], r[5][q][k], y, 1);
      for (int a = 0; a < 4; ++a) {
        float val = y[a] + bias;
        if (relu) val = std::max(val, 0.0f);
        out[a * 32 + 4 * k + q] = val;
      }
    }
}

// Pools a 4-row staging tile (out[a * 32 + col], output_group_*'s layout) into 2 rows of 16, in
// max_pool2d's window order (row 0 left, right, row 1 left, right): max_pool2d's bits.
NN_INLINE void pool_tile_generic(const float* tile, float* pooled) {
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 16; ++c) {
      const float* t = tile + 2 * r * 32 + 2 * c;
      pooled[r * 16 + c] = max_pool_step(max_pool_step(max_pool_step(t[0], t[1]), t[32]), t[33]);
    }
}

// ---- output-gradient transform (backward weight): dM = A dY A^T, the adjoint of A^T . A ----

// Vertical pass: rows t[i] (stride wb) = sum_a A[i][a] * dy_a over columns [0, wb), where dy row a
// holds columns [0, hi) at d[a][0 ..] and zeros beyond (past the output, or past the run).
NN_INLINE void dy_vertical(const float* const d[4], int64_t hi, int64_t wb, float* t) {
  for (int i = 0; i < 6; ++i) std::fill(t + i * wb + hi, t + (i + 1) * wb, 0.0f);
  const float *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3];
#pragma GCC ivdep
  for (int64_t k = 0; k < hi; ++k) output_grad_1d(d0[k], d1[k], d2[k], d3[k], t + k, wb);
}

// Horizontal pass for 8 tiles (portable): the 6 rows at t (stride wb), tile k at columns 4k .. 4k+3;
// point (i, j) of the 8 tiles is stored at m + (6i + j) * pstride.
NN_INLINE void dy_group_generic(const float* t, int64_t wb, float* m, int64_t pstride) {
  for (int i = 0; i < 6; ++i) {
    const float* row = t + i * wb;
    float s[4][kLanes];
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < kLanes; ++k) s[j][k] = row[4 * k + j];
    float* mi = m + 6 * i * pstride;
    for (int k = 0; k < kLanes; ++k) output_grad_1d(s[0][k], s[1][k], s[2][k], s[3][k], mi + k, pstride);
  }
}

#if NN_WINOGRAD_X86
// Transposes 32 floats p[0..32) = 8 groups of 4 into s[j] = {p[4k + j] : k < 8}, j < 4.
NN_AVX2_FN NN_INLINE void transpose_8x4(const float* p, __m256& s0, __m256& s1, __m256& s2, __m256& s3) {
  const __m256 a = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p)), _mm_loadu_ps(p + 16), 1);
  const __m256 b = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p + 4)), _mm_loadu_ps(p + 20), 1);
  const __m256 c = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p + 8)), _mm_loadu_ps(p + 24), 1);
  const __m256 d = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p + 12)), _mm_loadu_ps(p + 28), 1);
  const __m256 t0 = _mm256_unpacklo_ps(a, b), t1 = _mm256_unpackhi_ps(a, b);
  const __m256 t2 = _mm256_unpacklo_ps(c, d), t3 = _mm256_unpackhi_ps(c, d);
  s0 = _mm256_shuffle_ps(t0, t2, 0x44);
  s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  s2 = _mm256_shuffle_ps(t1, t3, 0x44);
  s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
}

// The first two of transpose_8x4.
NN_AVX2_FN NN_INLINE void transpose_8x2(const float* p, __m256& s0, __m256& s1) {
  const __m256 a = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p)), _mm_loadu_ps(p + 16), 1);
  const __m256 b = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p + 4)), _mm_loadu_ps(p + 20), 1);
  const __m256 c = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p + 8)), _mm_loadu_ps(p + 24), 1);
  const __m256 d = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p + 12)), _mm_loadu_ps(p + 28), 1);
  const __m256 t0 = _mm256_unpacklo_ps(a, b), t2 = _mm256_unpacklo_ps(c, d);
  s0 = _mm256_shuffle_ps(t0, t2, 0x44);
  s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
}

// input_1d (v = B^T d) on 8 lanes, with the same factoring.
NN_AVX2_FN NN_INLINE void input_1d_avx2(__m256 d0, __m256 d1, __m256 d2, __m256 d3, __m256 d4, __m256 d5, float* v,
                                        int64_t stride) {
  const __m256 four = _mm256_set1_ps(4.0f), five = _mm256_set1_ps(5.0f), two = _mm256_set1_ps(2.0f);
  const __m256 a = _mm256_fnmadd_ps(four, d2, d4), b = _mm256_fnmadd_ps(four, d1, d3);
  const __m256 c = _mm256_sub_ps(d4, d2), e = _mm256_sub_ps(d3, d1);
  _mm256_storeu_ps(v, _mm256_fmadd_ps(four, d0, _mm256_fnmadd_ps(five, d2, d4)));
  _mm256_storeu_ps(v + stride, _mm256_add_ps(a, b));
  _mm256_storeu_ps(v + 2 * stride, _mm256_sub_ps(a, b));
  _mm256_storeu_ps(v + 3 * stride, _mm256_fmadd_ps(two, e, c));
  _mm256_storeu_ps(v + 4 * stride, _mm256_fnmadd_ps(two, e, c));
  _mm256_storeu_ps(v + 5 * stride, _mm256_fmadd_ps(four, d1, _mm256_fnmadd_ps(five, d3, d5)));
}

NN_AVX2_FN NN_INLINE void input_group_avx2(const float* t, int64_t wb, float* v, int64_t pstride) {
  for (int i = 0; i < 6; ++i) {
    const float* row = t + i * wb;
    __m256 s0, s1, s2, s3, s4, s5;
    transpose_8x4(row, s0, s1, s2, s3);
    transpose_8x2(row + 4, s4, s5);
    input_1d_avx2(s0, s1, s2, s3, s4, s5, v + 6 * i * pstride, pstride);
  }
}

// output_1d (y = A^T m) on 8 lanes, with the same factoring.
NN_AVX2_FN NN_INLINE void output_1d_avx2(__m256 m0, __m256 m1, __m256 m2, __m256 m3, __m256 m4, __m256 m5,
                                         __m256& y0, __m256& y1, __m256& y2, __m256& y3) {
  const __m256 a1 = _mm256_add_ps(m1, m2), b1 = _mm256_sub_ps(m1, m2);
  const __m256 a2 = _mm256_add_ps(m3, m4), b2 = _mm256_sub_ps(m3, m4);
  y0 = _mm256_add_ps(_mm256_add_ps(m0, a1), a2);
  y1 = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), b2, b1);
  y2 = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), a2, a1);
  y3 = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0f), b2, b1), m5);
}

// The 4x4 outputs of 8 tiles, + bias, ReLU: q[a][j] = Y[a][j] of the 8 tiles in the lanes.
NN_AVX2_FN NN_INLINE void output_tiles_avx2(const float* m, int64_t pstride, float bias, bool relu,
                                            __m256 (&q)[4][4]) {
  __m256 r[6][4];
  for (int i = 0; i < 6; ++i) {
    const float* mi = m + 6 * i * pstride;
    output_1d_avx2(_mm256_loadu_ps(mi), _mm256_loadu_ps(mi + pstride), _mm256_loadu_ps(mi + 2 * pstride),
                   _mm256_loadu_ps(mi + 3 * pstride), _mm256_loadu_ps(mi + 4 * pstride),
                   _mm256_loadu_ps(mi + 5 * pstride), r[i][0], r[i][1], r[i][2], r[i][3]);
  }
  __m256 y[4][4];  // [a][q]
  for (int q = 0; q < 4; ++q)
    output_1d_avx2(r[0][q], r[1][q], r[2][q], r[3][q], r[4][q], r[5][q], y[0][q], y[1][q], y[2][q], y[3][q]);
  const __m256 vb = _mm256_set1_ps(bias), zero = _mm256_setzero_ps();
  for (int a = 0; a < 4; ++a)
    for (int j = 0; j < 4; ++j) {
      q[a][j] = _mm256_add_ps(y[a][j], vb);
      if (relu) q[a][j] = _mm256_max_ps(q[a][j], zero);
    }
}

// Row a of the 8 tiles (32 floats) goes to out + a * ostride.
NN_AVX2_FN NN_INLINE void output_group_avx2(const float* m, int64_t pstride, float bias, bool relu, float* out,
                                            int64_t ostride) {
  __m256 y[4][4];
  output_tiles_avx2(m, pstride, bias, relu, y);
  for (int a = 0; a < 4; ++a) {
    const __m256* q = y[a];
    // 4 vectors of 8 tiles -> 8 tiles of 4 columns.
    const __m256 t0 = _mm256_unpacklo_ps(q[0], q[1]), t1 = _mm256_unpackhi_ps(q[0], q[1]);
    const __m256 t2 = _mm256_unpacklo_ps(q[2], q[3]), t3 = _mm256_unpackhi_ps(q[2], q[3]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);  // tiles 0|4, 1|5
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);  // tiles 2|6, 3|7
    float* o = out + a * ostride;
    _mm256_storeu_ps(o, _mm256_permute2f128_ps(u0, u1, 0x20));
    _mm256_storeu_ps(o + 8, _mm256_permute2f128_ps(u2, u3, 0x20));
    _mm256_storeu_ps(o + 16, _mm256_permute2f128_ps(u0, u1, 0x31));
    _mm256_storeu_ps(o + 24, _mm256_permute2f128_ps(u2, u3, 0x31));
  }
}

// The 2x2 max pool of the 8 tiles' outputs: pooled row r of the 8 tiles (16 floats, 2 per tile)
// goes to out + r * ostride.
NN_AVX2_FN NN_INLINE void output_group_pool_avx2(const float* m, int64_t pstride, float bias, bool relu, float* out,
                                                 int64_t ostride) {
  __m256 y[4][4];
  output_tiles_avx2(m, pstride, bias, relu, y);
  for (int r = 0; r < 2; ++r) {
    __m256 p[2];
    for (int s = 0; s < 2; ++s)
      p[s] = max_pool_step_avx2(
          max_pool_step_avx2(max_pool_step_avx2(y[2 * r][2 * s], y[2 * r][2 * s + 1]), y[2 * r + 1][2 * s]),
          y[2 * r + 1][2 * s + 1]);
    // 2 vectors of 8 tiles -> 8 tiles of 2 columns.
    const __m256 lo = _mm256_unpacklo_ps(p[0], p[1]), hi = _mm256_unpackhi_ps(p[0], p[1]);  // tiles 0,1|4,5; 2,3|6,7
    _mm256_storeu_ps(out + r * ostride, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(out + r * ostride + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
  }
}

// dy_group_generic with output_grad_1d (m = A y) on 8 lanes, with the same factoring.
NN_AVX2_FN NN_INLINE void dy_group_avx2(const float* t, int64_t wb, float* m, int64_t pstride) {
  const __m256 two = _mm256_set1_ps(2.0f), four = _mm256_set1_ps(4.0f), eight = _mm256_set1_ps(8.0f);
  for (int i = 0; i < 6; ++i) {
    __m256 s0, s1, s2, s3;
    transpose_8x4(t + i * wb, s0, s1, s2, s3);
    const __m256 e = _mm256_add_ps(s0, s2), f = _mm256_add_ps(s1, s3);
    const __m256 g = _mm256_fmadd_ps(four, s2, s0), h = _mm256_fmadd_ps(eight, s3, _mm256_mul_ps(two, s1));
    float* mi = m + 6 * i * pstride;
    _mm256_storeu_ps(mi, s0);
    _mm256_storeu_ps(mi + pstride, _mm256_add_ps(e, f));
    _mm256_storeu_ps(mi + 2 * pstride, _mm256_sub_ps(e, f));
    _mm256_storeu_ps(mi + 3 * pstride, _mm256_add_ps(g, h));
    _mm256_storeu_ps(mi + 4 * pstride, _mm256_sub_ps(g, h));
    _mm256_storeu_ps(mi + 5 * pstride, s3);
  }
}
#endif

// ---- per (run, channel) drivers, in a portable and an AVX2 version ----

struct InputArgs {
  const float* d[6];  // the six input rows, at column lo of the run's span (zeros for rows outside)
  int64_t lo, hi, wb, groups;
  float* t;           // 6 * wb scratch
  float* v;           // V + c * ld + run.b
  int64_t pstride;    // C * ld
};

struct OutputArgs {
  const float* m;    // M + o * ld + run.b
  int64_t pstride;   // O * ld
  int64_t groups;
  float bias;
  bool relu;
  // The run's first output element: row 4th, column 4tw of plane o (pooled: row 2th, column 2tw).
  float* y;
  int64_t ow, rows;  // row stride of y; valid rows (1..4; pooled 1..2)
  int64_t cols;      // valid columns from 4tw (1 .. 4 len; pooled from 2tw, 1 .. 2 len)
};

struct DyArgs {
  const float* d[4];  // the four dy rows at the run's first column (zeros for rows past the output)
  int64_t hi, wb, groups;  // valid columns; row width (32 * groups); groups of 8 tiles
  float* t;                // 6 * wb scratch
  float* m;                // dM + o * ld + run.b
  int64_t pstride;         // point stride of dM
};

// tile[r * width + col]: the rows of group g's 8 tiles (width 32, or 16 pooled), stored where
// they are inside the output.
NN_INLINE void store_group(const float* tile, int64_t width, const OutputArgs& a, int64_t g) {
  const int64_t c = std::min<int64_t>(width, a.cols - width * g);
  for (int64_t r = 0; r < a.rows; ++r)
    std::memcpy(a.y + r * a.ow + width * g, tile + r * width, sizeof(float) * c);
}

void input_run_generic(const InputArgs& a) {
  input_vertical(a.d, a.lo, a.hi, a.wb, a.t);
  for (int64_t g = 0; g < a.groups; ++g) input_group_generic(a.t + 32 * g, a.wb, a.v + kLanes * g, a.pstride);
}

void output_run_generic(const OutputArgs& a) {
  alignas(32) float tile[4 * 32];
  for (int64_t g = 0; g < a.groups; ++g) {
    output_group_generic(a.m + kLanes * g, a.pstride, a.bias, a.relu, tile);
    store_group(tile, 32, a, g);
  }
}

void output_pool_run_generic(const OutputArgs& a) {
  float tile[4 * 32], pooled[2 * 16];
  for (int64_t g = 0; g < a.groups; ++g) {
    output_group_generic(a.m + kLanes * g, a.pstride, a.bias, a.relu, tile);
    pool_tile_generic(tile, pooled);
    store_group(pooled, 16, a, g);
  }
}

void dy_run_generic(const DyArgs& a) {
  dy_vertical(a.d, a.hi, a.wb, a.t);
  for (int64_t g = 0; g < a.groups; ++g) dy_group_generic(a.t + 32 * g, a.wb, a.m + kLanes * g, a.pstride);
}

#if NN_WINOGRAD_X86
NN_AVX2_FN void input_run_avx2(const InputArgs& a) {
  input_vertical(a.d, a.lo, a.hi, a.wb, a.t);
  for (int64_t g = 0; g < a.groups; ++g) input_group_avx2(a.t + 32 * g, a.wb, a.v + kLanes * g, a.pstride);
}

NN_AVX2_FN void dy_run_avx2(const DyArgs& a) {
  dy_vertical(a.d, a.hi, a.wb, a.t);
  for (int64_t g = 0; g < a.groups; ++g) dy_group_avx2(a.t + 32 * g, a.wb, a.m + kLanes * g, a.pstride);
}

NN_AVX2_FN void output_run_avx2(const OutputArgs& a) {
  alignas(32) float tile[4 * 32];
  for (int64_t g = 0; g < a.groups; ++g) {
    if (a.rows == 4 && a.cols >= 32 * (g + 1)) {  // the 4 x 32 outputs are inside: straight to y
      output_group_avx2(a.m + kLanes * g, a.pstride, a.bias, a.relu, a.y + 32 * g, a.ow);
    } else {
      output_group_avx2(a.m + kLanes * g, a.pstride, a.bias, a.relu, tile, 32);
      store_group(tile, 32, a, g);
    }
  }
}

NN_AVX2_FN void output_pool_run_avx2(const OutputArgs& a) {
  alignas(32) float pooled[2 * 16];
  for (int64_t g = 0; g < a.groups; ++g) {
    if (a.rows == 2 && a.cols >= 16 * (g + 1)) {  // the 2 x 16 pooled outputs are inside: straight to y
      output_group_pool_avx2(a.m + kLanes * g, a.pstride, a.bias, a.relu, a.y + 16 * g, a.ow);
    } else {
      output_group_pool_avx2(a.m + kLanes * g, a.pstride, a.bias, a.relu, pooled, 16);
      store_group(pooled, 16, a, g);
    }
  }
}

NN_AVX2_FN void weight_cols_avx2(const float* w, int64_t rows, int64_t cols, bool backward, float* U, int64_t c0,
                                 int64_t c1) {
  weight_cols_impl(w, rows, cols, backward, U, c0, c1);
}
#endif

void weight_cols_generic(const float* w, int64_t rows, int64_t cols, bool backward, float* U, int64_t c0, int64_t c1) {
  weight_cols_impl(w, rows, cols, backward, U, c0, c1);
}

struct Kernels {
  void (*input_run)(const InputArgs&);
  void (*output_run)(const OutputArgs&);
  void (*output_pool_run)(const OutputArgs&);
  void (*weight_cols)(const float*, int64_t, int64_t, bool, float*, int64_t, int64_t);
  void (*dy_run)(const DyArgs&);
};

std::atomic<bool> force_portable{false};

const Kernels& kernels() {
  static const Kernels portable{input_run_generic, output_run_generic, output_pool_run_generic, weight_cols_generic,
                                dy_run_generic};
#if NN_WINOGRAD_X86
  static const Kernels avx2{input_run_avx2, output_run_avx2, output_pool_run_avx2, weight_cols_avx2, dy_run_avx2};
  if (cpu_has_avx2_fma() && !force_portable.load(std::memory_order_relaxed)) return avx2;
#endif
  return portable;
}

// ---- block drivers ----

// Input-transforms channels [c0, c1) of the tiles [t0, t1) into V (row stride ld, point stride pv).
void transform_input(const Problem& P, int64_t t0, int64_t t1, int64_t c0, int64_t c1, float* V, int64_t ld,
                     int64_t pv) {
  Workspace& ws = workspace();
  const Kernels& K = kernels();
  for_each_run(P, t0, t1, [&](const Run& run) {
    const int64_t groups = ceil_div(run.len, kLanes);
    const int64_t wb = 32 * groups + 8;
    const int64_t iw0 = 4 * run.tw - P.pad_w;  // input column of the span's column 0
    const int64_t lo = std::clamp<int64_t>(-iw0, 0, wb), hi = std::clamp<int64_t>(P.iw - iw0, lo, wb);
    float* t = grow(ws.rows, 6 * wb);
    const float* zeros = grow(ws.zeros, wb);  // only ever zero (grow value-initialises)
    InputArgs a;
    a.lo = lo, a.hi = hi, a.wb = wb, a.groups = groups, a.t = t, a.pstride = pv;
    for (int64_t c = c0; c < c1; ++c) {
      const float* plane = P.in + (run.img * P.cin + c) * P.ih * P.iw;
      for (int r = 0; r < 6; ++r) {
        const int64_t row = 4 * run.th - P.pad_h + r;
        a.d[r] = row >= 0 && row < P.ih ? plane + row * P.iw + iw0 + lo : zeros;
      }
      a.v = V + c * ld + run.b;
      // The next channel's rows are short runs far apart, which the hardware prefetchers catch
      // late: ask for them while this channel is transformed.
      if (c + 1 < c1) {
        for (int r = 0; r < 6; ++r) {
          if (a.d[r] == zeros) continue;
          const float* next = a.d[r] + P.ih * P.iw;
          for (int64_t k = 0; k < hi - lo; k += 16) __builtin_prefetch(next + k);
          __builtin_prefetch(next + (hi - lo) - 1);
        }
      }
      K.input_run(a);
    }
  });
}

// Output-transforms channels [o0, o1) of the tiles [t0, t1) from M (rows o - m_row0, row stride ld,
// point stride pm) into P.out.
void transform_output(const Problem& P, int64_t t0, int64_t t1, int64_t o0, int64_t o1, const float* M,
                      int64_t m_row0, int64_t ld, int64_t pm) {
  const Kernels& K = kernels();
  for_each_run(P, t0, t1, [&](const Run& run) {
    OutputArgs a;
    a.pstride = pm;
    a.groups = ceil_div(run.len, kLanes);
    a.relu = P.relu;
    // The output's size and a tile's extent in it: 4x4 outputs, or 2x2 pooled ones.
    const int64_t s = P.pool ? 2 : 4, oh = P.oh * s / 4, ow = P.ow * s / 4;
    a.ow = ow;
    a.rows = std::min(s, oh - s * run.th);
    a.cols = std::min(ow, s * (run.tw + run.len)) - s * run.tw;
    if (a.rows <= 0 || a.cols <= 0) return;  // pooled: the output's odd last row or column only
    for (int64_t o = o0; o < o1; ++o) {
      a.m = M + (o - m_row0) * ld + run.b;
      a.bias = P.bias ? P.bias[o] : 0.0f;
      a.y = P.out + ((run.img * P.cout + o) * oh + s * run.th) * ow + s * run.tw;
      (P.pool ? K.output_pool_run : K.output_run)(a);
    }
  });
}

// The 36 matrices U[p] for output channels [o0, o1): packed once (PackedA) when the call has
// several blocks per thread to reuse them, else read as strided views of U[p][c][o] (the GEMM then
// packs each in its cache blocks as it goes: no allocation, and no extra pass over U).
struct PointWeights {
  const PackedA* packs;  // kPoints of them, or nullptr
  const float* u;        // U[p][c][o]
  int64_t o_total, c, o0, o1;
};

// The 36 products M[p] (o1-o0 x n) = U[p] * V[p] (c x n) for n tiles; row stride ld, point strides
// pv, pm. With U packed the GEMM reads V in place and computes the n columns (a last panel of at
// most 8 on its half-width kernel, of 1 or 2 on its one-column kernel); else it packs V, and whole
// 16-column panels (its partial panels are stored slowly) are cheaper: the extra columns are
// scratch.
void point_products(const PointWeights& pw, int64_t n, const float* V, int64_t pv, float* M, int64_t pm, int64_t ld) {
  for (int p = 0; p < kPoints; ++p) {
    if (pw.packs) {
      sgemm_packed_b_in_place(pw.packs[p], n, V + p * pv, ld, M + p * pm, ld);
    } else {
      const MatrixRef u{pw.u + p * pw.o_total * pw.c + pw.o0, 1, pw.o_total};
      sgemm(pw.o1 - pw.o0, std::min(round_up(n, kGemmColumns), ld), pw.c, u, MatrixRef{V + p * pv, ld, 1}, M + p * pm, ld);
    }
  }
}

// A point stride for `rows` rows of ld floats: an odd number of cache lines, so that the 36 points
// of one tile (read or written together by the transforms) fall in different L1 sets; a stride of
// a multiple of 4 KiB would put them all in one or two sets.
int64_t point_stride(int64_t rows, int64_t ld) { return (ceil_div(rows * ld, 16) | 1) * 16; }

// The threads one call uses: 1 inside a parallel region or below kParallelFlops of GEMM work.
int64_t call_threads(const Problem& P) {
  ensure_threads_initialised();
  const int64_t flops = 2 * kPoints * P.cout * P.cin * P.tiles;
  return (omp_in_parallel() || flops < kParallelFlops) ? 1 : get_num_threads();
}

// parallel_for over the call's threads, or the calling thread alone when it has one.
struct Pfor {
  int64_t threads;
  template <typename F>
  void operator()(int64_t begin, int64_t end, int64_t grain, const F& f) const {
    if (threads == 1) {
      if (begin < end) f(begin, end);
    } else {
      parallel_for(begin, end, grain, f);
    }
  }
};

void run_winograd(const Problem& P, const float* w, bool backward, WinogradForwardWeights* cached = nullptr) {
  const int64_t C = P.cin, O = P.cout;
  if (P.tiles == 0 || O == 0) return;
  if (C == 0) {  // an empty sum: bias (then ReLU) only
    const int64_t plane = P.pool ? (P.oh / 2) * (P.ow / 2) : P.oh * P.ow;
    for (int64_t i = 0; i < P.n * O; ++i) {
      const float b = P.bias ? P.bias[i % O] : 0.0f;
      std::fill(P.out + i * plane, P.out + (i + 1) * plane, P.relu ? std::max(b, 0.0f) : b);
    }
    return;
  }
  const int64_t threads = call_threads(P);
  const Pfor pfor{threads};

  // Tiles per block (see kBlockTiles); with too few tiles for every thread to get a block of at
  // least kMinBlockTiles, one block split over channels.
  const bool split_channels = threads > 1 && P.tiles < threads * kMinBlockTiles;
  // Many tiles: the tiles' GEMM panels (kGemmColumns each, the last one maybe partial) split evenly
  // over the threads in contiguous runs (parallel_for's chunks), each run cut into blocks of at
  // most kBlockTiles, evenly. Whole panels per block: only the very last block's
  // last panel computes scratch columns, and no thread has more than one panel more than another.
  const int64_t panels = ceil_div(P.tiles, kGemmColumns);
  const int64_t block_panels = kBlockTiles / kGemmColumns;
  const int64_t block = split_channels ? P.tiles : std::min(P.tiles, kBlockTiles);
  const int64_t ochunks = split_channels ? std::min(threads, ceil_div(O, kLanes)) : 1;
  // Rows of V and M: the block's tiles, rounded up to whole GEMM panels (16 columns: the tail
  // columns are computed on scratch values and never stored), and one more panel (the transforms'
  // last group of 8 lanes in a run may spill over; a multiple of 16 keeps rows cache-line aligned).
  const int64_t ld = round_up(block, kGemmColumns) + kGemmColumns;

  // U[p][c][o] (this thread's workspace, or the cached transform), packed per point when reused.
  Workspace& main_ws = workspace();
  const Kernels& K = kernels();
  float* U = nullptr;
  if (cached) {
    NN_ASSERT(!backward && cached->o == O && cached->c == C, "a cached weight transform of another shape");
    U = cached->u.data();
  } else {
    U = grow(main_ws.u, kPoints * O * C);
    pfor(0, C, std::max<int64_t>(1, 4096 / (O + 1)),
         [&](int64_t c0, int64_t c1) { K.weight_cols(w, O, C, backward, U, c0, c1); });
  }
  auto chunk_begin = [&](int64_t k) { return k == ochunks ? O : std::min(O, round_up(O * k / ochunks, kLanes)); };
  const bool pack = !split_channels && ceil_div(ceil_div(panels, threads), block_panels) >= 2;
  auto pack_points = [&](std::vector<PackedA>& packs) {
    packs.resize(kPoints);
    pfor(0, kPoints, 1, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) packs[static_cast<size_t>(p)] = PackedA(O, C, MatrixRef{U + p * O * C, 1, O});
    });
  };
  std::vector<PackedA> local_packs;
  const PackedA* packs = nullptr;
  if (pack && cached) {
    std::call_once(cached->packed, [&] { pack_points(cached->packs); });
    packs = cached->packs.data();
  } else if (pack) {
    pack_points(local_packs);
    packs = local_packs.data();
  }
  auto weights_of = [&](int64_t o0, int64_t o1) { return PointWeights{packs, U, O, C, o0, o1}; };
  // Cached weights with few tiles: the chunks' point matrices packed once too (per chunk count).
  std::shared_ptr<const std::vector<PackedA>> chunk_packs;
  if (cached && split_channels) {
    std::lock_guard<std::mutex> lock(cached->chunk_mutex);
    auto& slot = cached->chunk_packs[ochunks];
    if (!slot) {
      auto built = std::make_shared<std::vector<PackedA>>(static_cast<size_t>(ochunks * kPoints));
      pfor(0, ochunks * kPoints, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t k = i / kPoints, p = i % kPoints, o0 = chunk_begin(k), o1 = chunk_begin(k + 1);
          if (o0 < o1) (*built)[static_cast<size_t>(i)] = PackedA(o1 - o0, C, MatrixRef{U + p * O * C + o0, 1, O});
        }
      });
      slot = built;
    }
    chunk_packs = slot;
  }

  if (!split_channels) {
    pfor(0, panels, 1, [&](int64_t q0, int64_t q1) {
      Workspace& ws = workspace();
      const int64_t pv = point_stride(C, ld), pm = point_stride(O, ld);
      float* V = grow(ws.v, kPoints * pv);
      float* M = grow(ws.m, kPoints * pm);
      const int64_t blocks = ceil_div(q1 - q0, block_panels);
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t t0 = (q0 + (q1 - q0) * b / blocks) * kGemmColumns;
        const int64_t t1 = std::min(P.tiles, (q0 + (q1 - q0) * (b + 1) / blocks) * kGemmColumns);
        transform_input(P, t0, t1, 0, C, V, ld, pv);
        point_products(weights_of(0, O), t1 - t0, V, pv, M, pm, ld);
        transform_output(P, t0, t1, 0, O, M, 0, ld, pm);
      }
    });
    return;
  }
  // Few tiles: one block, its input transform split over channels into a shared V, then the
  // products and the output transform split over output channels.
  const int64_t pv = point_stride(C, ld);
  float* V = grow(main_ws.v, kPoints * pv);
  pfor(0, C, 1, [&](int64_t c0, int64_t c1) { transform_input(P, 0, P.tiles, c0, c1, V, ld, pv); });
  pfor(0, ochunks, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t o0 = chunk_begin(k), o1 = chunk_begin(k + 1);
      if (o0 >= o1) continue;
      const int64_t pm = point_stride(o1 - o0, ld);
      float* M = grow(workspace().m, kPoints * pm);
      PointWeights pw = weights_of(o0, o1);
      if (chunk_packs) pw.packs = chunk_packs->data() + k * kPoints;
      point_products(pw, P.tiles, V, pv, M, pm, ld);
      transform_output(P, 0, P.tiles, o0, o1, M, o0, ld, pm);
    }
  });
}

// ---- backward weight ----

// Transforms output channels [o0, o1) of the output-gradient tiles [t0, t1) (dy laid out like
// P.out) into dM (rows o - m_row0, row stride ld, point stride pm). Tiles past the run's end in its
// last group of 8 come out zero.
void transform_dy(const Problem& P, const float* dy, int64_t t0, int64_t t1, int64_t o0, int64_t o1, float* dM,
                  int64_t m_row0, int64_t ld, int64_t pm) {
  Workspace& ws = workspace();
  const Kernels& K = kernels();
  for_each_run(P, t0, t1, [&](const Run& run) {
    DyArgs a;
    a.groups = ceil_div(run.len, kLanes);
    a.wb = 32 * a.groups;
    a.hi = std::min(P.ow - 4 * run.tw, 4 * run.len);
    a.t = grow(ws.rows, 6 * a.wb);
    a.pstride = pm;
    const float* zeros = grow(ws.zeros, a.wb);
    const int64_t rows = std::min<int64_t>(4, P.oh - 4 * run.th);
    for (int64_t o = o0; o < o1; ++o) {
      const float* first = dy + ((run.img * P.cout + o) * P.oh + 4 * run.th) * P.ow + 4 * run.tw;
      for (int r = 0; r < 4; ++r) a.d[r] = r < rows ? first + r * P.ow : zeros;
      a.m = dM + (o - m_row0) * ld + run.b;
      K.dy_run(a);
    }
  });
}

// dU[p] (rows o0..o1 of O x C, row stride C) (+)= dM[p] (o1-o0 x n) * V[p]^T (n x C), p < 36.
void point_products_wgrad(int64_t rows, int64_t C, int64_t n, const float* dM, int64_t pm, const float* V, int64_t pv,
                          int64_t ld, float* dU, int64_t du_point, bool accumulate) {
  GemmEpilogue e;
  e.beta = accumulate ? 1.0f : 0.0f;
  for (int p = 0; p < kPoints; ++p)
    sgemm(rows, C, n, MatrixRef{dM + p * pm, ld, 1}, MatrixRef{V + p * pv, 1, ld}, dU + p * du_point, C, e);
}

// dw[o][c] = G^T (sum_k acc[k][.][o][c]) G for output channels [o0, o1): the adjoint of the weight
// transform, with the threads' accumulators (each [36][O][C]) summed on the way.
void weight_grad_rows(const float* const* acc, int64_t nacc, int64_t O, int64_t C, int64_t o0, int64_t o1,
                      float* dw) {
  const int64_t plane = O * C;
  for (int64_t o = o0; o < o1; ++o)
    for (int64_t c0 = 0; c0 < C; c0 += kLanes) {
      const int lanes = static_cast<int>(std::min<int64_t>(kLanes, C - c0));
      const int64_t base = o * C + c0;
      float u[kPoints][kLanes] = {};
      for (int64_t k = 0; k < nacc; ++k)
        for (int p = 0; p < kPoints; ++p)
          for (int l = 0; l < lanes; ++l) u[p][l] += acc[k][p * plane + base + l];
      // Vertical: tmp[u][j] = sum_i G[i][u] dU[i][j] (operands loaded in order first, as in
      // weight_cols_impl).
      float tmp[3][6][kLanes];
      for (int j = 0; j < 6; ++j)
        for (int l = 0; l < kLanes; ++l) {
          const float x0 = u[j][l], x1 = u[6 + j][l], x2 = u[12 + j][l], x3 = u[18 + j][l], x4 = u[24 + j][l],
                      x5 = u[30 + j][l];
          filter_grad_1d_factored(x0, x1, x2, x3, x4, x5, &tmp[0][j][l], 6 * kLanes);
        }
      // Horizontal: g[u][v] = sum_j tmp[u][j] G[j][v].
      float g[9][kLanes];
      for (int r = 0; r < 3; ++r)
        for (int l = 0; l < kLanes; ++l) {
          const float x0 = tmp[r][0][l], x1 = tmp[r][1][l], x2 = tmp[r][2][l], x3 = tmp[r][3][l], x4 = tmp[r][4][l],
                      x5 = tmp[r][5][l];
          filter_grad_1d_factored(x0, x1, x2, x3, x4, x5, &g[3 * r][l], kLanes);
        }
      float* out = dw + base * 9;
      for (int l = 0; l < lanes; ++l)
        for (int k = 0; k < 9; ++k) out[l * 9 + k] = g[k][l];
    }
}

void run_winograd_backward_weight(const Problem& P, const float* dy, float* dw) {
  const int64_t C = P.cin, O = P.cout;
  if (O == 0 || C == 0) return;
  if (P.tiles == 0) {
    std::fill(dw, dw + O * C * 9, 0.0f);
    return;
  }
  const int64_t threads = call_threads(P);
  const Pfor pfor{threads};
  const int64_t du_point = O * C;
  // Tiles per block (the GEMMs' depth): every block reads and writes all of the thread's dU (36*O*C
  // floats), so bigger channel counts want deeper blocks (see BACKWARD WEIGHT at the top).
  const int64_t target = du_point <= 128 * 128   ? kBlockTiles
                         : du_point <= 128 * 256 ? 2 * kBlockTiles
                                                 : kMaxWgradBlockTiles;
  // Few tiles per thread for the accumulator's size: one shared dU, blocks split over channels.
  const bool split_channels =
      threads > 1 && (P.tiles < threads * kMinBlockTiles || (du_point > 128 * 128 && P.tiles < threads * 2 * target));

  if (!split_channels) {
    // The threads take contiguous runs of blocks, each summing into its own dU.
    const int64_t blocks = round_up(ceil_div(P.tiles, target), threads);
    const int64_t block = round_up(ceil_div(P.tiles, blocks), kLanes);
    const int64_t nblocks = ceil_div(P.tiles, block);
    const int64_t ld = round_up(block, kGemmColumns) + kLanes;
    std::vector<float*> acc(static_cast<size_t>(threads), nullptr);
    pfor(0, threads, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t b0 = nblocks * k / threads, b1 = nblocks * (k + 1) / threads;
        if (b0 >= b1) continue;
        Workspace& ws = workspace();
        const int64_t pv = point_stride(C, ld), pm = point_stride(O, ld);
        float* V = grow(ws.v, kPoints * pv);
        float* M = grow(ws.m, kPoints * pm);
        float* dU = grow(ws.du, kPoints * du_point);
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t t0 = b * block, t1 = std::min(P.tiles, t0 + block);
          transform_input(P, t0, t1, 0, C, V, ld, pv);
          transform_dy(P, dy, t0, t1, 0, O, M, 0, ld, pm);
          point_products_wgrad(O, C, t1 - t0, M, pm, V, pv, ld, dU, du_point, b > b0);
        }
        acc[static_cast<size_t>(k)] = dU;
      }
    });
    std::vector<const float*> parts;
    for (float* a : acc)
      if (a) parts.push_back(a);
    pfor(0, O, std::max<int64_t>(1, 2048 / (C + 1)), [&](int64_t o0, int64_t o1) {
      weight_grad_rows(parts.data(), static_cast<int64_t>(parts.size()), O, C, o0, o1, dw);
    });
    return;
  }
  // Few tiles per thread: blocks one after the other, each with its input transform split over
  // channels into a shared V, then the output-gradient transform and the products split over
  // output channels into one shared dU (no per-thread accumulators to sum).
  const int64_t blocks = ceil_div(P.tiles, kMaxWgradBlockTiles);
  const int64_t block = round_up(ceil_div(P.tiles, blocks), kLanes);
  const int64_t nblocks = ceil_div(P.tiles, block);
  const int64_t ld = round_up(block, kGemmColumns) + kLanes;
  const int64_t ochunks = std::min(threads, ceil_div(O, kLanes));
  auto chunk_begin = [&](int64_t k) { return k == ochunks ? O : std::min(O, round_up(O * k / ochunks, kLanes)); };
  Workspace& main_ws = workspace();
  const int64_t pv = point_stride(C, ld);
  float* V = grow(main_ws.v, kPoints * pv);
  float* dU = grow(main_ws.du, kPoints * du_point);
  for (int64_t b = 0; b < nblocks; ++b) {
    const int64_t t0 = b * block, t1 = std::min(P.tiles, t0 + block);
    pfor(0, C, 1, [&](int64_t c0, int64_t c1) { transform_input(P, t0, t1, c0, c1, V, ld, pv); });
    pfor(0, ochunks, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t o0 = chunk_begin(k), o1 = chunk_begin(k + 1);
        if (o0 >= o1) continue;
        const int64_t pm = point_stride(o1 - o0, ld);
        float* M = grow(workspace().m, kPoints * pm);
        transform_dy(P, dy, t0, t1, o0, o1, M, o0, ld, pm);
        point_products_wgrad(o1 - o0, C, t1 - t0, M, pm, V, pv, ld, dU + o0 * C, du_point, b > 0);
      }
    });
  }
  const float* parts[1] = {dU};
  pfor(0, O, std::max<int64_t>(1, 2048 / (C + 1)),
       [&](int64_t o0, int64_t o1) { weight_grad_rows(parts, 1, O, C, o0, o1, dw); });
}

void check_geometry(const Conv2dGeometry& g, const char* what) {
  NN_CHECK(g.kh == 3 && g.kw == 3 && g.stride_h == 1 && g.stride_w == 1, what,
           ": Winograd F(4x4,3x3) needs a 3x3 kernel with stride 1");
  NN_CHECK(g.pad_h >= 0 && g.pad_h <= 2 && g.pad_w >= 0 && g.pad_w <= 2, what, ": padding must be 0..2");
  NN_CHECK(g.oh == g.h + 2 * g.pad_h - 2 && g.ow == g.w + 2 * g.pad_w - 2 && g.oh >= 1 && g.ow >= 1, what,
           ": inconsistent output size");
}

// The forward pass of convolution g (3x3, stride 1) from `in` to `out`.
Problem make_problem(const float* in, float* out, const float* bias, bool relu, const Conv2dGeometry& g,
                     bool pool = false) {
  Problem P{in, out, bias, relu, pool, g.n, g.c, g.o, g.h, g.w, g.oh, g.ow, g.pad_h, g.pad_w, ceil_div(g.oh, 4),
            ceil_div(g.ow, 4), 0};
  P.tiles = g.n * P.tiles_h * P.tiles_w;
  return P;
}

}  // namespace

bool winograd_applicable(const Conv2dGeometry& g, bool weights_transformed) {
  if (g.kh != 3 || g.kw != 3 || g.stride_h != 1 || g.stride_w != 1) return false;
  if (g.pad_h < 0 || g.pad_h > 2 || g.pad_w < 0 || g.pad_w > 2) return false;
  if (g.c < kWinogradMinChannels || g.o < kWinogradMinChannels) return false;
  if (g.oh < 1 || g.ow < 1 || g.oh != g.h + 2 * g.pad_h - 2 || g.ow != g.w + 2 * g.pad_w - 2) return false;
  // Multiplies per output element, direct 9, Winograd 36 * tiles / outputs: the 4x4 tiles must be
  // mostly inside the output; ask for at least 2x fewer (a 3x3 output: 2.25x, 5x5: 1.6x, 2x2: 1x).
  const int64_t tiles = ceil_div(g.oh, 4) * ceil_div(g.ow, 4);
  if (9 * g.oh * g.ow < 2 * 36 * tiles) return false;
  // Transforming the weights costs about as much as 20-40 tiles' products once U (36 * C * O
  // floats) no longer fits in cache: with big weights, few outputs do not amortise it (bench/README.md,
  // "Winograd on the CPU"), unless the transform is cached.
  const bool big_weights = kPoints * g.c * g.o * 4 > (int64_t{4} << 20);
  return weights_transformed || !big_weights || g.n * g.oh * g.ow >= kWinogradMinOutputsBigWeights;
}

bool winograd_backward_weight_applicable(const Conv2dGeometry& g) { return winograd_applicable(g); }

void winograd_use_portable_kernels(bool portable) { force_portable = portable; }

void winograd_conv2d_forward(const float* x, const float* w, const float* bias, bool relu, float* y,
                             const Conv2dGeometry& g, WinogradForwardWeights* transformed, bool max_pool_2x2) {
  check_geometry(g, "winograd_conv2d_forward");
  run_winograd(make_problem(x, y, bias, relu, g, max_pool_2x2), w, false, transformed);
}

std::shared_ptr<WinogradForwardWeights> winograd_forward_weights(const float* w, int64_t O, int64_t C) {
  auto t = std::make_shared<WinogradForwardWeights>();
  t->o = O, t->c = C;
  t->u.resize(static_cast<size_t>(kPoints * O * C));
  ensure_threads_initialised();
  const Pfor pfor{omp_in_parallel() ? 1 : get_num_threads()};
  const Kernels& K = kernels();
  pfor(0, C, std::max<int64_t>(1, 4096 / (O + 1)),
       [&](int64_t c0, int64_t c1) { K.weight_cols(w, O, C, false, t->u.data(), c0, c1); });
  return t;
}

void winograd_conv2d_backward_weight(const float* dy, const float* x, float* dw, const Conv2dGeometry& g) {
  check_geometry(g, "winograd_conv2d_backward_weight");
  run_winograd_backward_weight(make_problem(x, nullptr, nullptr, false, g), dy, dw);
}

void winograd_conv2d_backward_input(const float* dy, const float* w, float* dx, const Conv2dGeometry& g) {
  check_geometry(g, "winograd_conv2d_backward_input");
  run_winograd(make_problem(dy, dx, nullptr, false, g.input_gradient_as_forward()), w, true);
}

}  // namespace nn::cpu
