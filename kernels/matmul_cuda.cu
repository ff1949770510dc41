// FP32 GEMM on CUDA (SIMT, no tensor cores, no TF32): C = alpha * op(A) op(B) + beta * C, batched,
// row-major, all four transpose cases; the `gemm` entry of the kernel table and the raw launcher
// nn::cuda::sgemm (gemm_cuda.cuh).
//
// Design (the classic block / warp / thread tiling of SIMT SGEMMs):
// - A block computes a BM x BN tile of C, walking K in steps of BK = 8. Each step's A tile (BM x 8)
//   and B tile (8 x BN) go to shared memory k-major, a_tile[k][m] and b_tile[k][n], so that a
//   thread reads 4 consecutive m (or n) of one k with one 128-bit load. Operands stored with k
//   contiguous (A not transposed, B transposed) are transposed on the way into shared memory; rows
//   are padded by 4 floats, which keeps those scalar stores free of bank conflicts and the rows
//   16-byte aligned.
// - Double buffering: two shared buffers; while the block computes on one, each thread already has
//   the next k-step's global loads in flight into registers and stores them into the other buffer
//   afterwards. One __syncthreads per k-step.
// - Warps tile the block tile (WARPS_M x WARPS_N); the 32 lanes of a warp are 4 (m) x 8 (n); each
//   thread owns TM x TN accumulators made of 4x4 fragments spaced 16 rows / 32 columns apart, so
//   the 8 lanes of a shared-memory phase read 8 different, consecutive float4 of b_tile (no bank
//   conflicts) and lanes with the same m read the same float4 of a_tile (broadcast).
// - Two configurations: 128x128 tiles, 256 threads (8 warps of 32x64), 8x8 per thread, for large
//   problems; 64x64 tiles, 128 threads (4 warps of 32x32), 8x4 per thread, when 128x128 tiles
//   would leave SMs idle or pad M or N a lot (e.g. M = 64 in the VGG classifier).
// - Split-K when even the small tiles do not give every SM work (M = 64 and huge K in the VGG16
//   classifier at batch 64): K is cut into `splits` ranges, each block writes its raw partial tile
//   into a scratch buffer, and a second kernel sums the partials in a fixed order and applies
//   alpha/beta (deterministic; no atomics).
// - Any M, N, K: loads outside the matrix read zeros and stores outside are skipped. 128-bit global
//   loads/stores only where the operand's base pointer is 16-byte aligned and its row and batch
//   strides are multiples of 4 (and the 4 elements are inside the matrix); otherwise 4 scalar
//   accesses. Element offsets are int64; M, N, K each fit in int.
// - Batch (times splits) runs on gridDim.z, in chunks of at most 65535; the tiles of one matrix are
//   numbered along gridDim.x (no 65535 limit).
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "cuda_util.cuh"
#include "gemm_cuda.cuh"

namespace nn::cuda {
namespace {

constexpr int kTileK = 8;          // K step of both configurations
constexpr int kSharedPad = 4;      // floats of padding per shared row (keeps 16-byte alignment)
constexpr int kLanesM = 4;         // a warp's lanes: 4 along m ...
constexpr int kLanesN = 8;         // ... times 8 along n
constexpr int kMinKPerSplit = 256; // split-K never cuts K finer than this
constexpr int kMaxSplits = 32;
constexpr int64_t kMaxGridZ = 65535;

template <int BM_, int BN_, int WARPS_M_, int WARPS_N_, int MIN_BLOCKS_>
struct TileConfig {
  static constexpr int BM = BM_, BN = BN_, BK = kTileK;
  static constexpr int kWarpsM = WARPS_M_, kWarpsN = WARPS_N_;
  static constexpr int kThreads = WARPS_M_ * WARPS_N_ * 32;
  static constexpr int kMinBlocks = MIN_BLOCKS_;  // __launch_bounds__: caps registers per thread
  static constexpr int WM = BM / WARPS_M_, WN = BN / WARPS_N_;  // warp tile
  static constexpr int TM = WM / kLanesM, TN = WN / kLanesN;    // thread tile
  static_assert(WM * kWarpsM == BM && WN * kWarpsN == BN, "warps must cover the block tile");
  static_assert(WM % kLanesM == 0 && WN % kLanesN == 0, "warp tile must split over 4x8 lanes");
  static_assert(TM % 4 == 0 && TN % 4 == 0, "thread tile is made of 4x4 fragments");
  static_assert((BM * BK) % (4 * kThreads) == 0 && (BN * BK) % (4 * kThreads) == 0,
                "each thread loads whole float4s of the A and B tiles");
};

// 128x128x8, 256 threads, 8x8 per thread: 2 blocks per SM (<= 128 registers per thread).
using LargeTiles = TileConfig<128, 128, 4, 2, 2>;
// 64x64x8, 128 threads, 8x4 per thread.
using SmallTiles = TileConfig<64, 64, 2, 2, 4>;

struct GemmParams {
  int m, n, k;
  const float* a;
  int64_t lda, stride_a;
  const float* b;
  int64_t ldb, stride_b;
  float* c;
  int64_t ldc, stride_c;
  float alpha, beta;
  int splits;              // blockIdx.z = batch * splits + split
  int k_per_split;         // multiple of kTileK; == k rounded up when splits == 1
  int64_t split_stride_c;  // elements between the C tiles of consecutive splits
  bool a_vec, b_vec, c_vec;  // 128-bit accesses allowed (alignment and strides checked on the host)
};

// 4 consecutive elements p[0..3] of one row (or column) of an operand whose row is `line_ok`;
// element i exists when first + i < end. Missing elements read as 0.
__device__ __forceinline__ float4 load4(const float* p, bool line_ok, int first, int end, bool vec) {
  float4 r = make_float4(0.f, 0.f, 0.f, 0.f);
  if (!line_ok) return r;
  const int avail = end - first;  // elements of the 4 inside the matrix
  if (vec && avail >= 4) return *reinterpret_cast<const float4*>(p);
  if (avail > 0) r.x = p[0];
  if (avail > 1) r.y = p[1];
  if (avail > 2) r.z = p[2];
  if (avail > 3) r.w = p[3];
  return r;
}

// One thread's part in moving a BK x TILE operand tile from global to shared memory: exactly one
// float4 per thread per k-step. The operand X(mn, k) is stored with k contiguous (K_CONTIG:
// X(mn, k) at x[mn * ld + k]) or with mn contiguous (x[k * ld + mn]); the shared tile is k-major,
// xs[k][mn]. Elements with mn >= mn_end or k >= k_end read as 0 (and are never dereferenced).
template <int TILE, int BK, int THREADS, bool K_CONTIG>
struct TileLoader {
  static_assert(TILE * BK == 4 * THREADS, "one float4 of the tile per thread");
  static constexpr int kVecsPerLine = K_CONTIG ? BK / 4 : TILE / 4;  // float4s along the contiguous dim
  const float* src;  // this thread's float4 in the current k-step
  int mn, k;         // its first element's coordinates

  __device__ __forceinline__ TileLoader(const float* x, int64_t ld, int mn0, int k_begin, int tid) {
    const int line = tid / kVecsPerLine, offset = (tid % kVecsPerLine) * 4;
    mn = mn0 + (K_CONTIG ? line : offset);
    k = k_begin + (K_CONTIG ? offset : line);
    src = K_CONTIG ? x + static_cast<int64_t>(mn) * ld + k : x + static_cast<int64_t>(k) * ld + mn;
  }
  __device__ __forceinline__ float4 load(int mn_end, int k_end, bool vec) const {
    return K_CONTIG ? load4(src, mn < mn_end, k, k_end, vec) : load4(src, k < k_end, mn, mn_end, vec);
  }
  __device__ __forceinline__ void advance(int64_t ld) {
    src += K_CONTIG ? static_cast<int64_t>(BK) : BK * ld;
    k += BK;
  }
  // Stores a loaded float4 into the shared tile xs (rows of TILE + pad floats).
  __device__ __forceinline__ static void store(const float4 v, float (*xs)[TILE + kSharedPad], int tid) {
    const int line = tid / kVecsPerLine, offset = (tid % kVecsPerLine) * 4;
    if (K_CONTIG) {  // 4 consecutive k of one mn: transpose into 4 rows
      xs[offset + 0][line] = v.x;
      xs[offset + 1][line] = v.y;
      xs[offset + 2][line] = v.z;
      xs[offset + 3][line] = v.w;
    } else {  // 4 consecutive mn of one k: one 128-bit store
      *reinterpret_cast<float4*>(&xs[line][offset]) = v;
    }
  }
};

template <class Cfg, bool TRANS_A, bool TRANS_B>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinBlocks) sgemm_kernel(const GemmParams p) {
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, THREADS = Cfg::kThreads;
  constexpr int TM = Cfg::TM, TN = Cfg::TN;
  constexpr int kFragStrideM = kLanesM * 4;  // rows between a thread's 4x4 fragments
  constexpr int kFragStrideN = kLanesN * 4;  // columns between them
  // A is read as X(m, k): k contiguous unless transposed. B as X(n, k): k contiguous if transposed.
  constexpr bool kAKContig = !TRANS_A, kBKContig = TRANS_B;

  __shared__ __align__(16) float a_tile[2][BK][BM + kSharedPad];
  __shared__ __align__(16) float b_tile[2][BK][BN + kSharedPad];

  const int tid = threadIdx.x;
  const int tiles_m = (p.m + BM - 1) / BM;
  const int m0 = static_cast<int>(blockIdx.x % tiles_m) * BM;
  const int n0 = static_cast<int>(blockIdx.x / tiles_m) * BN;
  const int split = static_cast<int>(blockIdx.z % p.splits);
  const int64_t batch = blockIdx.z / p.splits;
  const float* a = p.a + batch * p.stride_a;
  const float* b = p.b + batch * p.stride_b;
  float* c = p.c + batch * p.stride_c + split * p.split_stride_c;
  const int k_begin = split * p.k_per_split;
  const int k_end = min(p.k, k_begin + p.k_per_split);
  const int num_k_tiles = k_end > k_begin ? (k_end - k_begin + BK - 1) / BK : 0;

  // Where this thread's accumulators sit in the block tile.
  const int warp = tid / 32, lane = tid % 32;
  const int row0 = (warp / Cfg::kWarpsN) * Cfg::WM + (lane / kLanesN) * 4;
  const int col0 = (warp % Cfg::kWarpsN) * Cfg::WN + (lane % kLanesN) * 4;

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  using ALoader = TileLoader<BM, BK, THREADS, kAKContig>;
  using BLoader = TileLoader<BN, BK, THREADS, kBKContig>;
  ALoader a_loader(a, p.lda, m0, k_begin, tid);
  BLoader b_loader(b, p.ldb, n0, k_begin, tid);
  if (num_k_tiles > 0) {  // block-uniform
    ALoader::store(a_loader.load(p.m, k_end, p.a_vec), a_tile[0], tid);
    BLoader::store(b_loader.load(p.n, k_end, p.b_vec), b_tile[0], tid);
    __syncthreads();
  }

  for (int t = 0; t < num_k_tiles; ++t) {
    const int cur = t & 1;
    // The next k-step's global loads, in flight during the FMAs below. After the last step they
    // are all past k_end: zeros, no memory access, stored into a buffer nobody reads again.
    a_loader.advance(p.lda);
    b_loader.advance(p.ldb);
    const float4 a_next = a_loader.load(p.m, k_end, p.a_vec);
    const float4 b_next = b_loader.load(p.n, k_end, p.b_vec);
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a_frag[TM], b_frag[TN];
#pragma unroll
      for (int i = 0; i < TM / 4; ++i) {
        const float4 v = *reinterpret_cast<const float4*>(&a_tile[cur][kk][row0 + i * kFragStrideM]);
        a_frag[i * 4 + 0] = v.x;
        a_frag[i * 4 + 1] = v.y;
        a_frag[i * 4 + 2] = v.z;
        a_frag[i * 4 + 3] = v.w;
      }
#pragma unroll
      for (int j = 0; j < TN / 4; ++j) {
        const float4 v = *reinterpret_cast<const float4*>(&b_tile[cur][kk][col0 + j * kFragStrideN]);
        b_frag[j * 4 + 0] = v.x;
        b_frag[j * 4 + 1] = v.y;
        b_frag[j * 4 + 2] = v.z;
        b_frag[j * 4 + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a_frag[i], b_frag[j], acc[i][j]);
    }
    // The other buffer was last read in step t - 1, which every thread finished before the
    // __syncthreads that ended it; this step's reads of `cur` end at the __syncthreads below.
    ALoader::store(a_next, a_tile[cur ^ 1], tid);
    BLoader::store(b_next, b_tile[cur ^ 1], tid);
    __syncthreads();
  }

  // Epilogue: C = alpha * acc + beta * C, 4 consecutive columns at a time.
  const float alpha = p.alpha, beta = p.beta;
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int row = m0 + row0 + (i / 4) * kFragStrideM + i % 4;
    if (row >= p.m) continue;
    float* c_row = c + static_cast<int64_t>(row) * p.ldc;
#pragma unroll
    for (int j4 = 0; j4 < TN / 4; ++j4) {
      const int col = n0 + col0 + j4 * kFragStrideN;
      float out[4];
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) out[jj] = alpha * acc[i][j4 * 4 + jj];
      if (p.c_vec && col + 3 < p.n) {
        float4* dst = reinterpret_cast<float4*>(c_row + col);
        if (beta != 0.f) {
          const float4 old = *dst;
          out[0] = fmaf(beta, old.x, out[0]);
          out[1] = fmaf(beta, old.y, out[1]);
          out[2] = fmaf(beta, old.z, out[2]);
          out[3] = fmaf(beta, old.w, out[3]);
        }
        *dst = make_float4(out[0], out[1], out[2], out[3]);
      } else {
#pragma unroll
        for (int jj = 0; jj < 4; ++jj) {
          if (col + jj < p.n) {
            float* dst = c_row + col + jj;
            *dst = beta != 0.f ? fmaf(beta, *dst, out[jj]) : out[jj];
          }
        }
      }
    }
  }
}

// C[b] = alpha * sum_s partial[s][b] + beta * C[b]; partial[s][b] is a dense m x n matrix at
// partial + s * split_stride + b * m * n. Sums in split order (deterministic).
__global__ void splitk_reduce_kernel(const float* partial, int splits, int64_t split_stride, int m, int n,
                                     int64_t count, float* c, int64_t ldc, int64_t stride_c, float alpha,
                                     float beta) {
  const int64_t mn = static_cast<int64_t>(m) * n;
  for (int64_t i = thread_index(); i < count; i += thread_count()) {
    float sum = 0.f;
    for (int s = 0; s < splits; ++s) sum += partial[s * split_stride + i];
    const int64_t batch = i / mn, within = i % mn;
    float* dst = c + batch * stride_c + (within / n) * ldc + within % n;
    *dst = beta != 0.f ? fmaf(beta, *dst, alpha * sum) : alpha * sum;
  }
}

template <class Cfg>
void launch_sgemm(cudaStream_t s, bool trans_a, bool trans_b, dim3 grid, const GemmParams& p) {
  const dim3 block(Cfg::kThreads);
  if (!trans_a && !trans_b) sgemm_kernel<Cfg, false, false><<<grid, block, 0, s>>>(p);
  else if (!trans_a && trans_b) sgemm_kernel<Cfg, false, true><<<grid, block, 0, s>>>(p);
  else if (trans_a && !trans_b) sgemm_kernel<Cfg, true, false><<<grid, block, 0, s>>>(p);
  else sgemm_kernel<Cfg, true, true><<<grid, block, 0, s>>>(p);
  NN_CUDA_CHECK_LAUNCH();
}

// The raw launcher's batch loop: grids of at most kMaxGridZ (batch x split) slices, then the
// split-K reduction of each chunk.
void run_sgemm(cudaStream_t s, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b,
               float beta, float* c, int64_t ldc, int64_t stride_c, int64_t batch, const SgemmPlan& plan,
               int device) {
  const int64_t tile_m = plan.large_tiles ? LargeTiles::BM : SmallTiles::BM;
  const int64_t tile_n = plan.large_tiles ? LargeTiles::BN : SmallTiles::BN;
  const int64_t tiles = ceil_div(m, tile_m) * ceil_div(n, tile_n);
  NN_CHECK(tiles <= INT_MAX, "sgemm: ", m, "x", n, " has too many tiles for one grid");
  const int splits = plan.splits;
  const int64_t chunk = std::min<int64_t>(batch, kMaxGridZ / splits);

  GemmParams p{};
  p.m = static_cast<int>(m);
  p.n = static_cast<int>(n);
  p.k = static_cast<int>(k);
  p.lda = lda;
  p.stride_a = stride_a;
  p.ldb = ldb;
  p.stride_b = stride_b;
  p.splits = splits;
  p.k_per_split = static_cast<int>(plan.k_per_split);
  p.a_vec = aligned16(a) && lda % 4 == 0 && stride_a % 4 == 0;
  p.b_vec = aligned16(b) && ldb % 4 == 0 && stride_b % 4 == 0;

  const size_t partial_floats =
      splits > 1 ? static_cast<size_t>(splits) * static_cast<size_t>(chunk) * static_cast<size_t>(m * n) : 0;
  const ScratchBuffer partials(partial_floats * sizeof(float), Device::cuda(device));
  float* partial = static_cast<float*>(partials.get());
  if (splits > 1) {
    p.c = partial;  // raw partial sums: alpha and beta are applied by the reduction
    p.ldc = n;
    p.stride_c = m * n;
    p.alpha = 1.f;
    p.beta = 0.f;
    p.c_vec = aligned16(partial) && n % 4 == 0;
  } else {
    p.ldc = ldc;
    p.stride_c = stride_c;
    p.alpha = alpha;
    p.beta = beta;
    p.c_vec = aligned16(c) && ldc % 4 == 0 && stride_c % 4 == 0;
    p.split_stride_c = 0;
  }

  try {
    for (int64_t b0 = 0; b0 < batch; b0 += chunk) {
      const int64_t nb = std::min(chunk, batch - b0);
      p.a = a + b0 * stride_a;
      p.b = b + b0 * stride_b;
      if (splits == 1) p.c = c + b0 * stride_c;
      else p.split_stride_c = nb * m * n;
      const dim3 grid(static_cast<unsigned>(tiles), 1, static_cast<unsigned>(nb * splits));
      if (plan.large_tiles) launch_sgemm<LargeTiles>(s, trans_a, trans_b, grid, p);
      else launch_sgemm<SmallTiles>(s, trans_a, trans_b, grid, p);
      if (splits > 1) {
        const int64_t count = nb * m * n;
        splitk_reduce_kernel<<<blocks_for(count), 256, 0, s>>>(partial, splits, nb * m * n, p.m, p.n, count,
                                                               c + b0 * stride_c, ldc, stride_c, alpha, beta);
        NN_CUDA_CHECK_LAUNCH();
      }
    }
  } catch (...) {
    // The launches already queued may still use the partials, which are freed on the way out.
    if (partial) cudaStreamSynchronize(s);
    throw;
  }
  // The allocator reuses freed blocks in the order of nn's stream for this device; work queued on
  // another stream must finish before the partials are freed.
  if (partial && s != stream(device)) NN_CUDA_CHECK(cudaStreamSynchronize(s));
}

// The kernel-table entry: a (B,M,K) or (B,K,M), b (B,K,N) or (B,N,K), c (B,M,N), dense within a
// batch; a batch stride of 0 (or a batch of 1) on a or b broadcasts it.
void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, double alpha, double beta) {
  require_f32(a, "gemm");
  require_f32(b, "gemm");
  require_f32(c, "gemm");
  NN_CHECK(a.device() == c.device() && b.device() == c.device(), "gemm: operands on ", a.device(), ", ",
           b.device(), " and output on ", c.device());
  NN_CHECK(a.dim() == 3 && b.dim() == 3 && c.dim() == 3, "gemm: expects 3-D (batch, rows, cols) operands");
  const int64_t batch = c.shape()[0], m = c.shape()[1], n = c.shape()[2];
  const int64_t k = trans_a ? a.shape()[1] : a.shape()[2];
  NN_CHECK((trans_a ? a.shape()[2] : a.shape()[1]) == m && (trans_b ? b.shape()[2] : b.shape()[1]) == k &&
               (trans_b ? b.shape()[1] : b.shape()[2]) == n,
           "gemm: shapes do not match: a ", shape_str(a.shape()), trans_a ? "^T" : "", ", b ", shape_str(b.shape()),
           trans_b ? "^T" : "", ", c ", shape_str(c.shape()));
  NN_CHECK((a.shape()[0] == batch || a.shape()[0] == 1) && (b.shape()[0] == batch || b.shape()[0] == 1),
           "gemm: batch sizes do not match: a ", shape_str(a.shape()), ", b ", shape_str(b.shape()), ", c ",
           shape_str(c.shape()));
  const int64_t stride_a = a.shape()[0] == 1 ? 0 : a.strides()[0];
  const int64_t stride_b = b.shape()[0] == 1 ? 0 : b.strides()[0];
  const int64_t stride_c = c.shape()[0] == 1 ? m * n : c.strides()[0];
  cudaStream_t s = stream_for(c);
  sgemm(s, trans_a, trans_b, m, n, k, static_cast<float>(alpha), static_cast<const float*>(a.raw_data()),
        a.shape()[2], stride_a, static_cast<const float*>(b.raw_data()), b.shape()[2], stride_b,
        static_cast<float>(beta), static_cast<float*>(c.raw_data()), n, stride_c, batch);
}

}  // namespace

SgemmPlan plan_sgemm(int64_t m, int64_t n, int64_t k, int64_t batch, int sm_count) {
  SgemmPlan plan;
  plan.k_per_split = ceil_div(std::max<int64_t>(k, 1), kTileK) * kTileK;
  if (m <= 0 || n <= 0 || batch <= 0) return plan;  // nothing to launch
  const int64_t large_blocks = ceil_div(m, LargeTiles::BM) * ceil_div(n, LargeTiles::BN) * batch;
  const int64_t small_blocks = ceil_div(m, SmallTiles::BM) * ceil_div(n, SmallTiles::BN) * batch;
  // Padded area the grid computes with each tile size: 128x128 tiles must fill every SM and not
  // waste more than a quarter more work than 64x64 tiles (e.g. M = 64 pads to 128).
  const int64_t large_area = ceil_div(m, LargeTiles::BM) * LargeTiles::BM * ceil_div(n, LargeTiles::BN) * LargeTiles::BN;
  const int64_t small_area = ceil_div(m, SmallTiles::BM) * SmallTiles::BM * ceil_div(n, SmallTiles::BN) * SmallTiles::BN;
  plan.large_tiles = large_blocks >= sm_count && large_area * 4 <= small_area * 5;
  const int64_t blocks = plan.large_tiles ? large_blocks : small_blocks;
  // Blocks that run at once: 2 large (256 threads, 128 registers) or about 4 small per SM.
  const int64_t resident = static_cast<int64_t>(sm_count) * (plan.large_tiles ? 2 : 4);
  int64_t splits = 1;
  if (blocks * 2 <= resident) splits = std::min<int64_t>({resident / blocks, k / kMinKPerSplit, kMaxSplits});
  splits = std::max<int64_t>(splits, 1);
  plan.k_per_split = ceil_div(ceil_div(std::max<int64_t>(k, 1), splits), kTileK) * kTileK;
  plan.splits = static_cast<int>(ceil_div(std::max<int64_t>(k, 1), plan.k_per_split));
  return plan;
}

void sgemm(cudaStream_t s, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, int64_t batch_stride_a, const float* b, int64_t ldb,
           int64_t batch_stride_b, float beta, float* c, int64_t ldc, int64_t batch_stride_c, int64_t batch) {
  NN_CHECK(m >= 0 && n >= 0 && k >= 0 && batch >= 0, "sgemm: negative size m=", m, " n=", n, " k=", k,
           " batch=", batch);
  if (m == 0 || n == 0 || batch == 0) return;
  NN_CHECK(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX - 2 * kTileK, "sgemm: m=", m, " n=", n, " k=", k,
           " is too large (each must fit in int)");
  NN_CHECK(lda >= (trans_a ? m : k) && ldb >= (trans_b ? k : n) && ldc >= n, "sgemm: leading dimensions lda=",
           lda, " ldb=", ldb, " ldc=", ldc, " are smaller than the rows they hold");
  int device = 0;
  NN_CUDA_CHECK(cudaGetDevice(&device));
  const SgemmPlan plan = plan_sgemm(m, n, k, batch, multiprocessor_count());
  run_sgemm(s, trans_a, trans_b, m, n, k, alpha, a, lda, batch_stride_a, b, ldb, batch_stride_b, beta, c, ldc,
            batch_stride_c, batch, plan, device);
}

void register_matmul_cuda(KernelTable& t) { t.gemm = gemm; }

}  // namespace nn::cuda
