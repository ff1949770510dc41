// Convolution backward passes on CUDA (f32) for layers with very few input channels (C <= 4, e.g.
// VGG16's first layer, 3 -> 64 channels, 3x3). Semantics as conv_cuda.cu (cross-correlation, NCHW,
// OIHW, outputs written); both passes are deterministic. With dy (N,O,OH,OW), x (N,C,H,W),
// w (O,C,K,K):
//
//   dx[n,c,h,w]  = sum over o, r, s of dy[n, o, h + ph - r, w + pw - s] * w[o,c,r,s]   (stride 1)
//   dw[o,c,r,s]  = sum over n, oy, ox of dy[n,o,oy,ox] * x[n, c, oy*sh - ph + r, ox*sw - pw + s]
//
// The implicit GEMM has M = C (backward input) or N = C*K*K (backward weight) there, a sliver of its
// block tile. These kernels instead keep the small dimension whole in each thread's registers.
//
// Backward input (stride 1): a block of 4 warps covers a 32 x 32 tile of one image of dx; lane tx
// owns column w0 + tx and warp ty the 8 consecutive rows h0 + 8*ty .. +7, so a thread accumulates
// 8 rows x C channels. All weights are staged once in shared memory, laid out per (o, s) as the
// K*C values (r, c) padded to a multiple of 4, so each (o, s) is a few broadcast float4 reads. The
// thread then loops over every o and, per s, reads the 8 + K - 1 dy values of its column straight
// from global memory (coalesced: the 32 lanes read 32 consecutive columns; the K-fold overlap
// between neighbouring lanes and rows is served by L1). Which dy rows and columns lie inside dy
// does not depend on o, so it is decided once per thread; outside, the value is 0 (padding).
// Per (o, s): 8+K-1 loads, ceil(K*C/4) shared float4 loads, 8*K*C FMAs (72 for 3x3, C = 3).
//
// Backward weight: the reduction over (n, oy, ox) runs along lanes and along each lane's walk down
// a column. The output pixels are ordered as (image, 32-column strip, row) "strip rows"; a task is
// a contiguous run of them (several hundred rows; a run may cross into the next strip or image). A
// warp takes one task for 2 output channels: lane l owns output column 32*strip + l, walks down
// its rows and accumulates dw for its 2 channels x all C*K*K taps in registers (at most 64). Per
// row it loads 2 dy values (coalesced across lanes) and the K x K x C patch of x under its pixel;
// with stride_h == 1 the patch slides down one row, so only C*K new x values are loaded (L1 serves
// the overlap between lanes). x reads outside the image are 0. At the end of the task the warp
// sums each accumulator over its 32 lanes with an xor butterfly (every lane ends with the same
// bits) and writes the task's partial dw to scratch; a second kernel adds the partials of all
// tasks in task order. No atomics, and the task split depends only on the geometry, so dw is the
// same bits on every run and every device. Tasks are sized for about 16384 warps in all (several
// waves on an H100/H200) but at least 64 rows, so the butterfly stays a few percent of the work;
// the scratch is then at most about 16384 * 2 * 32 floats (4 MiB).
//
// Offsets: within one image 32-bit (checked), image offsets 64-bit.
#include "conv_few_channels_cuda.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "cuda_util.cuh"

// The per-thread bodies are NN_HOST_DEVICE_INLINE (host and device) so that a host-only harness can
// run them.

namespace nn::cuda {
namespace {

constexpr int64_t kIntMax = std::numeric_limits<int>::max();
constexpr int kWarpSize = 32;

// ---------------------------------------------------------------------------------------------
// Backward input.

constexpr int kInputTileWidth = kWarpSize;  // one lane per dx column
constexpr int kInputWarps = 4;              // stacked along h
constexpr int kInputRowsPerThread = 8;
constexpr int kInputTileHeight = kInputWarps * kInputRowsPerThread;
constexpr int kInputThreads = kInputTileWidth * kInputWarps;
constexpr int kInputMaxKernel = 5;  // larger kernels spill registers
constexpr int kInputMaxChannels = 4;
constexpr int64_t kMaxWeightSharedBytes = 48 * 1024;

struct BackwardInputFewParams {
  const float* dy;  // (N, O, OH, OW)
  const float* w;   // (O, C, K, K)
  float* dx;        // (N, C, H, W), written
  int o, in_h, in_w, out_h, out_w, pad_h, pad_w;
  int tiles_h, tiles_w;  // 32 x 32 tiles of dx per image
};

// Floats of shared weights per (o, s): the K*C values (r, c), padded to whole float4s.
template <int C, int K>
constexpr int kTapFloats = static_cast<int>(round_up(K * C, 4));

int64_t backward_input_shared_floats(int64_t o, int64_t c, int64_t k) { return o * k * round_up(k * c, 4); }

// shared[(o*K + s)*kTapFloats + r*C + c] = w[o, c, r, s]; the padding is 0.
template <int C, int K>
NN_HOST_DEVICE_INLINE void stage_weights(const BackwardInputFewParams& p, float* shared, int thread, int threads) {
  constexpr int kTap = kTapFloats<C, K>;
  const int count = p.o * K * kTap;
  for (int i = thread; i < count; i += threads) {
    const int q = i % kTap;
    const int s = (i / kTap) % K;
    const int o = i / (kTap * K);
    float v = 0.0f;
    if (q < K * C) {
      const int r = q / C;
      const int c = q % C;
      v = p.w[((o * C + c) * K + r) * K + s];
    }
    shared[i] = v;
  }
}

// Thread (tx, ty) of block `block`: dx for column 32*tile_w + tx, rows 32*tile_h + 8*ty + (0..7),
// all C channels.
template <int C, int K>
NN_HOST_DEVICE_INLINE void backward_input_thread(const BackwardInputFewParams& p, const float4* shared_weights,
                                                 int64_t block, int tx, int ty) {
  constexpr int kRows = kInputRowsPerThread;
  constexpr int kDyRows = kRows + K - 1;
  constexpr int kTap = kTapFloats<C, K>;
  const int tile_w = static_cast<int>(block % p.tiles_w);
  const int64_t image_tile = block / p.tiles_w;
  const int tile_h = static_cast<int>(image_tile % p.tiles_h);
  const int64_t n = image_tile / p.tiles_h;
  const int col = tile_w * kInputTileWidth + tx;
  const int first_row = tile_h * kInputTileHeight + ty * kRows;

  // dx row first_row + i takes tap r from dy row first_row + i + ph - r = first_dy_row + (i + K-1 - r).
  const int first_dy_row = first_row + p.pad_h - (K - 1);
  int dy_row_offset[kDyRows];
  bool dy_row_inside[kDyRows];
#pragma unroll
  for (int j = 0; j < kDyRows; ++j) {
    const int oy = first_dy_row + j;
    dy_row_inside[j] = oy >= 0 && oy < p.out_h;
    dy_row_offset[j] = dy_row_inside[j] ? oy * p.out_w : 0;
  }
  // dx column col takes tap s from dy column col + pw - s.
  int dy_col[K];
  bool dy_col_inside[K];
#pragma unroll
  for (int s = 0; s < K; ++s) {
    const int ox = col + p.pad_w - s;
    dy_col_inside[s] = ox >= 0 && ox < p.out_w;
    dy_col[s] = dy_col_inside[s] ? ox : 0;
  }

  const int64_t plane = static_cast<int64_t>(p.out_h) * p.out_w;
  const float* dy_image = p.dy + n * p.o * plane;
  float acc[kRows][C];
#pragma unroll
  for (int i = 0; i < kRows; ++i)
#pragma unroll
    for (int c = 0; c < C; ++c) acc[i][c] = 0.0f;

  // Not unrolled: the K*(8+K-1) loads of one o are already independent and in flight together.
#pragma unroll 1
  for (int o = 0; o < p.o; ++o) {
    const float* dy_plane = dy_image + o * plane;
#pragma unroll
    for (int s = 0; s < K; ++s) {
      float v[kDyRows];
#pragma unroll
      for (int j = 0; j < kDyRows; ++j)
        v[j] = dy_row_inside[j] && dy_col_inside[s] ? dy_plane[dy_row_offset[j] + dy_col[s]] : 0.0f;
      float wv[kTap];
      const float4* wq = shared_weights + (o * K + s) * (kTap / 4);
#pragma unroll
      for (int q = 0; q < kTap / 4; ++q) {
        const float4 t = wq[q];
        wv[4 * q] = t.x;
        wv[4 * q + 1] = t.y;
        wv[4 * q + 2] = t.z;
        wv[4 * q + 3] = t.w;
      }
#pragma unroll
      for (int i = 0; i < kRows; ++i)
#pragma unroll
        for (int r = 0; r < K; ++r)
#pragma unroll
          for (int c = 0; c < C; ++c) acc[i][c] = fmaf(v[i + K - 1 - r], wv[r * C + c], acc[i][c]);
    }
  }

  if (col >= p.in_w) return;
  float* dx_image = p.dx + n * C * static_cast<int64_t>(p.in_h) * p.in_w;
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    const int row = first_row + i;
    if (row >= p.in_h) break;
#pragma unroll
    for (int c = 0; c < C; ++c) dx_image[(c * p.in_h + row) * p.in_w + col] = acc[i][c];
  }
}

template <int C, int K>
__global__ void __launch_bounds__(kInputThreads) conv_backward_input_few_channels_kernel(const BackwardInputFewParams p) {
  extern __shared__ float4 shared_weights[];
  const int thread = threadIdx.y * kInputTileWidth + threadIdx.x;
  stage_weights<C, K>(p, reinterpret_cast<float*>(shared_weights), thread, kInputThreads);
  __syncthreads();
  backward_input_thread<C, K>(p, shared_weights, blockIdx.x, threadIdx.x, threadIdx.y);
}

template <int C, int K>
void launch_backward_input(const BackwardInputFewParams& p, int64_t blocks, size_t shared_bytes,
                           cudaStream_t stream) {
  const dim3 block(kInputTileWidth, kInputWarps);
  conv_backward_input_few_channels_kernel<C, K>
      <<<static_cast<unsigned>(blocks), block, shared_bytes, stream>>>(p);
  NN_CUDA_CHECK_LAUNCH();
}

template <int C>
void launch_backward_input_for_channels(int k, const BackwardInputFewParams& p, int64_t blocks,
                                        size_t shared_bytes, cudaStream_t stream) {
  switch (k) {
    case 1: launch_backward_input<C, 1>(p, blocks, shared_bytes, stream); return;
    case 2: launch_backward_input<C, 2>(p, blocks, shared_bytes, stream); return;
    case 3: launch_backward_input<C, 3>(p, blocks, shared_bytes, stream); return;
    case 4: launch_backward_input<C, 4>(p, blocks, shared_bytes, stream); return;
    case 5: launch_backward_input<C, 5>(p, blocks, shared_bytes, stream); return;
    default: NN_CHECK(false, "conv2d backward input (few channels): no kernel for ", k, "x", k);
  }
}

// ---------------------------------------------------------------------------------------------
// Backward weight.

constexpr int kChannelsPerWarp = 2;  // output channels o per warp
constexpr int kWeightWarps = 4;      // warps per block: consecutive channel groups of one task
constexpr int kWeightThreads = kWeightWarps * kWarpSize;
constexpr int kMaxTaps = 32;         // C*K*K limit: at most 2 * 32 accumulators per lane
constexpr int64_t kTargetWarps = 16384;
constexpr int64_t kMinRowsPerTask = 64;

struct BackwardWeightFewParams {
  const float* dy;  // (N, O, OH, OW)
  const float* x;   // (N, C, H, W)
  float* partials;  // (tasks, O, C*K*K), written
  int o, in_h, in_w, out_h, out_w, stride_h, stride_w, pad_h, pad_w;
  int strips;              // ceil(OW / 32): 32-column strips of the output, a lane per column
  int channel_groups;      // ceil(O / kChannelsPerWarp)
  int64_t strip_rows;      // N * strips * OH, ordered (image, strip, row)
  int64_t rows_per_task;   // consecutive strip rows per task
  int64_t tasks;
};

struct BackwardWeightPlan {
  int strips = 0, channel_groups = 0;
  int64_t strip_rows = 0, rows_per_task = 0, tasks = 0;
};

BackwardWeightPlan plan_backward_weight(const Conv2dGeometry& g) {
  BackwardWeightPlan plan;
  plan.strips = static_cast<int>(ceil_div(g.ow, kWarpSize));
  plan.channel_groups = static_cast<int>(ceil_div(g.o, kChannelsPerWarp));
  plan.strip_rows = g.n * plan.strips * g.oh;
  if (plan.strip_rows == 0 || plan.channel_groups == 0) return plan;
  const int64_t target_tasks = std::max<int64_t>(1, kTargetWarps / plan.channel_groups);
  plan.rows_per_task = std::max(kMinRowsPerTask, ceil_div(plan.strip_rows, target_tasks));
  plan.tasks = ceil_div(plan.strip_rows, plan.rows_per_task);
  return plan;
}

// x values of patch row r for the output pixel whose patch starts at (iy_first, ix_first); 0
// outside the image.
template <int C, int K>
NN_HOST_DEVICE_INLINE void load_patch_row(const float* x_image, int in_h, int in_w, int iy, int ix_first,
                                          const bool (&col_inside)[K], float (&patch)[C][K][K], int r) {
  const bool row_inside = iy >= 0 && iy < in_h;
#pragma unroll
  for (int c = 0; c < C; ++c)
#pragma unroll
    for (int s = 0; s < K; ++s)
      patch[c][r][s] = row_inside && col_inside[s] ? x_image[(c * in_h + iy) * in_w + ix_first + s] : 0.0f;
}

// acc += the products of output column ox, rows [oy_begin, oy_end) of image n, for the output
// channels o_first .. o_first + 1 (those < O).
template <int C, int K, bool kUnitStrideH>
NN_HOST_DEVICE_INLINE void accumulate_column(const BackwardWeightFewParams& p, int64_t n, int o_first, int ox,
                                             int oy_begin, int oy_end, float (&acc)[kChannelsPerWarp][C * K * K]) {
  const int64_t plane = static_cast<int64_t>(p.out_h) * p.out_w;
  const float* dy_column[kChannelsPerWarp];
  bool channel_inside[kChannelsPerWarp];
#pragma unroll
  for (int g = 0; g < kChannelsPerWarp; ++g) {
    const int o = o_first + g;
    channel_inside[g] = o < p.o;
    dy_column[g] = p.dy + (n * p.o + (channel_inside[g] ? o : 0)) * plane + ox;
  }
  const float* x_image = p.x + n * C * static_cast<int64_t>(p.in_h) * p.in_w;
  const int ix_first = ox * p.stride_w - p.pad_w;
  bool col_inside[K];
#pragma unroll
  for (int s = 0; s < K; ++s) col_inside[s] = ix_first + s >= 0 && ix_first + s < p.in_w;

  float patch[C][K][K];
  if constexpr (kUnitStrideH) {
    // Rows 1..K-1 of the patch of row oy_begin - 1; each step shifts them up and loads one row.
#pragma unroll
    for (int r = 1; r < K; ++r)
      load_patch_row<C, K>(x_image, p.in_h, p.in_w, oy_begin - 1 - p.pad_h + r, ix_first, col_inside, patch, r);
  }
#pragma unroll 4
  for (int oy = oy_begin; oy < oy_end; ++oy) {
    const int iy_first = oy * p.stride_h - p.pad_h;
    if constexpr (kUnitStrideH) {
#pragma unroll
      for (int c = 0; c < C; ++c)
#pragma unroll
        for (int r = 0; r + 1 < K; ++r)
#pragma unroll
          for (int s = 0; s < K; ++s) patch[c][r][s] = patch[c][r + 1][s];
      load_patch_row<C, K>(x_image, p.in_h, p.in_w, iy_first + K - 1, ix_first, col_inside, patch, K - 1);
    } else {
#pragma unroll
      for (int r = 0; r < K; ++r)
        load_patch_row<C, K>(x_image, p.in_h, p.in_w, iy_first + r, ix_first, col_inside, patch, r);
    }
    float d[kChannelsPerWarp];
#pragma unroll
    for (int g = 0; g < kChannelsPerWarp; ++g) d[g] = channel_inside[g] ? dy_column[g][oy * p.out_w] : 0.0f;
#pragma unroll
    for (int g = 0; g < kChannelsPerWarp; ++g)
#pragma unroll
      for (int c = 0; c < C; ++c)
#pragma unroll
        for (int r = 0; r < K; ++r)
#pragma unroll
          for (int s = 0; s < K; ++s)
            acc[g][(c * K + r) * K + s] = fmaf(d[g], patch[c][r][s], acc[g][(c * K + r) * K + s]);
  }
}

// Lane `lane`'s share of task `task` for channel group `group`: its column of every strip row of
// the task.
template <int C, int K, bool kUnitStrideH>
NN_HOST_DEVICE_INLINE void accumulate_task_lane(const BackwardWeightFewParams& p, int64_t task, int group, int lane,
                                                float (&acc)[kChannelsPerWarp][C * K * K]) {
#pragma unroll
  for (int g = 0; g < kChannelsPerWarp; ++g)
#pragma unroll
    for (int j = 0; j < C * K * K; ++j) acc[g][j] = 0.0f;
  int64_t u = task * p.rows_per_task;
  const int64_t task_end = u + p.rows_per_task < p.strip_rows ? u + p.rows_per_task : p.strip_rows;
  while (u < task_end) {
    const int64_t strip_column = u / p.out_h;  // image * strips + strip
    const int oy_begin = static_cast<int>(u - strip_column * p.out_h);
    const int64_t rows_left = task_end - u;
    const int oy_end = rows_left < p.out_h - oy_begin ? oy_begin + static_cast<int>(rows_left) : p.out_h;
    const int64_t n = strip_column / p.strips;
    const int strip = static_cast<int>(strip_column - n * p.strips);
    const int ox = strip * kWarpSize + lane;
    if (ox < p.out_w)
      accumulate_column<C, K, kUnitStrideH>(p, n, group * kChannelsPerWarp, ox, oy_begin, oy_end, acc);
    u += oy_end - oy_begin;
  }
}

template <int C, int K, bool kUnitStrideH>
__global__ void __launch_bounds__(kWeightThreads) conv_backward_weight_few_channels_kernel(
    const BackwardWeightFewParams p) {
  constexpr int kTaps = C * K * K;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warp = static_cast<int64_t>(blockIdx.x) * kWeightWarps + threadIdx.x / kWarpSize;
  if (warp >= p.tasks * p.channel_groups) return;  // whole warps only
  const int64_t task = warp / p.channel_groups;
  const int group = static_cast<int>(warp - task * p.channel_groups);
  float acc[kChannelsPerWarp][kTaps];
  accumulate_task_lane<C, K, kUnitStrideH>(p, task, group, lane, acc);

  float* out = p.partials + task * p.o * kTaps;
#pragma unroll
  for (int g = 0; g < kChannelsPerWarp; ++g) {
    const int o = group * kChannelsPerWarp + g;
#pragma unroll
    for (int j = 0; j < kTaps; ++j) {
      float sum = acc[g][j];
#pragma unroll
      for (int m = kWarpSize / 2; m > 0; m /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, m);
      if (o < p.o && lane == (g * kTaps + j) % kWarpSize) out[o * kTaps + j] = sum;
    }
  }
}

// dw[i] = the sum over tasks t, in order, of partials[t * count + i].
__global__ void sum_task_partials_kernel(const float* __restrict__ partials, float* __restrict__ dw, int64_t count,
                                         int64_t tasks) {
  for (int64_t i = thread_index(); i < count; i += thread_count()) {
    float sum = 0.0f;
#pragma unroll 8
    for (int64_t t = 0; t < tasks; ++t) sum += partials[t * count + i];
    dw[i] = sum;
  }
}

template <int C, int K>
void launch_backward_weight(const BackwardWeightFewParams& p, bool unit_stride_h, int64_t blocks,
                            cudaStream_t stream) {
  if constexpr (C * K * K <= kMaxTaps) {
    if (unit_stride_h)
      conv_backward_weight_few_channels_kernel<C, K, true><<<static_cast<unsigned>(blocks), kWeightThreads, 0, stream>>>(p);
    else
      conv_backward_weight_few_channels_kernel<C, K, false><<<static_cast<unsigned>(blocks), kWeightThreads, 0, stream>>>(p);
    NN_CUDA_CHECK_LAUNCH();
  } else {
    NN_CHECK(false, "conv2d backward weight (few channels): C*K*K = ", C * K * K, " is over ", kMaxTaps);
  }
}

template <int C>
void launch_backward_weight_for_channels(int k, const BackwardWeightFewParams& p, bool unit_stride_h,
                                         int64_t blocks, cudaStream_t stream) {
  switch (k) {
    case 1: launch_backward_weight<C, 1>(p, unit_stride_h, blocks, stream); return;
    case 2: launch_backward_weight<C, 2>(p, unit_stride_h, blocks, stream); return;
    case 3: launch_backward_weight<C, 3>(p, unit_stride_h, blocks, stream); return;
    case 4: launch_backward_weight<C, 4>(p, unit_stride_h, blocks, stream); return;
    case 5: launch_backward_weight<C, 5>(p, unit_stride_h, blocks, stream); return;
    default: NN_CHECK(false, "conv2d backward weight (few channels): no kernel for ", k, "x", k);
  }
}

// Sizes every launch here relies on: per-image offsets in 32 bits, sane stride and padding.
bool sizes_fit(const Conv2dGeometry& g) {
  return g.n >= 0 && g.c >= 1 && g.h >= 0 && g.w >= 0 && g.o >= 0 && g.oh >= 0 && g.ow >= 0 && g.kh >= 1 &&
         g.kh == g.kw && g.stride_h >= 1 && g.stride_w >= 1 && g.pad_h >= 0 && g.pad_w >= 0 &&
         g.pad_h < (1 << 20) && g.pad_w < (1 << 20) && g.stride_h < (1 << 20) && g.stride_w < (1 << 20) &&
         g.c * g.h * g.w <= kIntMax && g.o * g.oh * g.ow <= kIntMax && g.h + 2 * g.pad_h <= kIntMax / 2 &&
         g.w + 2 * g.pad_w <= kIntMax / 2 && g.oh * g.stride_h <= kIntMax / 2 && g.ow * g.stride_w <= kIntMax / 2;
}

}  // namespace

// ---- backward input ----

bool few_channels_backward_input_applicable(const Conv2dGeometry& g) {
  return sizes_fit(g) && g.stride_h == 1 && g.stride_w == 1 && g.kh <= kInputMaxKernel &&
         g.c <= kInputMaxChannels && backward_input_shared_floats(g.o, g.c, g.kh) * 4 <= kMaxWeightSharedBytes;
}

void conv2d_backward_input_few_channels_f32(const float* dy, const float* w, float* dx, const Conv2dGeometry& g,
                                            cudaStream_t stream) {
  NN_CHECK(few_channels_backward_input_applicable(g),
           "conv2d backward input (few channels): geometry not supported (needs stride 1, a square kernel up to "
           "5x5, at most 4 input channels, weights within 48 KiB)");
  if (g.n * g.c * g.h * g.w == 0) return;
  BackwardInputFewParams p{};
  p.dy = dy;
  p.w = w;
  p.dx = dx;
  p.o = static_cast<int>(g.o);
  p.in_h = static_cast<int>(g.h);
  p.in_w = static_cast<int>(g.w);
  p.out_h = static_cast<int>(g.oh);
  p.out_w = static_cast<int>(g.ow);
  p.pad_h = static_cast<int>(g.pad_h);
  p.pad_w = static_cast<int>(g.pad_w);
  p.tiles_h = static_cast<int>(ceil_div(g.h, kInputTileHeight));
  p.tiles_w = static_cast<int>(ceil_div(g.w, kInputTileWidth));
  const int64_t blocks = g.n * p.tiles_h * p.tiles_w;
  NN_CHECK(blocks <= kIntMax, "conv2d backward input (few channels): too many blocks (", blocks, ")");
  const size_t shared_bytes = static_cast<size_t>(backward_input_shared_floats(g.o, g.c, g.kh)) * sizeof(float);
  const int k = static_cast<int>(g.kh);
  switch (g.c) {
    case 1: launch_backward_input_for_channels<1>(k, p, blocks, shared_bytes, stream); return;
    case 2: launch_backward_input_for_channels<2>(k, p, blocks, shared_bytes, stream); return;
    case 3: launch_backward_input_for_channels<3>(k, p, blocks, shared_bytes, stream); return;
    default: launch_backward_input_for_channels<4>(k, p, blocks, shared_bytes, stream); return;
  }
}

// ---- backward weight ----

bool few_channels_backward_weight_applicable(const Conv2dGeometry& g) {
  return sizes_fit(g) && g.c <= 4 && g.c * g.kh * g.kw <= kMaxTaps;
}

size_t conv2d_backward_weight_few_channels_workspace_bytes(const Conv2dGeometry& g) {
  const BackwardWeightPlan plan = plan_backward_weight(g);
  return static_cast<size_t>(plan.tasks * g.o * g.c * g.kh * g.kw) * sizeof(float);
}

void conv2d_backward_weight_few_channels_f32(const float* dy, const float* x, float* dw, const Conv2dGeometry& g,
                                             void* workspace, cudaStream_t stream) {
  NN_CHECK(few_channels_backward_weight_applicable(g),
           "conv2d backward weight (few channels): geometry not supported (needs a square kernel, C <= 4 "
           "and C*K*K <= 32)");
  const int64_t taps = g.c * g.kh * g.kw;
  const int64_t dw_count = g.o * taps;
  if (dw_count == 0) return;
  const BackwardWeightPlan plan = plan_backward_weight(g);
  if (plan.tasks == 0) {  // no output pixels: dw is 0
    NN_CUDA_CHECK(cudaMemsetAsync(dw, 0, static_cast<size_t>(dw_count) * sizeof(float), stream));
    return;
  }
  NN_CHECK(workspace != nullptr, "conv2d backward weight (few channels): needs ",
           conv2d_backward_weight_few_channels_workspace_bytes(g), " bytes of workspace");
  BackwardWeightFewParams p{};
  p.dy = dy;
  p.x = x;
  p.partials = static_cast<float*>(workspace);
  p.o = static_cast<int>(g.o);
  p.in_h = static_cast<int>(g.h);
  p.in_w = static_cast<int>(g.w);
  p.out_h = static_cast<int>(g.oh);
  p.out_w = static_cast<int>(g.ow);
  p.stride_h = static_cast<int>(g.stride_h);
  p.stride_w = static_cast<int>(g.stride_w);
  p.pad_h = static_cast<int>(g.pad_h);
  p.pad_w = static_cast<int>(g.pad_w);
  p.strips = plan.strips;
  p.channel_groups = plan.channel_groups;
  p.strip_rows = plan.strip_rows;
  p.rows_per_task = plan.rows_per_task;
  p.tasks = plan.tasks;
  const int64_t warps = plan.tasks * plan.channel_groups;
  const int64_t blocks = ceil_div(warps, kWeightWarps);
  NN_CHECK(blocks <= kIntMax, "conv2d backward weight (few channels): too many blocks (", blocks, ")");
  const bool unit_stride_h = g.stride_h == 1;
  const int k = static_cast<int>(g.kh);
  switch (g.c) {
    case 1: launch_backward_weight_for_channels<1>(k, p, unit_stride_h, blocks, stream); break;
    case 2: launch_backward_weight_for_channels<2>(k, p, unit_stride_h, blocks, stream); break;
    case 3: launch_backward_weight_for_channels<3>(k, p, unit_stride_h, blocks, stream); break;
    case 4: launch_backward_weight_for_channels<4>(k, p, unit_stride_h, blocks, stream); break;
    default: NN_CHECK(false, "conv2d backward weight (few channels): no kernel for ", g.c, " input channels");
  }
  sum_task_partials_kernel<<<blocks_for(dw_count), 256, 0, stream>>>(p.partials, dw, dw_count, plan.tasks);
  NN_CUDA_CHECK_LAUNCH();
}

}  // namespace nn::cuda
