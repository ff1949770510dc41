// 2-D pooling on the CPU, forward and backward: max (with the argmax of each window as a flat
// index h*W+w into its input plane, as PyTorch), average (PyTorch's padding and count_include_pad
// rules) and adaptive average (PyTorch's floor/ceil windows). Dense NCHW; each (n, c) plane is
// independent, so the work splits over planes. Cost: one read of each window element per output
// (KH*KW per output) and one write per output; backward writes dx once (zeroed, then scattered).
// Without an argmax tensor (inference: nothing will need the backward), the max pool writes the
// values only. VGG's 2x2 windows run 8 outputs per AVX2 step, with or without the argmax.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"
#include "cpu/max_pool_step.h"

namespace nn::cpu {
namespace {

// Runs f(p) for planes [0, planes), in parallel with about `per_plane` elements of work each.
template <typename F>
void for_each_plane(int64_t planes, int64_t per_plane, const F& f) {
  parallel_for(0, planes, std::max<int64_t>(1, 32768 / std::max<int64_t>(per_plane, 1)), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) f(p);
  });
}

// The input rows (or columns) [begin, end) that output index o of a padded window covers, clipped
// to the input.
struct Window {
  int64_t begin, end;
};
Window clipped_window(int64_t o, int64_t stride, int64_t pad, int64_t kernel, int64_t size) {
  const int64_t start = o * stride - pad;
  return {std::max<int64_t>(start, 0), std::min(start + kernel, size)};
}

// ---- max pool ----

#if defined(__x86_64__) || defined(__i386__)
#define NN_POOL_X86 1
// VGG's 2x2 stride-2 pool, 8 outputs per step: per input row, 16 floats split into the windows'
// left and right columns (shuffle, then a 64-bit permute back to order), combined in the scalar
// loop's order r0[c], r0[c+1], r1[c], r1[c+1]; the argmax (when `as` is not null; planes of fewer
// than 2^31 elements) is blended along as 32-bit plane offsets and widened on the way out.
__attribute__((target("avx2"))) void max_pool_2x2_avx2(const float* xs, float* ys, int64_t* as, int64_t w,
                                                       int64_t oh, int64_t ow) {
  auto split = [](const float* p, __m256& left, __m256& right) {
    split_even_odd_avx2(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8), left, right);
  };
  const __m256i lane_offsets = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
  for (int64_t r = 0; r < oh; ++r) {
    const float* r0 = xs + 2 * r * w;
    const float* r1 = r0 + w;
    float* out = ys + r * ow;
    int64_t* out_index = as ? as + r * ow : nullptr;
    const int64_t i0 = 2 * r * w, i1 = i0 + w;
    int64_t o = 0;
    for (; o + 8 <= ow; o += 8) {
      __m256 l0, q0, l1, q1;
      split(r0 + 2 * o, l0, q0);
      split(r1 + 2 * o, l1, q1);
      if (!out_index) {
        _mm256_storeu_ps(out + o, max_pool_step_avx2(max_pool_step_avx2(max_pool_step_avx2(l0, q0), l1), q1));
        continue;
      }
      const __m256i base = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int32_t>(i0 + 2 * o)), lane_offsets);
      const __m256i row = _mm256_set1_epi32(static_cast<int32_t>(w)), one = _mm256_set1_epi32(1);
      __m256 best = l0;
      __m256 index = _mm256_castsi256_ps(base);
      auto step = [&](__m256 v, __m256i at) {
        const __m256 take = _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        best = _mm256_blendv_ps(best, v, take);
        index = _mm256_blendv_ps(index, _mm256_castsi256_ps(at), take);
      };
      step(q0, _mm256_add_epi32(base, one));
      step(l1, _mm256_add_epi32(base, row));
      step(q1, _mm256_add_epi32(_mm256_add_epi32(base, row), one));
      _mm256_storeu_ps(out + o, best);
      const __m256i idx = _mm256_castps_si256(index);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out_index + o), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(idx)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out_index + o + 4),
                          _mm256_cvtepi32_epi64(_mm256_extracti128_si256(idx, 1)));
    }
    for (; o < ow; ++o) {
      const int64_t c = 2 * o;
      float best = r0[c];
      int64_t index = i0 + c;
      if (r0[c + 1] > best || std::isnan(r0[c + 1])) best = r0[c + 1], index = i0 + c + 1;
      if (r1[c] > best || std::isnan(r1[c])) best = r1[c], index = i1 + c;
      if (r1[c + 1] > best || std::isnan(r1[c + 1])) best = r1[c + 1], index = i1 + c + 1;
      out[o] = best;
      if (out_index) out_index[o] = index;
    }
  }
}
#else
#define NN_POOL_X86 0
#endif

// 2x2 windows, stride 2, no padding, every window inside the input (VGG's pools): the same
// comparisons as the general loop in the same order, without its window arithmetic (faster:
// bench/README.md, "Measurements moved out of the CPU kernels' comments").
template <typename T>
bool max_pool2d_forward_2x2(const T* xp, T* yp, int64_t* ap, const Pool2dGeometry& g) {
  if (g.kh != 2 || g.kw != 2 || g.stride_h != 2 || g.stride_w != 2 || g.pad_h != 0 || g.pad_w != 0 ||
      2 * g.oh > g.h || 2 * g.ow > g.w)
    return false;
#if NN_POOL_X86
  if constexpr (std::is_same_v<T, float>) {
    if (cpu_has_avx2() && g.h * g.w < (int64_t{1} << 31)) {
      for_each_plane(g.n * g.c, g.oh * g.ow * 4, [&](int64_t plane) {
        max_pool_2x2_avx2(xp + plane * g.h * g.w, yp + plane * g.oh * g.ow, ap ? ap + plane * g.oh * g.ow : nullptr,
                          g.w, g.oh, g.ow);
      });
      return true;
    }
  }
#endif
  for_each_plane(g.n * g.c, g.oh * g.ow * 4, [&](int64_t plane) {
    const T* xs = xp + plane * g.h * g.w;
    T* ys = yp + plane * g.oh * g.ow;
    int64_t* as = ap ? ap + plane * g.oh * g.ow : nullptr;
    for (int64_t oh = 0; oh < g.oh; ++oh) {
      const T* r0 = xs + 2 * oh * g.w;
      const T* r1 = r0 + g.w;
      const int64_t i0 = 2 * oh * g.w, i1 = i0 + g.w;
      for (int64_t ow = 0; ow < g.ow; ++ow) {
        const int64_t c = 2 * ow;
        T best = r0[c];
        int64_t index = i0 + c;
        if (r0[c + 1] > best || std::isnan(r0[c + 1])) best = r0[c + 1], index = i0 + c + 1;
        if (r1[c] > best || std::isnan(r1[c])) best = r1[c], index = i1 + c;
        if (r1[c + 1] > best || std::isnan(r1[c + 1])) best = r1[c + 1], index = i1 + c + 1;
        ys[oh * g.ow + ow] = best;
        if (as) as[oh * g.ow + ow] = index;
      }
    }
  });
  return true;
}

template <typename T>
void max_pool2d_forward_typed(const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dGeometry& g) {
  const T* xp = x.data<T>();
  T* yp = y.data<T>();
  int64_t* ap = argmax.defined() ? argmax.data<int64_t>() : nullptr;  // undefined: values only
  if (max_pool2d_forward_2x2(xp, yp, ap, g)) return;
  for_each_plane(g.n * g.c, g.oh * g.ow * g.kh * g.kw, [&](int64_t plane) {
    const T* xs = xp + plane * g.h * g.w;
    T* ys = yp + plane * g.oh * g.ow;
    int64_t* as = ap ? ap + plane * g.oh * g.ow : nullptr;
    for (int64_t oh = 0; oh < g.oh; ++oh) {
      const Window hw = clipped_window(oh, g.stride_h, g.pad_h, g.kh, g.h);
      for (int64_t ow = 0; ow < g.ow; ++ow) {
        const Window ww = clipped_window(ow, g.stride_w, g.pad_w, g.kw, g.w);
        // The first maximum in row-major order wins ties; a NaN wins over everything (PyTorch).
        T best = -std::numeric_limits<T>::infinity();
        int64_t best_index = hw.begin * g.w + ww.begin;
        for (int64_t ih = hw.begin; ih < hw.end; ++ih) {
          for (int64_t iw = ww.begin; iw < ww.end; ++iw) {
            const T v = xs[ih * g.w + iw];
            if (v > best || std::isnan(v)) {  // max_pool_step's rule, with the index
              best = v;
              best_index = ih * g.w + iw;
            }
          }
        }
        ys[oh * g.ow + ow] = best;
        if (as) as[oh * g.ow + ow] = best_index;
      }
    }
  });
}

// dx = 0, then dx[plane][argmax] += dy. Plane sizes come from the shapes alone, so reduce.cpp's
// max backward reuses this kernel with dy (1, rows, 1, 1) and dx (1, rows, 1, cols).
template <typename T>
void max_pool2d_backward_typed(const Tensor& dy, const Tensor& argmax, Tensor& dx) {
  const int64_t planes = dy.shape()[0] * dy.shape()[1];
  const int64_t dy_plane = dy.shape()[2] * dy.shape()[3];
  const int64_t dx_plane = dx.shape()[2] * dx.shape()[3];
  const T* dyp = dy.data<T>();
  const int64_t* ap = argmax.data<int64_t>();
  T* dxp = dx.data<T>();
  for_each_plane(planes, dx_plane + dy_plane, [&](int64_t plane) {
    T* dxs = dxp + plane * dx_plane;
    const T* dys = dyp + plane * dy_plane;
    const int64_t* as = ap + plane * dy_plane;
    std::fill(dxs, dxs + dx_plane, T(0));
    for (int64_t i = 0; i < dy_plane; ++i) dxs[as[i]] += dys[i];
  });
}

// ---- average pool ----

// The window of output (oh, ow) clipped to the input, and the divisor PyTorch uses: the window
// clipped to the padded input (count_include_pad) or to the input itself.
struct AvgWindow {
  Window h, w;
  int64_t divisor;
};
AvgWindow avg_window(const Pool2dGeometry& g, int64_t oh, int64_t ow) {
  const int64_t h0 = oh * g.stride_h - g.pad_h, w0 = ow * g.stride_w - g.pad_w;
  const int64_t h1 = std::min(h0 + g.kh, g.h + g.pad_h), w1 = std::min(w0 + g.kw, g.w + g.pad_w);
  AvgWindow a;
  a.h = {std::max<int64_t>(h0, 0), std::min(h1, g.h)};
  a.w = {std::max<int64_t>(w0, 0), std::min(w1, g.w)};
  a.divisor = g.count_include_pad ? (h1 - h0) * (w1 - w0) : (a.h.end - a.h.begin) * (a.w.end - a.w.begin);
  return a;
}

template <typename T>
void avg_pool2d_forward_typed(const Tensor& x, Tensor& y, const Pool2dGeometry& g) {
  const T* xp = x.data<T>();
  T* yp = y.data<T>();
  for_each_plane(g.n * g.c, g.oh * g.ow * g.kh * g.kw, [&](int64_t plane) {
    const T* xs = xp + plane * g.h * g.w;
    T* ys = yp + plane * g.oh * g.ow;
    for (int64_t oh = 0; oh < g.oh; ++oh) {
      for (int64_t ow = 0; ow < g.ow; ++ow) {
        const AvgWindow a = avg_window(g, oh, ow);
        T sum = 0;
        for (int64_t ih = a.h.begin; ih < a.h.end; ++ih)
          for (int64_t iw = a.w.begin; iw < a.w.end; ++iw) sum += xs[ih * g.w + iw];
        ys[oh * g.ow + ow] = a.divisor > 0 ? sum / static_cast<T>(a.divisor) : T(0);
      }
    }
  });
}

template <typename T>
void avg_pool2d_backward_typed(const Tensor& dy, Tensor& dx, const Pool2dGeometry& g) {
  const T* dyp = dy.data<T>();
  T* dxp = dx.data<T>();
  for_each_plane(g.n * g.c, g.oh * g.ow * g.kh * g.kw + g.h * g.w, [&](int64_t plane) {
    T* dxs = dxp + plane * g.h * g.w;
    const T* dys = dyp + plane * g.oh * g.ow;
    std::fill(dxs, dxs + g.h * g.w, T(0));
    for (int64_t oh = 0; oh < g.oh; ++oh) {
      for (int64_t ow = 0; ow < g.ow; ++ow) {
        const AvgWindow a = avg_window(g, oh, ow);
        if (a.divisor == 0) continue;
        const T share = dys[oh * g.ow + ow] / static_cast<T>(a.divisor);
        for (int64_t ih = a.h.begin; ih < a.h.end; ++ih)
          for (int64_t iw = a.w.begin; iw < a.w.end; ++iw) dxs[ih * g.w + iw] += share;
      }
    }
  });
}

// ---- adaptive average pool: output i averages input [floor(i*in/out), ceil((i+1)*in/out)) ----

Window adaptive_window(int64_t o, int64_t out, int64_t in) {
  return {(o * in) / out, ((o + 1) * in + out - 1) / out};
}

template <typename T>
void adaptive_avg_pool2d_forward_typed(const Tensor& x, Tensor& y) {
  const int64_t planes = x.shape()[0] * x.shape()[1];
  const int64_t h = x.shape()[2], w = x.shape()[3], oh_n = y.shape()[2], ow_n = y.shape()[3];
  const T* xp = x.data<T>();
  T* yp = y.data<T>();
  for_each_plane(planes, h * w + oh_n * ow_n, [&](int64_t plane) {
    const T* xs = xp + plane * h * w;
    T* ys = yp + plane * oh_n * ow_n;
    for (int64_t oh = 0; oh < oh_n; ++oh) {
      const Window hw = adaptive_window(oh, oh_n, h);
      for (int64_t ow = 0; ow < ow_n; ++ow) {
        const Window ww = adaptive_window(ow, ow_n, w);
        T sum = 0;
        for (int64_t ih = hw.begin; ih < hw.end; ++ih)
          for (int64_t iw = ww.begin; iw < ww.end; ++iw) sum += xs[ih * w + iw];
        ys[oh * ow_n + ow] = sum / static_cast<T>((hw.end - hw.begin) * (ww.end - ww.begin));
      }
    }
  });
}

template <typename T>
void adaptive_avg_pool2d_backward_typed(const Tensor& dy, Tensor& dx) {
  const int64_t planes = dx.shape()[0] * dx.shape()[1];
  const int64_t h = dx.shape()[2], w = dx.shape()[3], oh_n = dy.shape()[2], ow_n = dy.shape()[3];
  const T* dyp = dy.data<T>();
  T* dxp = dx.data<T>();
  for_each_plane(planes, h * w + oh_n * ow_n, [&](int64_t plane) {
    T* dxs = dxp + plane * h * w;
    const T* dys = dyp + plane * oh_n * ow_n;
    std::fill(dxs, dxs + h * w, T(0));
    for (int64_t oh = 0; oh < oh_n; ++oh) {
      const Window hw = adaptive_window(oh, oh_n, h);
      for (int64_t ow = 0; ow < ow_n; ++ow) {
        const Window ww = adaptive_window(ow, ow_n, w);
        const T share = dys[oh * ow_n + ow] / static_cast<T>((hw.end - hw.begin) * (ww.end - ww.begin));
        for (int64_t ih = hw.begin; ih < hw.end; ++ih)
          for (int64_t iw = ww.begin; iw < ww.end; ++iw) dxs[ih * w + iw] += share;
      }
    }
  });
}

// ---- dtype dispatch ----

void max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dGeometry& g) {
  dispatch_float(x.dtype(), "max_pool2d_forward",
                 [&](auto tag) { max_pool2d_forward_typed<decltype(tag)>(x, y, argmax, g); });
}

void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, Tensor& dx) {
  dispatch_float(dy.dtype(), "max_pool2d_backward",
                 [&](auto tag) { max_pool2d_backward_typed<decltype(tag)>(dy, argmax, dx); });
}

void avg_pool2d_forward(const Tensor& x, Tensor& y, const Pool2dGeometry& g) {
  dispatch_float(x.dtype(), "avg_pool2d_forward", [&](auto tag) { avg_pool2d_forward_typed<decltype(tag)>(x, y, g); });
}

void avg_pool2d_backward(const Tensor& dy, Tensor& dx, const Pool2dGeometry& g) {
  dispatch_float(dy.dtype(), "avg_pool2d_backward",
                 [&](auto tag) { avg_pool2d_backward_typed<decltype(tag)>(dy, dx, g); });
}

void adaptive_avg_pool2d_forward(const Tensor& x, Tensor& y) {
  dispatch_float(x.dtype(), "adaptive_avg_pool2d_forward",
                 [&](auto tag) { adaptive_avg_pool2d_forward_typed<decltype(tag)>(x, y); });
}

void adaptive_avg_pool2d_backward(const Tensor& dy, Tensor& dx) {
  dispatch_float(dy.dtype(), "adaptive_avg_pool2d_backward",
                 [&](auto tag) { adaptive_avg_pool2d_backward_typed<decltype(tag)>(dy, dx); });
}

}  // namespace

void register_pool_cpu(KernelTable& t) {
  t.max_pool2d_forward = max_pool2d_forward;
  t.max_pool2d_backward = max_pool2d_backward;
  t.avg_pool2d_forward = avg_pool2d_forward;
  t.avg_pool2d_backward = avg_pool2d_backward;
  t.adaptive_avg_pool2d_forward = adaptive_avg_pool2d_forward;
  t.adaptive_avg_pool2d_backward = adaptive_avg_pool2d_backward;
}

}  // namespace nn::cpu
