// Winograd F(4x4, 3x3) convolution on CUDA (f32, NCHW activations, OIHW weights), non-fused like
// cuDNN's WINOGRAD_NONFUSED: 3x3 stride-1 convolutions with padding 0..2, forward, backward data and
// backward weight, as transforms (kernels of conv_winograd_cuda.cu) around 36 batched SGEMMs
// (nn::cuda::sgemm, gemm_cuda.cuh). conv_cuda.cu's raw launchers dispatch here when
// winograd_applicable(g) holds; nothing else calls this directly.
//
// ALGORITHM (Lavin & Gray 2016; points 0, +-1, +-2, infinity; the transforms are the CPU path's,
// libnn/src/conv_winograd_transforms.h). The output is cut into 4x4 tiles, P = N * ceil(OH/4) *
// ceil(OW/4) of them; tile p reads the 6x6 input patch at rows 4*th - pad_h .. +5, columns 4*tw -
// pad_w .. +5 (zeros outside the image; outputs of edge tiles past OH, OW are computed, never stored).
//   forward          U[xi] (O x C) = (G g G^T)[xi],  V[xi] (C x P) = (B^T d B)[xi],
//                    M[xi] (O x P) = U[xi] V[xi]  (36 GEMMs),  y tile = A^T M A + bias, ReLU
//   backward data    the forward of dy with padding 2 - pad, O and C swapped and the filter rotated
//                    by 180 degrees (g'(c <- o) = w[o][c][2-r][2-s]): only the filter read differs
//   backward weight  V from x as forward, dM[xi] (O x P) = (A dY A^T)[xi] per 4x4 dy tile (zeros
//                    past the output), dU[xi] (O x C) = dM[xi] V[xi]^T (36 GEMMs, depth P),
//                    dw = G^T dU G per (o, c)
//
// DATA LAYOUTS (floats, in the caller's workspace, each buffer 256-byte aligned):
//   U   [36][O][C]: the GEMM's A, row-major (lda = C)
//   V   [36][S][C][L] and M / dM [36][S][O][L]: point xi, segment s, channel, column q; tile p = s*L +
//       q. Forward uses S = 1 (L = P rounded up to 4, so rows stay 16-byte aligned for the GEMM's
//       vector loads); backward weight cuts its GEMM depth P into S segments of L columns so the 36
//       small O x C products still fill the GPU, each segment a GEMM batch of its own (batch b = xi*S
//       + s, uniform strides), summed in a fixed order by the final kernel (deterministic). Columns
//       past P are written as zeros by the transforms.
//   dU  [36*S][O][C]: per-segment partial products (backward weight).
// WORKSPACE: the caller passes it (winograd_*_workspace_bytes; the table entries take it from the
// caching allocator, the benchmark holds it). Forward: 36 * (O*C + (C + O) * L) floats; backward
// weight: 36 * (S*O*C + (C + O) * S*L). That is 0.9 GiB for VGG16's 256 -> 256 layer at 56x56 and
// batch 64; beyond kMaxWorkspaceBytes (1 GiB) the batch is processed in chunks of images (the
// backward-weight chunks after the first accumulate into dU with beta = 1), so VGG's 64-channel
// layers at 224x224 take 4 chunks of 16 images.
//
// The per-thread bodies of the kernels, the planning and the pass drivers are plain inline code here
// (host and device) so that a host-only test harness can run the very same code with a CPU
// executor against a direct convolution; the .cu file wraps them in kernels and launches them.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "conv_winograd_transforms.h"
#include "gemm_cuda.cuh"
#include "host_device.h"
#include "kernel_table.h"

#if defined(__CUDACC__)
#define NN_WINOGRAD_UNROLL _Pragma("unroll")
#else
#define NN_WINOGRAD_UNROLL
#endif

namespace nn::cuda {

// Whether the Winograd path applies and pays off: 3x3, stride 1, padding 0..2 on both axes, at least
// 16 input and 16 output channels (VGG's first layer, 3 -> 64, stays on the implicit GEMM: its GEMM
// depth of 3 would leave the transforms' memory traffic unpaid), and 4x4 tiles mostly inside the
// output (OH*OW >= 8 outputs per tile on average: 36 products per tile must be at most half of the
// direct 9 per output; 3x3 and 7x7 outputs yes, 2x2 and 5x5 no). Symmetric in C and O, so the
// backward-data pass of an applicable convolution is one as well.
bool winograd_applicable(const Conv2dGeometry& g);

// Workspace of each pass in bytes (depends on the number of SMs of the current device). The
// launchers require winograd_applicable(g), a workspace of that size, and non-empty tensors.
size_t winograd_forward_workspace_bytes(const Conv2dGeometry& g);
void winograd_forward_f32(const float* x, const float* w, const float* bias, float* y, const Conv2dGeometry& g,
                          bool relu, void* workspace, cudaStream_t stream);
size_t winograd_backward_input_workspace_bytes(const Conv2dGeometry& g);
void winograd_backward_input_f32(const float* dy, const float* w, float* dx, const Conv2dGeometry& g,
                                 void* workspace, cudaStream_t stream);
size_t winograd_backward_weight_workspace_bytes(const Conv2dGeometry& g);
void winograd_backward_weight_f32(const float* dy, const float* x, float* dw, const Conv2dGeometry& g,
                                  void* workspace, cudaStream_t stream);

namespace winograd {

using winograd_transforms::kPoints;                        // 6x6 transform points
constexpr int64_t kMaxWorkspaceBytes = int64_t{1} << 30;   // chunk the batch above this
constexpr int64_t kAlignFloats = 64;                       // buffers start on 256-byte boundaries
constexpr int64_t kMaxSegments = 64;                       // backward weight: depth segments
constexpr int64_t kMinSegmentColumns = 256;                // ... each at least this deep
constexpr int64_t kMaxPartialBytes = int64_t{64} << 20;    // ... and their dU partials at most this

#if defined(__CUDA_ARCH__)
#define NN_WINOGRAD_LOAD(ptr) __ldg(ptr)
#else
#define NN_WINOGRAD_LOAD(ptr) (*(ptr))
#endif

// The 1-D transforms B^T d, G g, A^T m and the adjoints A y, G^T u (conv_winograd_transforms.h, shared
// with the CPU path).
using winograd_transforms::filter_1d;
using winograd_transforms::filter_grad_1d;
using winograd_transforms::input_1d;
using winograd_transforms::output_1d;
using winograd_transforms::output_grad_1d;

// ---- the kernels' per-thread bodies ----

// Offset of (point 0, channel ch, column p) in a [36][S][channels][L] buffer (column indices fit in
// int, checked by the launchers: 32-bit divisions).
NN_HOST_DEVICE_INLINE int64_t point_offset(int64_t ch, int64_t p, int64_t channels, int64_t seg_len) {
  const int s = static_cast<int>(p) / static_cast<int>(seg_len);
  const int64_t q = p - static_cast<int64_t>(s) * seg_len;
  return (s * channels + ch) * seg_len + q;
}

// U[xi][m][k] = (G g G^T)[xi] for the filter g from input channel k to output channel m of the
// problem: w[m][k] (forward: w is (rows, cols, 3, 3)) or w[k][m] rotated by 180 degrees (backward
// data: w is (cols, rows, 3, 3)). One thread per i = m * cols + k (coalesced stores).
struct FilterTransformArgs {
  const float* w;
  float* u;  // [36][rows][cols]
  int64_t rows, cols;
  bool rotate;
};

NN_HOST_DEVICE_INLINE void filter_transform_element(const FilterTransformArgs& a, int64_t i) {
  const int64_t m = i / a.cols, k = i - m * a.cols;
  float g[9];
  if (a.rotate) {
    const float* f = a.w + (k * a.rows + m) * 9;
    NN_WINOGRAD_UNROLL
    for (int t = 0; t < 9; ++t) g[t] = NN_WINOGRAD_LOAD(f + 8 - t);
  } else {
    const float* f = a.w + i * 9;
    NN_WINOGRAD_UNROLL
    for (int t = 0; t < 9; ++t) g[t] = NN_WINOGRAD_LOAD(f + t);
  }
  float t[6][3], u[6][6];
  NN_WINOGRAD_UNROLL
  for (int v = 0; v < 3; ++v) filter_1d(g[v], g[3 + v], g[6 + v], &t[0][v], 3);  // columns: G g
  NN_WINOGRAD_UNROLL
  for (int r = 0; r < 6; ++r) filter_1d(t[r][0], t[r][1], t[r][2], &u[r][0], 1);  // rows: . G^T
  const int64_t plane = a.rows * a.cols;
  NN_WINOGRAD_UNROLL
  for (int xi = 0; xi < kPoints; ++xi) a.u[xi * plane + i] = u[xi / 6][xi % 6];
}

// Tiles of one chunk of images: tile p = (image, th, tw), p < tiles (< 2^31, checked by the
// launchers: 32-bit divisions).
struct TileGrid {
  int64_t tiles_h, tiles_w, tiles;
  NN_HOST_DEVICE_INLINE void locate(int64_t p, int64_t& image, int64_t& th, int64_t& tw) const {
    const int per_image = static_cast<int>(tiles_h * tiles_w), row = static_cast<int>(tiles_w);
    const int index = static_cast<int>(p);
    const int img = index / per_image, rest = index - img * per_image, tile_row = rest / row;
    image = img;
    th = tile_row;
    tw = rest - tile_row * row;
  }
};

// V[xi][s][c][q] = (B^T d B)[xi] for the 6x6 patch d of tile p = s*L + q of channel c of `in`
// (zeros outside the image; all zeros for p >= tiles). One thread per (c, p), p fastest.
struct InputTransformArgs {
  const float* in;  // (images, channels, h, w)
  float* v;         // [36][segments][channels][seg_len]
  int64_t channels, h, w, pad_h, pad_w;
  TileGrid grid;
  int64_t segments, seg_len;  // columns = segments * seg_len >= grid.tiles
};

NN_HOST_DEVICE_INLINE void input_transform_element(const InputTransformArgs& a, int64_t c, int64_t p) {
  float d[6][6];
  if (p < a.grid.tiles) {
    int64_t image, th, tw;
    a.grid.locate(p, image, th, tw);
    const int64_t y0 = th * 4 - a.pad_h, x0 = tw * 4 - a.pad_w;
    const float* plane = a.in + (image * a.channels + c) * a.h * a.w;
    NN_WINOGRAD_UNROLL
    for (int r = 0; r < 6; ++r) {
      const int64_t y = y0 + r;
      const bool row_inside = y >= 0 && y < a.h;
      NN_WINOGRAD_UNROLL
      for (int s = 0; s < 6; ++s) {
        const int64_t x = x0 + s;
        d[r][s] = row_inside && x >= 0 && x < a.w ? NN_WINOGRAD_LOAD(plane + y * a.w + x) : 0.0f;
      }
    }
  } else {
    NN_WINOGRAD_UNROLL
    for (int r = 0; r < 6; ++r)
      NN_WINOGRAD_UNROLL
      for (int s = 0; s < 6; ++s) d[r][s] = 0.0f;
  }
  float t[6][6], v[6][6];
  NN_WINOGRAD_UNROLL
  for (int s = 0; s < 6; ++s) input_1d(d[0][s], d[1][s], d[2][s], d[3][s], d[4][s], d[5][s], &t[0][s], 6);  // B^T d
  NN_WINOGRAD_UNROLL
  for (int r = 0; r < 6; ++r) input_1d(t[r][0], t[r][1], t[r][2], t[r][3], t[r][4], t[r][5], &v[r][0], 1);  // . B
  float* dst = a.v + point_offset(c, p, a.channels, a.seg_len);
  const int64_t point_stride = a.segments * a.channels * a.seg_len;
  NN_WINOGRAD_UNROLL
  for (int xi = 0; xi < kPoints; ++xi) dst[xi * point_stride] = v[xi / 6][xi % 6];
}

// out tile = A^T M A + bias, ReLU for tile p < tiles of output channel o, stored where inside the
// output. M is [36][1][channels][seg_len] (one segment). One thread per (o, p), p fastest.
struct OutputTransformArgs {
  const float* m;
  const float* bias;  // (channels) or nullptr
  float* out;         // (images, channels, h, w)
  int64_t channels, h, w;
  TileGrid grid;
  int64_t seg_len;
  bool relu;
  bool vector_store;  // w % 4 == 0 and out 16-byte aligned: each tile row is one float4
};

NN_HOST_DEVICE_INLINE void output_transform_element(const OutputTransformArgs& a, int64_t o, int64_t p) {
  const float* src = a.m + o * a.seg_len + p;
  const int64_t point_stride = a.channels * a.seg_len;
  float m[6][6];
  NN_WINOGRAD_UNROLL
  for (int xi = 0; xi < kPoints; ++xi) m[xi / 6][xi % 6] = NN_WINOGRAD_LOAD(src + xi * point_stride);
  float t[4][6], y[4][4];
  NN_WINOGRAD_UNROLL
  for (int j = 0; j < 6; ++j) output_1d(m[0][j], m[1][j], m[2][j], m[3][j], m[4][j], m[5][j], &t[0][j], 6);  // A^T M
  NN_WINOGRAD_UNROLL
  for (int r = 0; r < 4; ++r) output_1d(t[r][0], t[r][1], t[r][2], t[r][3], t[r][4], t[r][5], &y[r][0], 1);  // . A
  const float bias = a.bias != nullptr ? NN_WINOGRAD_LOAD(a.bias + o) : 0.0f;
  NN_WINOGRAD_UNROLL
  for (int r = 0; r < 4; ++r)
    NN_WINOGRAD_UNROLL
    for (int s = 0; s < 4; ++s) {
      y[r][s] += bias;
      if (a.relu) y[r][s] = y[r][s] > 0.0f ? y[r][s] : 0.0f;
    }
  int64_t image, th, tw;
  a.grid.locate(p, image, th, tw);
  const int64_t y0 = th * 4, x0 = tw * 4;
  float* dst = a.out + ((image * a.channels + o) * a.h + y0) * a.w + x0;
  NN_WINOGRAD_UNROLL
  for (int r = 0; r < 4; ++r) {
    if (y0 + r >= a.h) break;
#if defined(__CUDA_ARCH__)
    if (a.vector_store) {  // x0 + 3 < w since w % 4 == 0
      *reinterpret_cast<float4*>(dst + r * a.w) = make_float4(y[r][0], y[r][1], y[r][2], y[r][3]);
      continue;
    }
#endif
    NN_WINOGRAD_UNROLL
    for (int s = 0; s < 4; ++s)
      if (x0 + s < a.w) dst[r * a.w + s] = y[r][s];
  }
}

// dM[xi][s][o][q] = (A dY A^T)[xi] for the 4x4 tile dY of tile p = s*L + q of channel o of dy
// (zeros past the output; all zeros for p >= tiles). One thread per (o, p), p fastest.
struct OutputGradTransformArgs {
  const float* dy;  // (images, channels, h, w)
  float* dm;        // [36][segments][channels][seg_len]
  int64_t channels, h, w;
  TileGrid grid;
  int64_t segments, seg_len;
};

NN_HOST_DEVICE_INLINE void output_grad_transform_element(const OutputGradTransformArgs& a, int64_t o, int64_t p) {
  float d[4][4];
  if (p < a.grid.tiles) {
    int64_t image, th, tw;
    a.grid.locate(p, image, th, tw);
    const int64_t y0 = th * 4, x0 = tw * 4;
    const float* plane = a.dy + (image * a.channels + o) * a.h * a.w;
    NN_WINOGRAD_UNROLL
    for (int r = 0; r < 4; ++r)
      NN_WINOGRAD_UNROLL
      for (int s = 0; s < 4; ++s)
        d[r][s] = y0 + r < a.h && x0 + s < a.w ? NN_WINOGRAD_LOAD(plane + (y0 + r) * a.w + x0 + s) : 0.0f;
  } else {
    NN_WINOGRAD_UNROLL
    for (int r = 0; r < 4; ++r)
      NN_WINOGRAD_UNROLL
      for (int s = 0; s < 4; ++s) d[r][s] = 0.0f;
  }
  float t[6][4], m[6][6];
  NN_WINOGRAD_UNROLL
  for (int s = 0; s < 4; ++s) output_grad_1d(d[0][s], d[1][s], d[2][s], d[3][s], &t[0][s], 4);  // A dY
  NN_WINOGRAD_UNROLL
  for (int r = 0; r < 6; ++r) output_grad_1d(t[r][0], t[r][1], t[r][2], t[r][3], &m[r][0], 1);  // . A^T
  float* dst = a.dm + point_offset(o, p, a.channels, a.seg_len);
  const int64_t point_stride = a.segments * a.channels * a.seg_len;
  NN_WINOGRAD_UNROLL
  for (int xi = 0; xi < kPoints; ++xi) dst[xi * point_stride] = m[xi / 6][xi % 6];
}

// Backward weight, after the GEMMs: dU[xi*S][o][c] = sum over segments s, in order, of
// dU[xi*S + s][o][c] (in place, into each point's first segment; one thread per (xi, o, c), so the
// sum is spread over 36x more threads than the final transform has), then dw[o][c] = G^T dU G
// from the first segments (one thread per i = o * C + c).
struct WeightGradFinishArgs {
  float* du;   // [36 * segments][rows][cols]
  float* dw;   // (rows, cols, 3, 3)
  int64_t rows, cols, segments;
};

NN_HOST_DEVICE_INLINE void segment_sum_element(const WeightGradFinishArgs& a, int64_t j) {
  const int64_t plane = a.rows * a.cols;
  const int64_t xi = j / plane, i = j - xi * plane;
  float* first = a.du + xi * a.segments * plane + i;
  float sum = *first;
  for (int64_t s = 1; s < a.segments; ++s) sum += first[s * plane];
  *first = sum;
}

NN_HOST_DEVICE_INLINE void weight_grad_finish_element(const WeightGradFinishArgs& a, int64_t i) {
  const int64_t plane = a.rows * a.cols;
  float u[6][6];
  NN_WINOGRAD_UNROLL
  for (int xi = 0; xi < kPoints; ++xi) u[xi / 6][xi % 6] = NN_WINOGRAD_LOAD(a.du + xi * a.segments * plane + i);
  float t[3][6], g[3][3];
  NN_WINOGRAD_UNROLL
  for (int j = 0; j < 6; ++j) filter_grad_1d(u[0][j], u[1][j], u[2][j], u[3][j], u[4][j], u[5][j], &t[0][j], 6);  // G^T dU
  NN_WINOGRAD_UNROLL
  for (int r = 0; r < 3; ++r) filter_grad_1d(t[r][0], t[r][1], t[r][2], t[r][3], t[r][4], t[r][5], &g[r][0], 1);  // . G
  float* dst = a.dw + i * 9;
  NN_WINOGRAD_UNROLL
  for (int t9 = 0; t9 < 9; ++t9) dst[t9] = g[t9 / 3][t9 % 3];
}

// ---- planning (host) ----

// A forward-like pass: out (n, cout, oh, ow) = conv3x3(in (n, cin, ih, iw)) with padding pad.
struct ForwardProblem {
  int64_t n, cin, cout, ih, iw, oh, ow, pad_h, pad_w;
};

struct ForwardPlan {
  int64_t images;            // per chunk
  int64_t tiles_h, tiles_w;  // per image
  int64_t u_floats, v_floats, m_floats;  // buffer sizes, each a multiple of kAlignFloats
  size_t bytes() const { return static_cast<size_t>(u_floats + v_floats + m_floats) * sizeof(float); }
};

inline ForwardPlan plan_forward(const ForwardProblem& pr, int64_t max_bytes) {
  ForwardPlan plan{};
  plan.tiles_h = ceil_div(pr.oh, 4);
  plan.tiles_w = ceil_div(pr.ow, 4);
  const int64_t per_image_tiles = plan.tiles_h * plan.tiles_w;
  plan.u_floats = round_up(kPoints * pr.cout * pr.cin, kAlignFloats);
  auto size_for = [&](int64_t images, ForwardPlan& p) {
    const int64_t columns = round_up(images * per_image_tiles, 4);
    p.images = images;
    p.v_floats = round_up(kPoints * pr.cin * columns, kAlignFloats);
    p.m_floats = round_up(kPoints * pr.cout * columns, kAlignFloats);
    return static_cast<int64_t>(p.bytes());
  };
  // Images per chunk: as many as fit, then balanced over the chunks.
  const int64_t per_image_bytes = kPoints * per_image_tiles * (pr.cin + pr.cout) * 4;
  const int64_t fixed_bytes = size_for(0, plan) + kPoints * 4 * (pr.cin + pr.cout) * 4;
  int64_t images = std::clamp<int64_t>((max_bytes - fixed_bytes) / per_image_bytes, 1, pr.n);
  images = ceil_div(pr.n, ceil_div(pr.n, images));
  while (images > 1 && size_for(images, plan) > max_bytes) --images;
  size_for(images, plan);
  return plan;
}

struct WeightGradPlan {
  int64_t images;            // per chunk
  int64_t tiles_h, tiles_w;  // per image
  int64_t segments;          // S
  int64_t du_floats, v_floats, m_floats;
  size_t bytes() const { return static_cast<size_t>(du_floats + v_floats + m_floats) * sizeof(float); }
};

// Segment length for `tiles` columns in `segments` segments (a multiple of 4).
inline int64_t segment_length(int64_t tiles, int64_t segments) { return round_up(ceil_div(tiles, segments), 4); }

// The depth segments of the 36 products dU (o x c) over `tiles` columns: the S that minimises an
// estimate of the GEMM time for the tiles sgemm would pick. Each SM runs q = ceil(blocks / SMs)
// blocks of tile^2 * (depth + 64) FMAs (64: a block's fixed cost, prologue and epilogue), at a
// rate that grows with the threads resident on it up to 512 (16 warps hide the latencies of the
// SIMT SGEMM). More segments: more, shallower blocks and more partials for the final sum
// (kMaxPartialBytes bounds those). Ties (within 2%) go to fewer segments.
inline int64_t choose_segments(int64_t o, int64_t c, int64_t tiles, int sm_count) {
  const int64_t max_segments = std::clamp<int64_t>(kMaxPartialBytes / (kPoints * o * c * 4), 1, kMaxSegments);
  int64_t best = 1;
  double best_cost = 0;
  for (int64_t s = 1; s <= max_segments; ++s) {
    const int64_t len = segment_length(tiles, s);
    if (s > 1 && len < kMinSegmentColumns) break;
    const SgemmPlan plan = plan_sgemm(o, c, len, kPoints * s, sm_count);
    const int64_t tile = plan.large_tiles ? 128 : 64, threads = plan.large_tiles ? 256 : 128;
    const int64_t resident_per_sm = plan.large_tiles ? 2 : 4;
    const int64_t blocks = ceil_div(o, tile) * ceil_div(c, tile) * kPoints * s * plan.splits;
    const int64_t per_sm = ceil_div(blocks, sm_count);
    const double rate = std::min(1.0, static_cast<double>(std::min(per_sm, resident_per_sm) * threads) / 512.0);
    double cost = static_cast<double>(per_sm * tile * tile * (plan.k_per_split + 64)) / rate;
    if (plan.splits > 1) cost *= 1.25;  // sgemm's own split-K: a scratch buffer and a reduction pass
    if (s == 1 || cost < best_cost * 0.98) {
      best = s;
      best_cost = cost;
    }
  }
  return best;
}

inline WeightGradPlan plan_weight_grad(const Conv2dGeometry& g, int sm_count, int64_t max_bytes) {
  WeightGradPlan plan{};
  plan.tiles_h = ceil_div(g.oh, 4);
  plan.tiles_w = ceil_div(g.ow, 4);
  const int64_t per_image_tiles = plan.tiles_h * plan.tiles_w;
  auto size_for = [&](int64_t images, WeightGradPlan& p) {
    p.images = images;
    p.segments = choose_segments(g.o, g.c, std::max<int64_t>(images * per_image_tiles, 1), sm_count);
    const int64_t columns = p.segments * segment_length(images * per_image_tiles, p.segments);
    p.du_floats = round_up(kPoints * p.segments * g.o * g.c, kAlignFloats);
    p.v_floats = round_up(kPoints * g.c * columns, kAlignFloats);
    p.m_floats = round_up(kPoints * g.o * columns, kAlignFloats);
    return static_cast<int64_t>(p.bytes());
  };
  const int64_t per_image_bytes = kPoints * per_image_tiles * (g.c + g.o) * 4;
  const int64_t fixed_bytes =
      std::max(kMaxPartialBytes, kPoints * g.o * g.c * 4) + kPoints * (g.c + g.o) * (4 * kMaxSegments + 2 * kAlignFloats) * 4;
  int64_t images = std::clamp<int64_t>((max_bytes - fixed_bytes) / per_image_bytes, 1, g.n);
  images = ceil_div(g.n, ceil_div(g.n, images));
  while (images > 1 && size_for(images, plan) > max_bytes) --images;
  size_for(images, plan);
  return plan;
}

// ---- the pass drivers, on an executor (the .cu's GPU one, or a test's CPU one) ----
// Exec provides: filter_transform(FilterTransformArgs, count), input_transform(InputTransformArgs,
// channels, columns), output_transform(OutputTransformArgs, channels, columns),
// output_grad_transform(OutputGradTransformArgs, channels, columns), segment_sum(
// WeightGradFinishArgs, count), weight_grad_finish(WeightGradFinishArgs, count), each running its
// *_element over the index space; and gemm(...)
// with nn::cuda::sgemm's arguments after the stream (trans_a false).

template <class Exec>
void run_forward(Exec& ex, const ForwardProblem& pr, const ForwardPlan& plan, const float* in, const float* w,
                 bool rotate, const float* bias, bool relu, float* out, bool out_aligned16, float* workspace) {
  float* u = workspace;
  float* v = u + plan.u_floats;
  float* m = v + plan.v_floats;
  ex.filter_transform(FilterTransformArgs{w, u, pr.cout, pr.cin, rotate}, pr.cout * pr.cin);
  const int64_t per_image_tiles = plan.tiles_h * plan.tiles_w;
  for (int64_t n0 = 0; n0 < pr.n; n0 += plan.images) {
    const int64_t images = std::min(plan.images, pr.n - n0);
    const TileGrid grid{plan.tiles_h, plan.tiles_w, images * per_image_tiles};
    const int64_t columns = round_up(grid.tiles, 4);  // one segment
    InputTransformArgs ia{};
    ia.in = in + n0 * pr.cin * pr.ih * pr.iw;
    ia.v = v;
    ia.channels = pr.cin;
    ia.h = pr.ih;
    ia.w = pr.iw;
    ia.pad_h = pr.pad_h;
    ia.pad_w = pr.pad_w;
    ia.grid = grid;
    ia.segments = 1;
    ia.seg_len = columns;
    ex.input_transform(ia, pr.cin, columns);
    // M[xi] (cout x columns) = U[xi] (cout x cin) * V[xi] (cin x columns).
    ex.gemm(false, pr.cout, columns, pr.cin, 1.0f, u, pr.cin, pr.cout * pr.cin, v, columns, pr.cin * columns, 0.0f,
            m, columns, pr.cout * columns, kPoints);
    OutputTransformArgs oa{};
    oa.m = m;
    oa.bias = bias;
    oa.out = out + n0 * pr.cout * pr.oh * pr.ow;
    oa.channels = pr.cout;
    oa.h = pr.oh;
    oa.w = pr.ow;
    oa.grid = grid;
    oa.seg_len = columns;
    oa.relu = relu;
    // The chunk's base stays 16-byte aligned: cout * oh * ow is a multiple of 4 when ow is.
    oa.vector_store = pr.ow % 4 == 0 && out_aligned16;
    ex.output_transform(oa, pr.cout, grid.tiles);
  }
}

template <class Exec>
void run_weight_grad(Exec& ex, const Conv2dGeometry& g, const WeightGradPlan& plan, const float* dy, const float* x,
                     float* dw, float* workspace) {
  float* du = workspace;
  float* v = du + plan.du_floats;
  float* dm = v + plan.v_floats;
  const int64_t per_image_tiles = plan.tiles_h * plan.tiles_w;
  const int64_t segments = plan.segments;
  for (int64_t n0 = 0; n0 < g.n; n0 += plan.images) {
    const int64_t images = std::min(plan.images, g.n - n0);
    const TileGrid grid{plan.tiles_h, plan.tiles_w, images * per_image_tiles};
    const int64_t seg_len = segment_length(grid.tiles, segments);
    InputTransformArgs ia{};
    ia.in = x + n0 * g.c * g.h * g.w;
    ia.v = v;
    ia.channels = g.c;
    ia.h = g.h;
    ia.w = g.w;
    ia.pad_h = g.pad_h;
    ia.pad_w = g.pad_w;
    ia.grid = grid;
    ia.segments = segments;
    ia.seg_len = seg_len;
    ex.input_transform(ia, g.c, segments * seg_len);
    OutputGradTransformArgs da{};
    da.dy = dy + n0 * g.o * g.oh * g.ow;
    da.dm = dm;
    da.channels = g.o;
    da.h = g.oh;
    da.w = g.ow;
    da.grid = grid;
    da.segments = segments;
    da.seg_len = seg_len;
    ex.output_grad_transform(da, g.o, segments * seg_len);
    // dU[b] (o x c) (+)= dM[b] (o x seg_len) * V[b]^T, b = xi * S + s; later chunks accumulate.
    ex.gemm(true, g.o, g.c, seg_len, 1.0f, dm, seg_len, g.o * seg_len, v, seg_len, g.c * seg_len,
            n0 == 0 ? 0.0f : 1.0f, du, g.c, g.o * g.c, kPoints * segments);
  }
  const WeightGradFinishArgs fa{du, dw, g.o, g.c, segments};
  if (segments > 1) ex.segment_sum(fa, kPoints * g.o * g.c);
  ex.weight_grad_finish(fa, g.o * g.c);
}

// The forward-like problem of convolution g: g itself for the forward pass,
// g.input_gradient_as_forward() for backward data.
inline ForwardProblem forward_problem(const Conv2dGeometry& g) {
  return ForwardProblem{g.n, g.c, g.o, g.h, g.w, g.oh, g.ow, g.pad_h, g.pad_w};
}

}  // namespace winograd
}  // namespace nn::cuda
