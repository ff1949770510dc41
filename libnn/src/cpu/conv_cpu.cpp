// 2-D convolution on the CPU, forward and both backward passes, as im2col + GEMM (f32: the
// library's packed GEMM, gemm_cpu.h, with the bias fused into its epilogue; f64, the tests'
// reference precision: Eigen).
// Layout: x (N,C,H,W), w (O,C,KH,KW) seen as the row-major matrix (O, CKK), y (N,O,OH,OW); all
// dense. With P = OH*OW and CKK = C*KH*KW, per image n:
//   forward          y_n (O,P)      = W (O,CKK) * col_n (CKK,P) + bias         2*O*P*CKK FLOPs
//   backward input   dcol (CKK,P)   = W^T * dy_n, then col2im adds it into dx_n  2*O*P*CKK FLOPs
//   backward weight  dW (O,CKK)    += dy_n * col_n^T, summed over the batch      2*O*P*CKK FLOPs
// col_n holds the receptive field of every output position (one row per (c, i, j) tap). It is
// built for a band of output rows at a time (about 1 MiB), so the workspace stays small whatever
// the image size and the band is still in cache when the GEMM reads it. Bytes: x, w, y once each
// plus the col band written and read once (KH*KW/(stride^2) times the input).
// A 1x1, stride-1, unpadded conv is a plain GEMM on x itself: no col at all.
//
// Threads: the work is cut into items, (image, band) pairs for forward and backward weight, whole
// images for backward input (its bands overlap in dx). With at least as many items as threads,
// each thread takes a contiguous run of items with its own col workspace and serial GEMMs
// (backward weight sums one dW partial per thread at the end). Otherwise the items go one by one:
// im2col splits over channels, then each GEMM over its output rows (forward, backward weight: output
// channels; backward input: input channels, each thread folding its own back with col2im). These
// GEMMs run inside our parallel regions, where Eigen stays serial. Passes under kParallelFlops run
// on the calling thread.
#include <Eigen/Core>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"
#include "cpu/conv_few_channels_cpu.h"
#include "cpu/conv_winograd_cpu.h"
#include "cpu/gemm_cpu.h"

namespace nn::cpu {
namespace {

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using MatrixView = Eigen::Map<RowMatrix<T>, 0, Eigen::OuterStride<>>;

// c (m x n, row stride ldc) = a (m x k) * b (k x n), or c += when accumulate, + row_bias[i] on row
// i, then max(0, .) if relu; a and b are strided views (element (i, j) at p[i * row_stride + j *
// col_stride]). On the calling thread.
void matmul_into(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                 int64_t b_rs, int64_t b_cs, float* c, int64_t ldc, bool accumulate, const float* row_bias,
                 bool relu = false) {
  GemmEpilogue e;
  e.beta = accumulate ? 1.0f : 0.0f;
  e.row_bias = row_bias;
  e.relu = relu;
  sgemm(m, n, k, MatrixRef{a, a_rs, a_cs}, MatrixRef{b, b_rs, b_cs}, c, ldc, e);
}

void matmul_into(int64_t m, int64_t n, int64_t k, const double* a, int64_t a_rs, int64_t a_cs, const double* b,
                 int64_t b_rs, int64_t b_cs, double* c, int64_t ldc, bool accumulate, const double* row_bias,
                 bool relu = false) {
  using Strided = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
  const Eigen::Map<const RowMatrix<double>, 0, Strided> am(a, m, k, Strided(a_rs, a_cs)), bm(b, k, n, Strided(b_rs, b_cs));
  MatrixView<double> cm(c, m, n, Eigen::OuterStride<>(ldc));
  if (!accumulate) {
    if (row_bias) cm = Eigen::Map<const Eigen::VectorXd>(row_bias, m).replicate(1, n);
    else cm.setZero();
  } else if (row_bias) {
    cm.colwise() += Eigen::Map<const Eigen::VectorXd>(row_bias, m);
  }
  cm.noalias() += am * bm;
  if (relu) cm = cm.cwiseMax(0.0);
}

// A col band holds about kBandElements (1 MiB of f32: it stays in L2 between im2col and the GEMM
// that reads it) but at least kMinBandPositions output positions, so that each GEMM is long enough
// to pay for packing W again (the measurements: bench/README.md, "Measurements behind choices in
// conv_cpu.cpp").
constexpr int64_t kBandElements = int64_t{1} << 18;
constexpr int64_t kMinBandPositions = 512;
// Below this many FLOPs a whole pass runs on one thread.
constexpr int64_t kParallelFlops = int64_t{1} << 22;

// The sizes every pass derives from the geometry.
struct ConvPlan {
  int64_t ckk, p, in_image, out_image;
  int64_t band_rows, bands;  // each image's output rows in `bands` bands of band_rows (the last shorter)
  bool direct;               // 1x1, stride 1, no padding: col_n is x_n itself
  bool parallel;             // enough work to wake the threads

  explicit ConvPlan(const Conv2dGeometry& g)
      : ckk(g.c * g.kh * g.kw),
        p(g.oh * g.ow),
        in_image(g.c * g.h * g.w),
        out_image(g.o * g.oh * g.ow),
        direct(g.kh == 1 && g.kw == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 &&
               g.pad_w == 0),
        parallel(get_num_threads() > 1 && 2 * g.n * g.o * p * ckk >= kParallelFlops) {
    const int64_t oh = std::max<int64_t>(1, g.oh), ow = std::max<int64_t>(1, g.ow);
    const int64_t rows = std::clamp<int64_t>(
        std::max(kBandElements / std::max<int64_t>(1, ckk * ow), (kMinBandPositions + ow - 1) / ow), 1, oh);
    bands = direct ? 1 : (oh + rows - 1) / rows;
    // With fewer images than threads the threads split bands: make their number a multiple of
    // the thread count where the rows allow, then even out the band heights.
    const int64_t threads = get_num_threads();
    if (bands > 1 && g.n < threads) bands = std::min(oh, (bands + threads - 1) / threads * threads);
    band_rows = (oh + bands - 1) / bands;
    bands = (oh + band_rows - 1) / band_rows;
  }

  // Output rows [oh0, oh1) of band b.
  int64_t band_begin(int64_t b) const { return b * band_rows; }
  int64_t band_end(int64_t b, const Conv2dGeometry& g) const { return std::min(g.oh, (b + 1) * band_rows); }
};

// This thread's scratch buffer of at least n elements, reused across calls (it only grows).
template <typename T>
T* workspace(int64_t n) {
  thread_local std::vector<T> buffer;
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// The output columns [lo, hi) whose kernel tap j lands inside the input row (0 <= iw < W); the
// columns outside it read padding.
struct ColumnRange {
  int64_t lo, hi;
};
ColumnRange valid_columns(const Conv2dGeometry& g, int64_t j) {
  const int64_t lo = std::min(g.ow, std::max<int64_t>(0, ceil_div(g.pad_w - j, g.stride_w)));
  const int64_t last = g.w - 1 + g.pad_w - j;  // ow * stride_w <= last
  const int64_t hi = last < 0 ? 0 : std::min(g.ow, last / g.stride_w + 1);
  return {lo, std::max(lo, hi)};
}

// col (CKK, band) <- the receptive fields of output rows [oh0, oh1) of one image x_n (C,H,W).
// Split over channels when not already inside a parallel region.
template <typename T>
void im2col(const T* x, T* col, const Conv2dGeometry& g, int64_t oh0, int64_t oh1) {
  const int64_t band = (oh1 - oh0) * g.ow;
  const int64_t per_channel = std::max<int64_t>(1, g.kh * g.kw * band);
  parallel_for(0, g.c, std::max<int64_t>(1, 32768 / per_channel), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const T* xc = x + c * g.h * g.w;
      for (int64_t i = 0; i < g.kh; ++i) {
        for (int64_t j = 0; j < g.kw; ++j) {
          T* row = col + ((c * g.kh + i) * g.kw + j) * band;
          const ColumnRange cols = valid_columns(g, j);
          for (int64_t oh = oh0; oh < oh1; ++oh) {
            T* out = row + (oh - oh0) * g.ow;
            const int64_t ih = oh * g.stride_h - g.pad_h + i;
            if (ih < 0 || ih >= g.h) {
              std::fill(out, out + g.ow, T(0));
              continue;
            }
            std::fill(out, out + cols.lo, T(0));
            const T* src = xc + ih * g.w + cols.lo * g.stride_w - g.pad_w + j;
            const int64_t count = cols.hi - cols.lo;
            if (g.stride_w == 1) {
              std::memcpy(out + cols.lo, src, static_cast<size_t>(count) * sizeof(T));
            } else {
              for (int64_t k = 0; k < count; ++k) out[cols.lo + k] = src[k * g.stride_w];
            }
            std::fill(out + cols.hi, out + g.ow, T(0));
          }
        }
      }
    }
  });
}

// dx_n[c0:c1] (C,H,W) += the col rows of channels [c0, c1) (their (c, i, j) taps, starting at
// `col`) for output rows [oh0, oh1), folded back onto the input: the adjoint of im2col. Channels
// are independent, so threads that own different channels never write the same element.
template <typename T>
void col2im(const T* col, T* dx, const Conv2dGeometry& g, int64_t oh0, int64_t oh1, int64_t c0, int64_t c1) {
  const int64_t band = (oh1 - oh0) * g.ow;
  {
    for (int64_t c = c0; c < c1; ++c) {
      T* dxc = dx + c * g.h * g.w;
      for (int64_t i = 0; i < g.kh; ++i) {
        for (int64_t j = 0; j < g.kw; ++j) {
          const T* row = col + (((c - c0) * g.kh + i) * g.kw + j) * band;
          const ColumnRange cols = valid_columns(g, j);
          for (int64_t oh = oh0; oh < oh1; ++oh) {
            const int64_t ih = oh * g.stride_h - g.pad_h + i;
            if (ih < 0 || ih >= g.h) continue;
            const T* in = row + (oh - oh0) * g.ow + cols.lo;
            T* dst = dxc + ih * g.w + cols.lo * g.stride_w - g.pad_w + j;
            const int64_t count = cols.hi - cols.lo;
            if (g.stride_w == 1) {
              for (int64_t k = 0; k < count; ++k) dst[k] += in[k];
            } else {
              for (int64_t k = 0; k < count; ++k) dst[k * g.stride_w] += in[k];
            }
          }
        }
      }
    }
  }
}

// How many threads take separate work items (whole images, or (image, band) pairs): each then
// runs serial GEMMs on its own workspace, with no synchronisation until the end. 1 means the items
// run one after another, each split over the threads (split_rows), or that there is too little
// work to wake the threads (a parallel region costs microseconds, far more when another process
// holds a core).
int64_t item_chunks(int64_t items, const ConvPlan& plan) {
  const int64_t threads = get_num_threads();
  return plan.parallel && items >= threads ? threads : 1;
}

// Calls f(chunk, item) for items [0, items) cut into `chunks` contiguous ranges, one per thread.
template <typename F>
void for_each_item(int64_t items, int64_t chunks, const F& f) {
  parallel_for(0, chunks, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k)
      for (int64_t item = items * k / chunks; item < items * (k + 1) / chunks; ++item) f(k, item);
  });
}

// Runs f(r0, r1) over [0, rows) in one contiguous range per thread, cut on multiples of `align`.
// One GEMM is split this way (by output rows) rather than by Eigen's own threading, which
// synchronises the threads at every cache block: as fast on an idle machine, but much slower with
// one core busy elsewhere (bench/README.md, "Measurements behind choices in conv_cpu.cpp").
template <typename F>
void split_rows(int64_t rows, int64_t align, const F& f) {
  const int64_t threads = get_num_threads();
  const int64_t per = std::max<int64_t>(align, ((rows + threads - 1) / threads + align - 1) / align * align);
  parallel_for(0, (rows + per - 1) / per, 1,
               [&](int64_t k0, int64_t k1) { f(k0 * per, std::min(rows, k1 * per)); });
}

// A col band: ckk rows of `band` output positions, row r at data + r * stride.
template <typename T>
struct ColBand {
  const T* data;
  int64_t stride;
};

// The col band of output rows [oh0, oh1) of image x_n: x_n itself for a direct conv, else built
// in this thread's workspace.
template <typename T>
ColBand<T> col_band(const T* xn, const Conv2dGeometry& g, const ConvPlan& plan, int64_t oh0, int64_t oh1) {
  const int64_t band = (oh1 - oh0) * g.ow;
  if (plan.direct) return {xn + oh0 * g.ow, plan.p};
  T* col = workspace<T>(plan.ckk * band);
  im2col(xn, col, g, oh0, oh1);
  return {col, band};
}

// The weights (O, CKK) packed for the f32 GEMM when they will be used for several items; none
// for f64 (Eigen) or a single use.
std::unique_ptr<PackedA> pack_weights(const float* w, int64_t o, int64_t ckk, bool reused) {
  return reused ? std::make_unique<PackedA>(o, ckk, MatrixRef{w, ckk, 1}) : nullptr;
}
std::unique_ptr<PackedA> pack_weights(const double*, int64_t, int64_t, bool) { return nullptr; }

// Output rows per GEMM split: a multiple of the GEMM's register tile (6 rows) and of Eigen's (8).
constexpr int64_t kRowAlign = 24;

// ---- forward: y_n = W col_n + bias ----

template <typename T>
void conv2d_forward_typed(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y, const Conv2dGeometry& g,
                          bool relu) {
  const ConvPlan plan(g);
  const T* xp = x.data<T>();
  const T* bp = bias.defined() ? bias.data<T>() : nullptr;
  const T* wp = w.data<T>();
  T* yp = y.data<T>();
  // With one thread per item, W is packed once for all of them (f32).
  const int64_t items = g.n * plan.bands;
  const int64_t chunks = item_chunks(items, plan);
  const bool whole_items = chunks > 1 || !plan.parallel;
  const auto packed = pack_weights(wp, g.o, plan.ckk, whole_items && items > 1);
  // Output channels [o0, o1) of the band of one item: y rows (O, P) at this band's columns.
  auto forward = [&](int64_t item, const ColBand<T>& col, int64_t o0, int64_t o1) {
    const int64_t n = item / plan.bands, b = item % plan.bands;
    const int64_t oh0 = plan.band_begin(b), band = (plan.band_end(b, g) - oh0) * g.ow;
    T* out = yp + n * plan.out_image + o0 * plan.p + oh0 * g.ow;
    if constexpr (std::is_same_v<T, float>) {
      if (packed && o0 == 0 && o1 == g.o) {
        GemmEpilogue e;
        e.row_bias = bp;
        e.relu = relu;
        sgemm_packed(*packed, band, MatrixRef{col.data, col.stride, 1}, out, plan.p, e);
        return;
      }
    }
    matmul_into(o1 - o0, band, plan.ckk, wp + o0 * plan.ckk, plan.ckk, 1, col.data, col.stride, 1, out, plan.p, false,
                bp ? bp + o0 : nullptr, relu);
  };
  auto col_of = [&](int64_t item) {
    const int64_t b = item % plan.bands;
    return col_band(xp + item / plan.bands * plan.in_image, g, plan, plan.band_begin(b), plan.band_end(b, g));
  };
  // Bands write disjoint rows of y: (image, band) pairs are independent items.
  if (whole_items) {
    for_each_item(items, chunks, [&](int64_t, int64_t item) { forward(item, col_of(item), 0, g.o); });
    return;
  }
  for (int64_t item = 0; item < items; ++item) {
    const ColBand<T> col = col_of(item);
    split_rows(g.o, kRowAlign, [&](int64_t o0, int64_t o1) { forward(item, col, o0, o1); });
  }
}

// ---- backward input: dx_n = col2im(W^T dy_n) ----

// For stride 1 (padding at most kernel - 1) the input gradient is itself a forward convolution:
// dx = conv(dy, w flipped in both spatial axes with O and C swapped, padding kernel - 1 - pad).
// Its GEMM has depth O*KH*KW instead of O and no col2im (which adds KH*KW partial sums per input
// element): with few output channels (O = 16 at VGG16 width 1/4) the GEMM + col2im path spends
// most of its time outside the micro-kernel.
bool backward_input_as_forward(const Conv2dGeometry& g) {
  return g.stride_h == 1 && g.stride_w == 1 && g.pad_h <= g.kh - 1 && g.pad_w <= g.kw - 1 && g.o < 64 &&
         !(g.kh == 1 && g.kw == 1);
}

template <typename T>
void conv2d_forward_typed(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y, const Conv2dGeometry& g,
                          bool relu);

template <typename T>
void backward_input_by_forward(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dGeometry& g) {
  Tensor flipped = empty({g.c, g.o, g.kh, g.kw}, dy.dtype());
  const T* wp = w.data<T>();
  T* fp = flipped.data<T>();
  for (int64_t o = 0; o < g.o; ++o)
    for (int64_t c = 0; c < g.c; ++c)
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j)
          fp[((c * g.o + o) * g.kh + i) * g.kw + j] = wp[((o * g.c + c) * g.kh + (g.kh - 1 - i)) * g.kw + (g.kw - 1 - j)];
  conv2d_forward_typed<T>(dy, flipped, Tensor(), dx, g.input_gradient_as_forward(), false);
}

template <typename T>
void conv2d_backward_input_typed(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dGeometry& g) {
  if (backward_input_as_forward(g)) return backward_input_by_forward<T>(dy, w, dx, g);
  const ConvPlan plan(g);
  const T* dyp = dy.data<T>();
  const T* wp = w.data<T>();
  T* dxp = dx.data<T>();
  const int64_t taps = g.kh * g.kw, plane = g.h * g.w;
  // Input channels [c0, c1) of dx_n: their rows of dcol = W^T dy_n need only their columns of W,
  // and fold back onto those channels alone.
  auto input_grad = [&](int64_t n, int64_t c0, int64_t c1) {
    T* dxn = dxp + n * plan.in_image;
    const int64_t r0 = c0 * taps, rows = (c1 - c0) * taps;
    if (!plan.direct) std::fill(dxn + c0 * plane, dxn + c1 * plane, T(0));
    for (int64_t b = 0; b < plan.bands; ++b) {
      const int64_t oh0 = plan.band_begin(b), oh1 = plan.band_end(b, g), band = (oh1 - oh0) * g.ow;
      const T* grad = dyp + n * plan.out_image + oh0 * g.ow;  // (O, band), row stride P
      // W^T's rows [r0, r0 + rows): element (r, o) = w[o * ckk + r0 + r].
      if (plan.direct) {
        // Output positions are input positions: the product lands in dx directly.
        matmul_into(rows, band, g.o, wp + r0, 1, plan.ckk, grad, plan.p, 1, dxn + c0 * plane + oh0 * g.ow, plan.p,
                    false, static_cast<const T*>(nullptr));
      } else {
        T* dcol = workspace<T>(rows * band);
        matmul_into(rows, band, g.o, wp + r0, 1, plan.ckk, grad, plan.p, 1, dcol, band, false,
                    static_cast<const T*>(nullptr));
        col2im(dcol, dxn, g, oh0, oh1, c0, c1);
      }
    }
  };
  // Neighbouring bands overlap in dx (a kernel spans rows of both), so items are whole images;
  // with fewer images than threads, the threads split each image's channels.
  const int64_t chunks = item_chunks(g.n, plan);
  if (chunks > 1 || !plan.parallel) {
    for_each_item(g.n, chunks, [&](int64_t, int64_t n) { input_grad(n, 0, g.c); });
    return;
  }
  for (int64_t n = 0; n < g.n; ++n) split_rows(g.c, 1, [&](int64_t c0, int64_t c1) { input_grad(n, c0, c1); });
}

// ---- backward weight: dW = sum_n dy_n col_n^T ----

template <typename T>
void conv2d_backward_weight_typed(const Tensor& dy, const Tensor& x, Tensor& dw, const Conv2dGeometry& g) {
  const ConvPlan plan(g);
  const T* dyp = dy.data<T>();
  const T* xp = x.data<T>();
  T* dwp = dw.data<T>();
  const int64_t wsize = g.o * plan.ckk;
  // Output channels [o0, o1) of one item's contribution, added into the accumulator acc (O, CKK):
  // acc += dy band (o1-o0, band) * col^T (band, CKK).
  auto weight_grad = [&](T* acc, int64_t item, const ColBand<T>& col, int64_t o0, int64_t o1) {
    const int64_t n = item / plan.bands, b = item % plan.bands;
    const int64_t oh0 = plan.band_begin(b), band = (plan.band_end(b, g) - oh0) * g.ow;
    matmul_into(o1 - o0, plan.ckk, band, dyp + n * plan.out_image + o0 * plan.p + oh0 * g.ow, plan.p, 1, col.data, 1,
                col.stride, acc + o0 * plan.ckk, plan.ckk, true, static_cast<const T*>(nullptr));
  };
  auto col_of = [&](int64_t item) {
    const int64_t b = item % plan.bands;
    return col_band(xp + item / plan.bands * plan.in_image, g, plan, plan.band_begin(b), plan.band_end(b, g));
  };
  std::fill(dwp, dwp + wsize, T(0));
  const int64_t items = g.n * plan.bands;
  const int64_t chunks = item_chunks(items, plan);
  if (chunks == 1 && plan.parallel) {
    for (int64_t item = 0; item < items; ++item) {
      const ColBand<T> col = col_of(item);
      split_rows(g.o, kRowAlign, [&](int64_t o0, int64_t o1) { weight_grad(dwp, item, col, o0, o1); });
    }
    return;
  }
  // Every item adds into all of dW: one accumulator per thread, the first is dw itself.
  std::vector<T> partials(static_cast<size_t>((chunks - 1) * wsize), T(0));
  for_each_item(items, chunks, [&](int64_t k, int64_t item) {
    weight_grad(k == 0 ? dwp : partials.data() + (k - 1) * wsize, item, col_of(item), 0, g.o);
  });
  if (chunks > 1) {
    parallel_for(0, wsize, 32768, [&](int64_t i0, int64_t i1) {
      for (int64_t k = 1; k < chunks; ++k) {
        const T* part = partials.data() + (k - 1) * wsize;
        for (int64_t i = i0; i < i1; ++i) dwp[i] += part[i];
      }
    });
  }
}

std::atomic<bool> weight_cache_on{false};

// The Winograd transforms of forward weights, while nn::set_conv_weight_cache(true): one entry per
// weight (its storage and offset), valid while the storage lives and its version counter has not
// moved (every in-place write through nn bumps it, the optimizers' too).
class WeightCache {
 public:
  std::shared_ptr<WinogradForwardWeights> get(const Tensor& w, int64_t O, int64_t C) {
    const Key key{w.storage().get(), w.offset()};
    const uint64_t version = w.version();
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    if (it != entries_.end() && !it->second.storage.expired() && it->second.version == version &&
        it->second.transformed->o == O && it->second.transformed->c == C)
      return it->second.transformed;
    for (auto e = entries_.begin(); e != entries_.end();) e = e->second.storage.expired() ? entries_.erase(e) : std::next(e);
    Entry entry{w.storage(), version, winograd_forward_weights(w.contiguous().data<float>(), O, C)};
    auto transformed = entry.transformed;
    entries_[key] = std::move(entry);
    return transformed;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.clear();
  }

 private:
  using Key = std::pair<const Storage*, int64_t>;
  struct Entry {
    std::weak_ptr<Storage> storage;
    uint64_t version;
    std::shared_ptr<WinogradForwardWeights> transformed;
  };
  std::mutex mu_;
  std::map<Key, Entry> entries_;
};

WeightCache& weight_cache() {
  static WeightCache cache;
  return cache;
}

// f32 3x3 stride-1 convolutions with enough channels go to Winograd F(4x4, 3x3)
// (conv_winograd_cpu.h), all three passes: about 4x fewer multiplies, relative error <= 1e-4 on
// VGG16's layers. With the weight cache on, the forward pass transforms each weight once. The
// forward of 1-4 input channels with a 3x3 kernel takes the direct kernel of
// conv_few_channels_cpu.h instead (VGG's first layer: no im2col of depth 27, and the pool made
// before anything is stored). Returns false (nothing done) where neither applies.
bool specialised_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y, const Conv2dGeometry& g,
                         bool relu, bool max_pool_2x2) {
  if (x.dtype() != DType::f32) return false;
  if (few_channels_applicable(g)) {
    conv_few_channels_forward(x.data<float>(), w.data<float>(), bias.defined() ? bias.data<float>() : nullptr, relu,
                              y.data<float>(), g, max_pool_2x2);
    return true;
  }
  const bool cache = weight_cache_on.load(std::memory_order_relaxed);
  if (!winograd_applicable(g, cache)) return false;
  std::shared_ptr<WinogradForwardWeights> transformed;
  if (cache) transformed = weight_cache().get(w, g.o, g.c);
  winograd_conv2d_forward(x.data<float>(), w.data<float>(), bias.defined() ? bias.data<float>() : nullptr, relu,
                          y.data<float>(), g, transformed.get(), max_pool_2x2);
  return true;
}

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y, const Conv2dGeometry& g,
                    bool relu) {
  if (specialised_forward(x, w, bias, y, g, relu, false)) return;
  dispatch_float(x.dtype(), "conv2d_forward",
                 [&](auto tag) { conv2d_forward_typed<decltype(tag)>(x, w, bias, y, g, relu); });
}

// The convolution's 2x2 max pool: in Winograd's output transform or the few-channel kernel's
// epilogue where they apply (the full-size output is never written: one pass over the activation
// fewer), else the convolution into a temporary and the max pool's kernel.
void conv2d_max_pool_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y, const Conv2dGeometry& g,
                             bool relu) {
  if (specialised_forward(x, w, bias, y, g, relu, /*max_pool_2x2=*/true)) return;
  Tensor full = empty({g.n, g.o, g.oh, g.ow}, x.dtype());
  conv2d_forward(x, w, bias, full, g, relu);
  Tensor no_argmax;
  kernel_table(DeviceType::cpu)
      .max_pool2d_forward(full, y, no_argmax, Pool2dGeometry::from(full.shape(), {2, 2}, {2, 2}, {0, 0}, false, true));
}

void conv2d_backward_input(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dGeometry& g) {
  if (dy.dtype() == DType::f32 && winograd_applicable(g)) {
    winograd_conv2d_backward_input(dy.data<float>(), w.data<float>(), dx.data<float>(), g);
    return;
  }
  dispatch_float(dy.dtype(), "conv2d_backward_input",
                 [&](auto tag) { conv2d_backward_input_typed<decltype(tag)>(dy, w, dx, g); });
}

void conv2d_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dw, const Conv2dGeometry& g) {
  if (dy.dtype() == DType::f32 && winograd_backward_weight_applicable(g)) {
    winograd_conv2d_backward_weight(dy.data<float>(), x.data<float>(), dw.data<float>(), g);
    return;
  }
  dispatch_float(dy.dtype(), "conv2d_backward_weight",
                 [&](auto tag) { conv2d_backward_weight_typed<decltype(tag)>(dy, x, dw, g); });
}

}  // namespace

void register_conv_cpu(KernelTable& t) {
  t.conv2d_forward = conv2d_forward;
  t.conv2d_max_pool_forward = conv2d_max_pool_forward;
  t.conv2d_backward_input = conv2d_backward_input;
  t.conv2d_backward_weight = conv2d_backward_weight;
}

}  // namespace nn::cpu

namespace nn {

void set_conv_weight_cache(bool on) {
  cpu::weight_cache_on.store(on);
  if (!on) cpu::weight_cache().clear();
}

bool conv_weight_cache() { return cpu::weight_cache_on.load(); }

}  // namespace nn
