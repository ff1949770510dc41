// 2-D convolution on CUDA (f32), forward and both backward passes, as implicit GEMM: the im2col
// matrix is never materialised; the kernels gather its elements straight from the activations
// while filling shared memory (zero where a tap falls in the padding). Semantics as conv_cpu.cpp
// (cross-correlation, NCHW activations, OIHW weights). With CKK = C*KH*KW and P = OH*OW:
//
//   forward          Y (O, N*P)    = W (O, CKK)  * col(x) (CKK, N*P)     + bias, ReLU in the epilogue
//   backward input   dX (C, N*H*W) = W' (C, O*KH*KW) * col'(dy) (O*KH*KW, N*H*W)
//   backward weight  dW (O, CKK)   = dy (O, N*P) * col(x)^T (N*P, CKK)    split-K over N*P
//
// Backward input is the same kernel as forward with another gather: W' is W transposed to
// (C, O, KH, KW) in scratch (a small copy), and col'(dy) holds, for input pixel (h, w) and tap
// (o, r, s), dy[o, (h + pad - r) / stride, ...] where the division is exact and in range (zero
// otherwise); for stride 1 that is a plain bounds check, like forward's, with the tap subtracted.
//
// Tiling (both kernels): 256 threads compute a BM x 128 block of the output matrix over K tiles
// of 8; BM is 128, 64 or 32 (the smallest that covers M when M is small, so VGG's 64-channel
// layers and the 3-channel input gradient do not waste most of the block). Thread (tx, ty) of a
// 16 x 16 grid accumulates BM/16 x 8 outputs in registers, reading its operands from shared memory
// as float4 (float2 for BM = 32) fragments: rows {g*16*V + ty*V + v}, columns {g*64 + tx*4 + v}.
// Shared memory is double-buffered with a register prefetch: the next K tile is fetched from
// global memory into registers before the FMAs on the current one, stored to the other buffer
// after them, one __syncthreads per K tile. Rows of the shared tiles are padded by 4 floats so the
// transposing stores do not conflict on banks.
//   Forward / backward input: a thread loads BM/32 consecutive k of one weight row (128-bit when
//   K allows) and 4 k of one output pixel of the gathered operand; consecutive threads take
//   consecutive pixels, so the gather is coalesced along a row of the image. The pixel's
//   (image, y, x) is decomposed once; each k is split into (channel, r, s), with KH = KW = 3 known
//   at compile time in the specialised path (divisions by constants) and at run time otherwise.
//   The epilogue adds the bias, applies ReLU and stores NCHW, as float4 when OH*OW % 4 == 0.
//   Backward weight: K runs over (image, output pixel); each thread owns one k of every tile (8
//   threads cover the tile's 8 consecutive pixels, coalesced in both dy and x) and walks its
//   pixel forward incrementally; its dW columns (c, r, s) are decomposed once. The K range is split
//   over gridDim.z so that the small output (O x CKK) still fills the GPU; each split writes its
//   own partial dW to scratch and a second kernel sums them in a fixed order (deterministic, no
//   atomics). With one split the kernel writes dW directly.
// Offsets: per-image offsets are 32-bit (checked), image and batch offsets 64-bit, so batches of
// more than 2^31 elements are fine.
// The raw launchers send 3x3 stride-1 convolutions that winograd_applicable accepts to the
// Winograd path instead (conv_winograd_cuda.cu), all three passes; the workspace sizes follow.
// The backward passes of layers with very few input channels (VGG's first layer, C = 3), where
// this GEMM's tiles would be mostly empty, go to conv_few_channels_cuda.cu.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "conv_cuda.cuh"
#include "conv_few_channels_cuda.cuh"
#include "conv_winograd_cuda.cuh"
#include "cuda_util.cuh"

namespace nn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kTileN = 128;  // output-matrix columns per block
constexpr int kTileK = 8;    // reduction depth per shared-memory tile
constexpr int kRowPad = 4;   // floats of padding per shared-memory row (bank conflicts)

// The per-thread register tile of a BM x 128 block: kThreadM rows as kGroupsM fragments of kVecM
// consecutive rows, and 8 columns as 2 fragments of 4.
template <int BM>
struct TileShape {
  static_assert(BM == 32 || BM == 64 || BM == 128, "BM is 32, 64 or 128");
  static constexpr int kThreadM = BM / 16;
  static constexpr int kVecM = kThreadM < 4 ? kThreadM : 4;
  static constexpr int kGroupsM = kThreadM / kVecM;
};

template <int BM>
struct SharedTiles {
  float a[2][kTileK][BM + kRowPad];      // A tile, k-major (transposed on the way in)
  float b[2][kTileK][kTileN + kRowPad];  // B tile, k-major
};

template <int V>
__device__ __forceinline__ void load_fragment(const float* src, float* dst) {
  if constexpr (V == 4) {
    const float4 v = *reinterpret_cast<const float4*>(src);
    dst[0] = v.x;
    dst[1] = v.y;
    dst[2] = v.z;
    dst[3] = v.w;
  } else {
    static_assert(V == 2, "fragments are 2 or 4 floats");
    const float2 v = *reinterpret_cast<const float2*>(src);
    dst[0] = v.x;
    dst[1] = v.y;
  }
}

// acc += a_tile^T (BM x 8) * b_tile (8 x 128), this thread's register tile of it.
template <int BM>
__device__ __forceinline__ void multiply_tile(const float (*a)[BM + kRowPad], const float (*b)[kTileN + kRowPad],
                                              float (&acc)[TileShape<BM>::kThreadM][8], int tx, int ty) {
  using S = TileShape<BM>;
#pragma unroll
  for (int k = 0; k < kTileK; ++k) {
    float am[S::kThreadM], bn[8];
#pragma unroll
    for (int g = 0; g < S::kGroupsM; ++g) load_fragment<S::kVecM>(&a[k][g * 16 * S::kVecM + ty * S::kVecM], &am[g * S::kVecM]);
#pragma unroll
    for (int g = 0; g < 2; ++g) load_fragment<4>(&b[k][g * 64 + tx * 4], &bn[g * 4]);
#pragma unroll
    for (int i = 0; i < S::kThreadM; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(am[i], bn[j], acc[i][j]);
  }
}

// Row (of the block tile) of this thread's accumulator row i; column of its accumulator column j.
template <int BM>
__device__ __forceinline__ int tile_row(int i, int ty) {
  using S = TileShape<BM>;
  return (i / S::kVecM) * 16 * S::kVecM + ty * S::kVecM + i % S::kVecM;
}
__device__ __forceinline__ int tile_col(int j, int tx) { return (j / 4) * 64 + tx * 4 + j % 4; }

// ---------------------------------------------------------------------------------------------
// Forward and backward input: out (N, M, out_h, out_w) = A (M, K) * gathered (K, N*out_h*out_w).

enum class Gather {
  forward,                 // tap (c, r, s) of output pixel (y, x): in[c, y*sh - ph + r, x*sw - pw + s]
  transposed_unit_stride,  // backward input, stride 1: in[c, y + ph - r, x + pw - s]
  transposed,              // backward input: in[c, (y + ph - r) / sh, ...] when exact, else 0
};

struct ImplicitGemmParams {
  const float* a;     // (M, K) row-major: weights (forward) or weights transposed to (C, O, KH, KW)
  const float* in;    // the gathered tensor (N, in_c, in_h, in_w): x (forward) or dy (backward input)
  const float* bias;  // (M) or nullptr
  float* out;         // (N, M, out_h, out_w), written
  int m, k;           // M output channels, K = in_c * kh * kw
  int in_c, in_h, in_w, out_h, out_w;
  int kh, kw, stride_h, stride_w, pad_h, pad_w;
  int64_t pixels;     // N * out_h * out_w: the GEMM's N
  bool a_vector;      // rows of A may be read as BM/32-float vectors (K and the base aligned)
  bool out_vector;    // out_h*out_w % 4 == 0 and out 16-byte aligned: float4 stores
  bool relu;
};

// The sizes of one implicit GEMM from the convolution whose input it gathers: g itself for the
// forward (x into y), g.transposed() for backward data (dy into dx, the same window read
// transposed). M = g.o, K = g.c * KH * KW and pixels = N * OH * OW, the GEMM's N.
inline void set_gather_geometry(ImplicitGemmParams& p, const Conv2dGeometry& g) {
  p.m = static_cast<int>(g.o);
  p.k = static_cast<int>(g.c * g.kh * g.kw);
  p.in_c = static_cast<int>(g.c);
  p.in_h = static_cast<int>(g.h);
  p.in_w = static_cast<int>(g.w);
  p.out_h = static_cast<int>(g.oh);
  p.out_w = static_cast<int>(g.ow);
  p.kh = static_cast<int>(g.kh);
  p.kw = static_cast<int>(g.kw);
  p.stride_h = static_cast<int>(g.stride_h);
  p.stride_w = static_cast<int>(g.stride_w);
  p.pad_h = static_cast<int>(g.pad_h);
  p.pad_w = static_cast<int>(g.pad_w);
  p.pixels = g.n * g.oh * g.ow;
}

template <int BM, int KH, int KW, Gather kGather>
__global__ void __launch_bounds__(kThreads, 2) conv_implicit_gemm_kernel(const ImplicitGemmParams p) {
  using S = TileShape<BM>;
  constexpr int kAPerThread = BM * kTileK / kThreads;  // consecutive k of one A row: 1, 2 or 4
  constexpr int kAThreadsPerRow = kTileK / kAPerThread;
  constexpr int kBPerThread = kTileK * kTileN / kThreads;  // 4 consecutive k of one pixel
  __shared__ __align__(16) SharedTiles<BM> smem;

  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;
  const int m0 = blockIdx.y * BM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kTileN;
  const int kh = KH > 0 ? KH : p.kh;
  const int kw = KW > 0 ? KW : p.kw;
  const int taps = kh * kw;

  // A loader: kAPerThread consecutive k of row a_row.
  const int a_row = tid / kAThreadsPerRow;
  const int a_k = (tid % kAThreadsPerRow) * kAPerThread;
  const int a_k_limit = m0 + a_row < p.m ? p.k : 0;  // rows past M read zeros
  const float* a_src = p.a + static_cast<int64_t>(m0 + a_row < p.m ? m0 + a_row : 0) * p.k;

  // B loader: k in [b_k, b_k + 4) of output pixel b_col.
  const int b_col = tid % kTileN;
  const int b_k = (tid / kTileN) * kBPerThread;
  const int64_t pixel = n0 + b_col;
  const int out_hw = p.out_h * p.out_w;
  const int b_k_limit = pixel < p.pixels ? p.k : 0;  // pixels past the end read zeros
  const int64_t pixel_clamped = pixel < p.pixels ? pixel : 0;
  const int64_t image = pixel_clamped / out_hw;
  const int pixel_in_image = static_cast<int>(pixel_clamped - image * out_hw);
  const int oy = pixel_in_image / p.out_w, ox = pixel_in_image - (pixel_in_image / p.out_w) * p.out_w;
  const float* in_image = p.in + image * (static_cast<int64_t>(p.in_c) * p.in_h * p.in_w);
  const int base_y = kGather == Gather::forward ? oy * p.stride_h - p.pad_h : oy + p.pad_h;
  const int base_x = kGather == Gather::forward ? ox * p.stride_w - p.pad_w : ox + p.pad_w;

  auto gather = [&](int k) -> float {
    if (k >= b_k_limit) return 0.0f;
    const int c = k / taps;
    const int rs = k - c * taps;
    const int r = rs / kw;
    const int s = rs - r * kw;
    int iy, ix;
    if constexpr (kGather == Gather::forward) {
      iy = base_y + r;
      ix = base_x + s;
    } else if constexpr (kGather == Gather::transposed_unit_stride) {
      iy = base_y - r;
      ix = base_x - s;
    } else {
      const int ty_ = base_y - r, tx_ = base_x - s;  // checked non-negative before dividing
      if (ty_ < 0 || tx_ < 0 || ty_ % p.stride_h != 0 || tx_ % p.stride_w != 0) return 0.0f;
      iy = ty_ / p.stride_h;
      ix = tx_ / p.stride_w;
    }
    if (static_cast<unsigned>(iy) >= static_cast<unsigned>(p.in_h) ||
        static_cast<unsigned>(ix) >= static_cast<unsigned>(p.in_w))
      return 0.0f;
    return __ldg(in_image + (c * p.in_h + iy) * p.in_w + ix);
  };

  float a_next[kAPerThread], b_next[kBPerThread];
  auto fetch_tile = [&](int k0) {
    const int ka = k0 + a_k;
    if (p.a_vector && kAPerThread > 1) {
      // K % kAPerThread == 0 and ka too: the whole vector is in range when its first k is.
      if (ka < a_k_limit) {
        if constexpr (kAPerThread == 4) {
          load_fragment<4>(a_src + ka, a_next);
        } else if constexpr (kAPerThread == 2) {
          load_fragment<2>(a_src + ka, a_next);
        }
      } else {
#pragma unroll
        for (int i = 0; i < kAPerThread; ++i) a_next[i] = 0.0f;
      }
    } else {
#pragma unroll
      for (int i = 0; i < kAPerThread; ++i) a_next[i] = ka + i < a_k_limit ? __ldg(a_src + ka + i) : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < kBPerThread; ++i) b_next[i] = gather(k0 + b_k + i);
  };
  auto store_tile = [&](int buf) {
#pragma unroll
    for (int i = 0; i < kAPerThread; ++i) smem.a[buf][a_k + i][a_row] = a_next[i];
#pragma unroll
    for (int i = 0; i < kBPerThread; ++i) smem.b[buf][b_k + i][b_col] = b_next[i];
  };

  float acc[S::kThreadM][8];
#pragma unroll
  for (int i = 0; i < S::kThreadM; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  const int k_tiles = (p.k + kTileK - 1) / kTileK;
  fetch_tile(0);
  store_tile(0);
  __syncthreads();
  for (int t = 0; t < k_tiles; ++t) {
    const int buf = t & 1;
    if (t + 1 < k_tiles) fetch_tile((t + 1) * kTileK);
    multiply_tile<BM>(smem.a[buf], smem.b[buf], acc, tx, ty);
    // The other buffer was last read in iteration t-1, which every thread finished before the
    // __syncthreads that ended it.
    if (t + 1 < k_tiles) store_tile(buf ^ 1);
    __syncthreads();
  }

  // Epilogue: + bias, ReLU, store NCHW.
#pragma unroll
  for (int i = 0; i < S::kThreadM; ++i) {
    const int m = m0 + tile_row<BM>(i, ty);
    if (m >= p.m) continue;
    const float bias = p.bias != nullptr ? __ldg(p.bias + m) : 0.0f;
#pragma unroll
    for (int g = 0; g < 2; ++g) {
      float v[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        v[j] = acc[i][g * 4 + j] + bias;
        if (p.relu) v[j] = fmaxf(v[j], 0.0f);
      }
      const int64_t n = n0 + tile_col(g * 4, tx);
      if (p.out_vector) {
        // out_hw % 4 == 0 and n % 4 == 0: the 4 pixels are in one image, all valid or none.
        if (n < p.pixels) {
          const int64_t img = n / out_hw;
          const int64_t offset = (img * p.m + m) * out_hw + (n - img * out_hw);
          *reinterpret_cast<float4*>(p.out + offset) = make_float4(v[0], v[1], v[2], v[3]);
        }
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if (n + j < p.pixels) {
            const int64_t img = (n + j) / out_hw;
            p.out[(img * p.m + m) * out_hw + (n + j - img * out_hw)] = v[j];
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward weight: out[z] (O, CKK) = sum over k in split z of dy (O, k) * col(x) (k, CKK), where
// k runs over (image, output pixel).

struct WeightGradParams {
  const float* dy;  // (N, O, OH, OW)
  const float* x;   // (N, C, H, W)
  float* out;       // (splits, O, CKK): partials, or dW itself with one split
  int o, ckk, c, h, w, oh, ow, kh, kw, stride_h, stride_w, pad_h, pad_w;
  int64_t k_total;      // N * OH * OW
  int64_t k_per_split;  // a multiple of kTileK
  bool out_vector;      // CKK % 4 == 0 and out 16-byte aligned: float4 stores
};

template <int BM>
__global__ void __launch_bounds__(kThreads, 2) conv_weight_grad_kernel(const WeightGradParams p) {
  using S = TileShape<BM>;
  constexpr int kARows = BM / 32;  // dy rows (output channels) per thread
  constexpr int kBCols = kTileN / 32;  // dW columns (c, r, s) per thread
  __shared__ __align__(16) SharedTiles<BM> smem;

  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;
  const int m0 = blockIdx.y * BM;
  const int n0 = blockIdx.x * kTileN;
  const int64_t k_begin = static_cast<int64_t>(blockIdx.z) * p.k_per_split;
  const int64_t k_end = k_begin + p.k_per_split < p.k_total ? k_begin + p.k_per_split : p.k_total;
  const int p_out = p.oh * p.ow;
  const int taps = p.kh * p.kw;

  // This thread loads the tile's k = lane_k for rows / columns `slot + 32 * i`.
  const int lane_k = tid % kTileK;
  const int slot = tid / kTileK;  // 0..31
  int a_offset[kARows];           // o * OH*OW, or -1 past O
#pragma unroll
  for (int i = 0; i < kARows; ++i) {
    const int o = m0 + slot + 32 * i;
    a_offset[i] = o < p.o ? o * p_out : -1;
  }
  int b_channel_offset[kBCols], b_r[kBCols], b_s[kBCols];  // b_channel_offset -1 past CKK
#pragma unroll
  for (int j = 0; j < kBCols; ++j) {
    const int col = n0 + slot + 32 * j;
    const int c = col / taps;
    const int rs = col - c * taps;
    b_r[j] = rs / p.kw;
    b_s[j] = rs - b_r[j] * p.kw;
    b_channel_offset[j] = col < p.ckk ? c * p.h * p.w : -1;
  }

  // The thread's current k and its (image, oy, ox); advanced by kTileK per tile.
  int64_t k = k_begin + lane_k;
  int64_t image = k / p_out;
  int pixel = static_cast<int>(k - image * p_out);
  int oy = pixel / p.ow, ox = pixel - (pixel / p.ow) * p.ow;
  const int64_t dy_image_size = static_cast<int64_t>(p.o) * p_out;
  const int64_t x_image_size = static_cast<int64_t>(p.c) * p.h * p.w;

  float a_next[kARows], b_next[kBCols];
  auto fetch_tile = [&]() {
    const bool k_valid = k < k_end;
    const float* dy_image = p.dy + (k_valid ? image : 0) * dy_image_size;
    const float* x_image = p.x + (k_valid ? image : 0) * x_image_size;
    const int dy_pixel = oy * p.ow + ox;
#pragma unroll
    for (int i = 0; i < kARows; ++i)
      a_next[i] = k_valid && a_offset[i] >= 0 ? __ldg(dy_image + a_offset[i] + dy_pixel) : 0.0f;
    const int iy0 = oy * p.stride_h - p.pad_h, ix0 = ox * p.stride_w - p.pad_w;
#pragma unroll
    for (int j = 0; j < kBCols; ++j) {
      const int iy = iy0 + b_r[j], ix = ix0 + b_s[j];
      const bool inside = static_cast<unsigned>(iy) < static_cast<unsigned>(p.h) &&
                          static_cast<unsigned>(ix) < static_cast<unsigned>(p.w);
      b_next[j] = k_valid && b_channel_offset[j] >= 0 && inside
                      ? __ldg(x_image + b_channel_offset[j] + iy * p.w + ix)
                      : 0.0f;
    }
    // Advance to the next tile's k.
    k += kTileK;
    ox += kTileK;
    while (ox >= p.ow) {
      ox -= p.ow;
      if (++oy == p.oh) {
        oy = 0;
        ++image;
      }
    }
  };
  auto store_tile = [&](int buf) {
#pragma unroll
    for (int i = 0; i < kARows; ++i) smem.a[buf][lane_k][slot + 32 * i] = a_next[i];
#pragma unroll
    for (int j = 0; j < kBCols; ++j) smem.b[buf][lane_k][slot + 32 * j] = b_next[j];
  };

  float acc[S::kThreadM][8];
#pragma unroll
  for (int i = 0; i < S::kThreadM; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  const int64_t k_span = k_end > k_begin ? k_end - k_begin : 0;
  const int k_tiles = static_cast<int>((k_span + kTileK - 1) / kTileK);
  fetch_tile();
  store_tile(0);
  __syncthreads();
  for (int t = 0; t < k_tiles; ++t) {
    const int buf = t & 1;
    if (t + 1 < k_tiles) fetch_tile();
    multiply_tile<BM>(smem.a[buf], smem.b[buf], acc, tx, ty);
    if (t + 1 < k_tiles) store_tile(buf ^ 1);
    __syncthreads();
  }

  float* out = p.out + static_cast<int64_t>(blockIdx.z) * p.o * p.ckk;
#pragma unroll
  for (int i = 0; i < S::kThreadM; ++i) {
    const int m = m0 + tile_row<BM>(i, ty);
    if (m >= p.o) continue;
#pragma unroll
    for (int g = 0; g < 2; ++g) {
      const int col = n0 + tile_col(g * 4, tx);
      float* dst = out + static_cast<int64_t>(m) * p.ckk + col;
      if (p.out_vector) {
        // CKK % 4 == 0 and col % 4 == 0: the 4 columns are all valid or none.
        if (col < p.ckk)
          *reinterpret_cast<float4*>(dst) = make_float4(acc[i][g * 4], acc[i][g * 4 + 1], acc[i][g * 4 + 2], acc[i][g * 4 + 3]);
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (col + j < p.ckk) dst[j] = acc[i][g * 4 + j];
      }
    }
  }
}

// out[i] = sum over z (in order) of partials[z * count + i].
__global__ void sum_partials_kernel(const float* __restrict__ partials, float* __restrict__ out, int64_t count,
                                    int splits) {
  for (int64_t i = thread_index(); i < count; i += thread_count()) {
    float sum = 0.0f;
    for (int z = 0; z < splits; ++z) sum += partials[z * count + i];
    out[i] = sum;
  }
}

// wt (C, O, KH*KW) = w (O, C, KH*KW) with the first two axes swapped.
__global__ void transpose_weights_kernel(const float* __restrict__ w, float* __restrict__ wt, int o, int c, int taps) {
  const int64_t count = static_cast<int64_t>(o) * c * taps;
  for (int64_t i = thread_index(); i < count; i += thread_count()) {
    const int64_t ci = i / (static_cast<int64_t>(o) * taps);
    const int64_t rest = i - ci * o * taps;
    const int64_t oi = rest / taps;
    const int64_t tap = rest - oi * taps;
    wt[i] = w[(oi * c + ci) * taps + tap];
  }
}

// ---------------------------------------------------------------------------------------------
// Host side.

constexpr int64_t kIntMax = std::numeric_limits<int>::max();

int pick_block_m(int64_t m) { return m <= 32 ? 32 : m <= 64 ? 64 : 128; }

void check_sizes(const Conv2dGeometry& g) {
  NN_CHECK(g.c * g.h * g.w <= kIntMax && g.o * g.oh * g.ow <= kIntMax && g.o * g.c * g.kh * g.kw <= kIntMax,
           "conv2d on CUDA: one image or the weights have more than 2^31 elements");
  NN_CHECK(g.stride_h > 0 && g.stride_w > 0 && g.pad_h >= 0 && g.pad_w >= 0 && g.pad_h < (1 << 20) &&
               g.pad_w < (1 << 20),
           "conv2d on CUDA: bad stride or padding");
}

template <int BM, int KH, int KW, Gather kGather>
void launch_implicit_gemm(const ImplicitGemmParams& p, cudaStream_t stream) {
  const int64_t blocks_n = ceil_div(p.pixels, kTileN);
  const int64_t blocks_m = ceil_div(p.m, BM);
  NN_CHECK(blocks_n <= kIntMax && blocks_m <= 65535, "conv2d on CUDA: problem too large for one launch (",
           blocks_n, " x ", blocks_m, " blocks)");
  const dim3 grid(static_cast<unsigned>(blocks_n), static_cast<unsigned>(blocks_m));
  conv_implicit_gemm_kernel<BM, KH, KW, kGather><<<grid, kThreads, 0, stream>>>(p);
  NN_CUDA_CHECK_LAUNCH();
}

// Picks the block height for M and the 3x3 specialisation (the strided transposed gather only
// comes in the general form: no VGG layer uses it).
template <Gather kGather>
void dispatch_implicit_gemm(ImplicitGemmParams p, cudaStream_t stream) {
  const int bm = pick_block_m(p.m);
  const int a_vector_width = bm / 32;
  p.a_vector = p.k % a_vector_width == 0 && aligned(p.a, 4 * a_vector_width);
  p.out_vector = (p.out_h * p.out_w) % 4 == 0 && aligned16(p.out);
  if constexpr (kGather != Gather::transposed) {
    if (p.kh == 3 && p.kw == 3) {
      if (bm == 32) launch_implicit_gemm<32, 3, 3, kGather>(p, stream);
      else if (bm == 64) launch_implicit_gemm<64, 3, 3, kGather>(p, stream);
      else launch_implicit_gemm<128, 3, 3, kGather>(p, stream);
      return;
    }
  }
  if (bm == 32) launch_implicit_gemm<32, 0, 0, kGather>(p, stream);
  else if (bm == 64) launch_implicit_gemm<64, 0, 0, kGather>(p, stream);
  else launch_implicit_gemm<128, 0, 0, kGather>(p, stream);
}

// How backward weight splits its reduction: enough blocks for about 4 per SM (2 resident at a
// time, so a tail of partly idle SMs is short), each split at least kMinSplitK long, and the
// partials at most kMaxPartialBytes.
struct WeightGradPlan {
  int bm;
  int64_t blocks_m, blocks_n;
  int64_t splits;
  int64_t k_per_split;
};

constexpr int64_t kMinSplitK = 256;
constexpr int64_t kMaxPartialBytes = int64_t{256} << 20;

WeightGradPlan plan_weight_grad(const Conv2dGeometry& g) {
  WeightGradPlan plan{};
  plan.bm = pick_block_m(g.o);
  const int64_t ckk = g.c * g.kh * g.kw;
  plan.blocks_m = ceil_div(g.o, plan.bm);
  plan.blocks_n = ceil_div(ckk, kTileN);
  const int64_t k_total = g.n * g.oh * g.ow;
  const int64_t tiles = plan.blocks_m * plan.blocks_n;
  const int64_t target_blocks = 4 * static_cast<int64_t>(multiprocessor_count());
  int64_t splits = ceil_div(target_blocks, tiles);
  splits = std::min(splits, ceil_div(k_total, kMinSplitK));
  splits = std::min(splits, std::max<int64_t>(1, kMaxPartialBytes / (g.o * ckk * 4)));
  splits = std::clamp<int64_t>(splits, 1, 65535);
  // Whole K tiles per split, then drop the splits that would be empty.
  plan.k_per_split = round_up(ceil_div(k_total, splits), kTileK);
  plan.splits = ceil_div(k_total, plan.k_per_split);
  return plan;
}

template <int BM>
void launch_weight_grad(const WeightGradParams& p, const WeightGradPlan& plan, cudaStream_t stream) {
  NN_CHECK(plan.blocks_n <= kIntMax && plan.blocks_m <= 65535 && plan.splits <= 65535,
           "conv2d backward weight on CUDA: problem too large for one launch");
  const dim3 grid(static_cast<unsigned>(plan.blocks_n), static_cast<unsigned>(plan.blocks_m),
                  static_cast<unsigned>(plan.splits));
  conv_weight_grad_kernel<BM><<<grid, kThreads, 0, stream>>>(p);
  NN_CUDA_CHECK_LAUNCH();
}

}  // namespace

// ---- raw launchers (conv_cuda.cuh) ----

size_t conv2d_forward_workspace_bytes(const Conv2dGeometry& g) {
  return winograd_applicable(g) ? winograd_forward_workspace_bytes(g) : 0;
}

void conv2d_forward_f32(const float* x, const float* w, const float* bias, float* y, const Conv2dGeometry& g,
                        bool relu, void* workspace, cudaStream_t stream) {
  check_sizes(g);
  if (g.n * g.oh * g.ow == 0 || g.o == 0) return;
  if (winograd_applicable(g)) {
    winograd_forward_f32(x, w, bias, y, g, relu, workspace, stream);
    return;
  }
  ImplicitGemmParams p{};
  p.a = w;
  p.in = x;
  p.bias = bias;
  p.out = y;
  set_gather_geometry(p, g);
  p.relu = relu;
  dispatch_implicit_gemm<Gather::forward>(p, stream);
}

size_t conv2d_backward_input_workspace_bytes(const Conv2dGeometry& g) {
  if (winograd_applicable(g)) return winograd_backward_input_workspace_bytes(g);
  return static_cast<size_t>(g.o * g.c * g.kh * g.kw) * sizeof(float);
}

void conv2d_backward_input_f32(const float* dy, const float* w, float* dx, const Conv2dGeometry& g, void* workspace,
                               cudaStream_t stream) {
  check_sizes(g);
  if (g.n * g.h * g.w == 0 || g.c == 0) return;
  if (winograd_applicable(g)) {
    winograd_backward_input_f32(dy, w, dx, g, workspace, stream);
    return;
  }
  if (few_channels_backward_input_applicable(g)) {
    conv2d_backward_input_few_channels_f32(dy, w, dx, g, stream);
    return;
  }
  NN_CHECK(workspace != nullptr, "conv2d backward input on CUDA: needs ", conv2d_backward_input_workspace_bytes(g),
           " bytes of workspace");
  const int taps = static_cast<int>(g.kh * g.kw);
  float* wt = static_cast<float*>(workspace);
  const int64_t weight_count = g.o * g.c * taps;
  transpose_weights_kernel<<<blocks_for(weight_count), 256, 0, stream>>>(w, wt, static_cast<int>(g.o),
                                                                         static_cast<int>(g.c), taps);
  NN_CUDA_CHECK_LAUNCH();

  ImplicitGemmParams p{};
  p.a = wt;
  p.in = dy;
  p.bias = nullptr;
  p.out = dx;
  set_gather_geometry(p, g.transposed());
  p.relu = false;
  if (g.stride_h == 1 && g.stride_w == 1) dispatch_implicit_gemm<Gather::transposed_unit_stride>(p, stream);
  else dispatch_implicit_gemm<Gather::transposed>(p, stream);
}

size_t conv2d_backward_weight_workspace_bytes(const Conv2dGeometry& g) {
  if (winograd_applicable(g)) return winograd_backward_weight_workspace_bytes(g);
  if (few_channels_backward_weight_applicable(g)) return conv2d_backward_weight_few_channels_workspace_bytes(g);
  const WeightGradPlan plan = plan_weight_grad(g);
  if (plan.splits <= 1) return 0;
  return static_cast<size_t>(plan.splits * g.o * g.c * g.kh * g.kw) * sizeof(float);
}

void conv2d_backward_weight_f32(const float* dy, const float* x, float* dw, const Conv2dGeometry& g, void* workspace,
                                cudaStream_t stream) {
  check_sizes(g);
  const int64_t ckk = g.c * g.kh * g.kw;
  const int64_t dw_count = g.o * ckk;
  if (dw_count == 0) return;
  if (g.n * g.oh * g.ow == 0) {
    NN_CUDA_CHECK(cudaMemsetAsync(dw, 0, static_cast<size_t>(dw_count) * sizeof(float), stream));
    return;
  }
  if (winograd_applicable(g)) {
    winograd_backward_weight_f32(dy, x, dw, g, workspace, stream);
    return;
  }
  if (few_channels_backward_weight_applicable(g)) {
    conv2d_backward_weight_few_channels_f32(dy, x, dw, g, workspace, stream);
    return;
  }
  const WeightGradPlan plan = plan_weight_grad(g);
  float* target = dw;
  if (plan.splits > 1) {
    NN_CHECK(workspace != nullptr, "conv2d backward weight on CUDA: needs ",
             conv2d_backward_weight_workspace_bytes(g), " bytes of workspace");
    target = static_cast<float*>(workspace);
  }
  WeightGradParams p{};
  p.dy = dy;
  p.x = x;
  p.out = target;
  p.o = static_cast<int>(g.o);
  p.ckk = static_cast<int>(ckk);
  p.c = static_cast<int>(g.c);
  p.h = static_cast<int>(g.h);
  p.w = static_cast<int>(g.w);
  p.oh = static_cast<int>(g.oh);
  p.ow = static_cast<int>(g.ow);
  p.kh = static_cast<int>(g.kh);
  p.kw = static_cast<int>(g.kw);
  p.stride_h = static_cast<int>(g.stride_h);
  p.stride_w = static_cast<int>(g.stride_w);
  p.pad_h = static_cast<int>(g.pad_h);
  p.pad_w = static_cast<int>(g.pad_w);
  p.k_total = g.n * g.oh * g.ow;
  p.k_per_split = plan.k_per_split;
  p.out_vector = ckk % 4 == 0 && aligned16(target);
  if (plan.bm == 32) launch_weight_grad<32>(p, plan, stream);
  else if (plan.bm == 64) launch_weight_grad<64>(p, plan, stream);
  else launch_weight_grad<128>(p, plan, stream);
  if (plan.splits > 1) {
    sum_partials_kernel<<<blocks_for(dw_count), 256, 0, stream>>>(target, dw, dw_count, static_cast<int>(plan.splits));
    NN_CUDA_CHECK_LAUNCH();
  }
}

// ---- kernel table entries ----

namespace {

const float* f32(const Tensor& t) { return static_cast<const float*>(t.raw_data()); }
float* f32_mut(Tensor& t) { return static_cast<float*>(t.raw_data()); }

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y, const Conv2dGeometry& g,
                    bool relu) {
  require_f32(x, "conv2d_forward");
  require_f32(w, "conv2d_forward");
  if (bias.defined()) require_f32(bias, "conv2d_forward");
  cudaStream_t s = stream_for(y);
  const ScratchBuffer workspace(conv2d_forward_workspace_bytes(g), y.device());
  conv2d_forward_f32(f32(x), f32(w), bias.defined() ? f32(bias) : nullptr, f32_mut(y), g, relu, workspace.get(), s);
}

// The convolution's 2x2 max pool (ops.def): on CUDA the convolution into a temporary, then the max
// pool's kernel (the CPU pools inside its Winograd and few-channel kernels; nothing here does yet).
void conv2d_max_pool_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y,
                             const Conv2dGeometry& g, bool relu) {
  Tensor full = empty({g.n, g.o, g.oh, g.ow}, DType::f32, y.device());
  conv2d_forward(x, w, bias, full, g, relu);
  Tensor no_argmax;
  kernel_table(DeviceType::cuda)
      .max_pool2d_forward(full, y, no_argmax, Pool2dGeometry::from(full.shape(), {2, 2}, {2, 2}, {0, 0}, false, true));
}

void conv2d_backward_input(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dGeometry& g) {
  require_f32(dy, "conv2d_backward_input");
  require_f32(w, "conv2d_backward_input");
  cudaStream_t s = stream_for(dx);
  const ScratchBuffer workspace(conv2d_backward_input_workspace_bytes(g), dx.device());
  conv2d_backward_input_f32(f32(dy), f32(w), f32_mut(dx), g, workspace.get(), s);
}

void conv2d_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dw, const Conv2dGeometry& g) {
  require_f32(dy, "conv2d_backward_weight");
  require_f32(x, "conv2d_backward_weight");
  cudaStream_t s = stream_for(dw);
  const ScratchBuffer workspace(conv2d_backward_weight_workspace_bytes(g), dw.device());
  conv2d_backward_weight_f32(f32(dy), f32(x), f32_mut(dw), g, workspace.get(), s);
}

}  // namespace

void register_conv_cuda(KernelTable& t) {
  t.conv2d_forward = conv2d_forward;
  t.conv2d_max_pool_forward = conv2d_max_pool_forward;
  t.conv2d_backward_input = conv2d_backward_input;
  t.conv2d_backward_weight = conv2d_backward_weight;
}

}  // namespace nn::cuda
