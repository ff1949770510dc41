// 2-D pooling on CUDA, forward and backward (semantics: pool_cpu.cpp), dense NCHW.
//  - Forward (max, average, adaptive average): one thread per output element, grid-stride; the
//    window is read in the CPU's row-major order, so sums round the same way and max-pool ties go
//    to the first maximum, a NaN to the last NaN of the window (`v > best || isnan(v)`), argmax as
//    a flat index ih*W+iw into the input plane.
//  - max_pool2d_backward: dx zeroed (cudaMemsetAsync), then one thread per dy element adds it at
//    its argmax with atomicAdd (overlapping windows may share an argmax). Plane sizes come from
//    the shapes alone: reduce.cpp's max backward calls it with (1, rows, 1, 1) / (1, rows, 1, cols).
//  - Average backward: one thread per dx element gathers the shares of the outputs whose windows
//    cover it, in (oh, ow) order (the CPU's scatter order), so no atomics and the same rounding.
// Cost: KH*KW reads per output forward; backward one write per input.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "cuda_util.cuh"

namespace nn::cuda {
namespace {

constexpr int kThreads = 256;

__host__ __device__ inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
__host__ __device__ inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Input rows (or columns) [begin, end) covered by a window.
struct Window {
  int64_t begin, end;
};

// The window of output o clipped to the input.
__device__ inline Window clipped_window(int64_t o, int64_t stride, int64_t pad, int64_t kernel, int64_t size) {
  const int64_t start = o * stride - pad;
  return {max64(start, 0), min64(start + kernel, size)};
}

// ---- max pool ----

template <typename T>
__global__ void max_pool2d_forward_kernel(const T* x, T* y, int64_t* argmax, Pool2dGeometry g, int64_t total) {
  for (int64_t e = thread_index(); e < total; e += thread_count()) {
    const int64_t ow = e % g.ow;
    const int64_t oh = (e / g.ow) % g.oh;
    const int64_t plane = e / (g.ow * g.oh);
    const T* xs = x + plane * g.h * g.w;
    const Window hw = clipped_window(oh, g.stride_h, g.pad_h, g.kh, g.h);
    const Window ww = clipped_window(ow, g.stride_w, g.pad_w, g.kw, g.w);
    T best = -std::numeric_limits<T>::infinity();
    int64_t best_index = hw.begin * g.w + ww.begin;
    for (int64_t ih = hw.begin; ih < hw.end; ++ih) {
      for (int64_t iw = ww.begin; iw < ww.end; ++iw) {
        const T v = xs[ih * g.w + iw];
        if (v > best || std::isnan(v)) {
          best = v;
          best_index = ih * g.w + iw;
        }
      }
    }
    y[e] = best;
    if (argmax) argmax[e] = best_index;  // null: values only (inference)
  }
}

// dx (zeroed before) [plane][argmax] += dy.
template <typename T>
__global__ void max_pool2d_backward_kernel(const T* dy, const int64_t* argmax, T* dx, int64_t total,
                                           int64_t dy_plane, int64_t dx_plane) {
  for (int64_t e = thread_index(); e < total; e += thread_count()) {
    const int64_t index = argmax[e];
    if (index < 0 || index >= dx_plane) continue;  // never produced by the forward
    atomicAdd(dx + (e / dy_plane) * dx_plane + index, dy[e]);
  }
}

void max_pool2d_forward(const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dGeometry& g) {
  NN_CHECK(x.is_contiguous() && y.is_contiguous() && (!argmax.defined() || argmax.is_contiguous()),
           "max_pool2d_forward: CUDA operands must be dense");
  const int64_t total = g.n * g.c * g.oh * g.ow;
  if (total == 0) return;
  cudaStream_t s = stream_for(y);
  dispatch_float(x.dtype(), "max_pool2d_forward", [&](auto tag) {
    using T = decltype(tag);
    max_pool2d_forward_kernel<T><<<blocks_for(total, kThreads), kThreads, 0, s>>>(
        static_cast<const T*>(x.raw_data()), static_cast<T*>(y.raw_data()),
        argmax.defined() ? static_cast<int64_t*>(argmax.raw_data()) : nullptr, g, total);
    NN_CUDA_CHECK_LAUNCH();
  });
}

void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, Tensor& dx) {
  NN_CHECK(dy.dim() == 4 && dx.dim() == 4, "max_pool2d_backward: dy and dx must be 4-D");
  NN_CHECK(dy.is_contiguous() && argmax.is_contiguous() && dx.is_contiguous(),
           "max_pool2d_backward: CUDA operands must be dense");
  const int64_t total = dy.numel();
  const int64_t dy_plane = dy.shape()[2] * dy.shape()[3];
  const int64_t dx_plane = dx.shape()[2] * dx.shape()[3];
  if (dx.numel() == 0) return;
  cudaStream_t s = stream_for(dx);
  dispatch_float(dy.dtype(), "max_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    T* dxp = static_cast<T*>(dx.raw_data());
    NN_CUDA_CHECK(cudaMemsetAsync(dxp, 0, sizeof(T) * static_cast<size_t>(dx.numel()), s));
    if (total == 0 || dy_plane == 0) return;
    max_pool2d_backward_kernel<T><<<blocks_for(total, kThreads), kThreads, 0, s>>>(
        static_cast<const T*>(dy.raw_data()), static_cast<const int64_t*>(argmax.raw_data()), dxp, total, dy_plane,
        dx_plane);
    NN_CUDA_CHECK_LAUNCH();
  });
}

// ---- average pool ----

// The window of output (oh, ow) clipped to the input, and PyTorch's divisor: the window clipped
// to the padded input (count_include_pad) or to the input itself.
struct AvgWindow {
  Window h, w;
  int64_t divisor;
};
__device__ inline AvgWindow avg_window(const Pool2dGeometry& g, int64_t oh, int64_t ow) {
  const int64_t h0 = oh * g.stride_h - g.pad_h, w0 = ow * g.stride_w - g.pad_w;
  const int64_t h1 = min64(h0 + g.kh, g.h + g.pad_h), w1 = min64(w0 + g.kw, g.w + g.pad_w);
  AvgWindow a;
  a.h = {max64(h0, 0), min64(h1, g.h)};
  a.w = {max64(w0, 0), min64(w1, g.w)};
  a.divisor = g.count_include_pad ? (h1 - h0) * (w1 - w0) : (a.h.end - a.h.begin) * (a.w.end - a.w.begin);
  return a;
}

// Outputs along one dim whose (unclipped) windows may cover input i, widened by one on each side
// and clipped to [0, out); callers test coverage exactly.
__device__ inline Window pooled_outputs_near(int64_t i, int64_t stride, int64_t pad, int64_t kernel, int64_t out) {
  const int64_t first_start = i + pad - kernel + 1;  // the window start must exceed i + pad - kernel
  const int64_t lo = first_start <= 0 ? 0 : (first_start + stride - 1) / stride;
  const int64_t hi = (i + pad) / stride;  // the window start must be <= i + pad
  return {max64(lo - 1, 0), min64(hi + 2, out)};
}

template <typename T>
__global__ void avg_pool2d_forward_kernel(const T* x, T* y, Pool2dGeometry g, int64_t total) {
  for (int64_t e = thread_index(); e < total; e += thread_count()) {
    const int64_t ow = e % g.ow;
    const int64_t oh = (e / g.ow) % g.oh;
    const int64_t plane = e / (g.ow * g.oh);
    const T* xs = x + plane * g.h * g.w;
    const AvgWindow a = avg_window(g, oh, ow);
    T sum = 0;
    for (int64_t ih = a.h.begin; ih < a.h.end; ++ih)
      for (int64_t iw = a.w.begin; iw < a.w.end; ++iw) sum += xs[ih * g.w + iw];
    y[e] = a.divisor > 0 ? sum / static_cast<T>(a.divisor) : T(0);
  }
}

template <typename T>
__global__ void avg_pool2d_backward_kernel(const T* dy, T* dx, Pool2dGeometry g, int64_t total) {
  for (int64_t e = thread_index(); e < total; e += thread_count()) {
    const int64_t iw = e % g.w;
    const int64_t ih = (e / g.w) % g.h;
    const int64_t plane = e / (g.w * g.h);
    const T* dys = dy + plane * g.oh * g.ow;
    const Window ohs = pooled_outputs_near(ih, g.stride_h, g.pad_h, g.kh, g.oh);
    const Window ows = pooled_outputs_near(iw, g.stride_w, g.pad_w, g.kw, g.ow);
    T acc = 0;
    for (int64_t oh = ohs.begin; oh < ohs.end; ++oh) {
      for (int64_t ow = ows.begin; ow < ows.end; ++ow) {
        const AvgWindow a = avg_window(g, oh, ow);
        if (a.divisor == 0 || ih < a.h.begin || ih >= a.h.end || iw < a.w.begin || iw >= a.w.end) continue;
        acc += dys[oh * g.ow + ow] / static_cast<T>(a.divisor);
      }
    }
    dx[e] = acc;
  }
}

void avg_pool2d_forward(const Tensor& x, Tensor& y, const Pool2dGeometry& g) {
  NN_CHECK(x.is_contiguous() && y.is_contiguous(), "avg_pool2d_forward: CUDA operands must be dense");
  const int64_t total = g.n * g.c * g.oh * g.ow;
  if (total == 0) return;
  cudaStream_t s = stream_for(y);
  dispatch_float(x.dtype(), "avg_pool2d_forward", [&](auto tag) {
    using T = decltype(tag);
    avg_pool2d_forward_kernel<T><<<blocks_for(total, kThreads), kThreads, 0, s>>>(
        static_cast<const T*>(x.raw_data()), static_cast<T*>(y.raw_data()), g, total);
    NN_CUDA_CHECK_LAUNCH();
  });
}

void avg_pool2d_backward(const Tensor& dy, Tensor& dx, const Pool2dGeometry& g) {
  NN_CHECK(dy.is_contiguous() && dx.is_contiguous(), "avg_pool2d_backward: CUDA operands must be dense");
  const int64_t total = g.n * g.c * g.h * g.w;
  if (total == 0) return;
  cudaStream_t s = stream_for(dx);
  dispatch_float(dy.dtype(), "avg_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    avg_pool2d_backward_kernel<T><<<blocks_for(total, kThreads), kThreads, 0, s>>>(
        static_cast<const T*>(dy.raw_data()), static_cast<T*>(dx.raw_data()), g, total);
    NN_CUDA_CHECK_LAUNCH();
  });
}

// ---- adaptive average pool: output o averages input [floor(o*in/out), ceil((o+1)*in/out)) ----

__device__ inline Window adaptive_window(int64_t o, int64_t out, int64_t in) {
  return {(o * in) / out, ((o + 1) * in + out - 1) / out};
}

// Outputs whose windows may cover input i: [floor(i*out/in), ceil((i+1)*out/in)), widened by one
// on each side and clipped to [0, out); callers test coverage exactly.
__device__ inline Window adaptive_outputs_near(int64_t i, int64_t out, int64_t in) {
  const int64_t lo = (i * out) / in;
  const int64_t hi = ((i + 1) * out + in - 1) / in;
  return {max64(lo - 1, 0), min64(hi + 1, out)};
}

struct AdaptiveGeometry {
  int64_t h, w, oh, ow;
};

template <typename T>
__global__ void adaptive_avg_pool2d_forward_kernel(const T* x, T* y, AdaptiveGeometry g, int64_t total) {
  for (int64_t e = thread_index(); e < total; e += thread_count()) {
    const int64_t ow = e % g.ow;
    const int64_t oh = (e / g.ow) % g.oh;
    const int64_t plane = e / (g.ow * g.oh);
    const T* xs = x + plane * g.h * g.w;
    const Window hw = adaptive_window(oh, g.oh, g.h);
    const Window ww = adaptive_window(ow, g.ow, g.w);
    T sum = 0;
    for (int64_t ih = hw.begin; ih < hw.end; ++ih)
      for (int64_t iw = ww.begin; iw < ww.end; ++iw) sum += xs[ih * g.w + iw];
    y[e] = sum / static_cast<T>((hw.end - hw.begin) * (ww.end - ww.begin));
  }
}

template <typename T>
__global__ void adaptive_avg_pool2d_backward_kernel(const T* dy, T* dx, AdaptiveGeometry g, int64_t total) {
  for (int64_t e = thread_index(); e < total; e += thread_count()) {
    const int64_t iw = e % g.w;
    const int64_t ih = (e / g.w) % g.h;
    const int64_t plane = e / (g.w * g.h);
    const T* dys = dy + plane * g.oh * g.ow;
    const Window ohs = adaptive_outputs_near(ih, g.oh, g.h);
    const Window ows = adaptive_outputs_near(iw, g.ow, g.w);
    T acc = 0;
    for (int64_t oh = ohs.begin; oh < ohs.end; ++oh) {
      const Window hw = adaptive_window(oh, g.oh, g.h);
      if (ih < hw.begin || ih >= hw.end) continue;
      for (int64_t ow = ows.begin; ow < ows.end; ++ow) {
        const Window ww = adaptive_window(ow, g.ow, g.w);
        if (iw < ww.begin || iw >= ww.end) continue;
        acc += dys[oh * g.ow + ow] / static_cast<T>((hw.end - hw.begin) * (ww.end - ww.begin));
      }
    }
    dx[e] = acc;
  }
}

void adaptive_avg_pool2d_forward(const Tensor& x, Tensor& y) {
  NN_CHECK(x.dim() == 4 && y.dim() == 4, "adaptive_avg_pool2d_forward: x and y must be 4-D");
  NN_CHECK(x.is_contiguous() && y.is_contiguous(), "adaptive_avg_pool2d_forward: CUDA operands must be dense");
  const AdaptiveGeometry g{x.shape()[2], x.shape()[3], y.shape()[2], y.shape()[3]};
  const int64_t total = y.numel();
  if (total == 0) return;
  cudaStream_t s = stream_for(y);
  dispatch_float(x.dtype(), "adaptive_avg_pool2d_forward", [&](auto tag) {
    using T = decltype(tag);
    adaptive_avg_pool2d_forward_kernel<T><<<blocks_for(total, kThreads), kThreads, 0, s>>>(
        static_cast<const T*>(x.raw_data()), static_cast<T*>(y.raw_data()), g, total);
    NN_CUDA_CHECK_LAUNCH();
  });
}

void adaptive_avg_pool2d_backward(const Tensor& dy, Tensor& dx) {
  NN_CHECK(dy.dim() == 4 && dx.dim() == 4, "adaptive_avg_pool2d_backward: dy and dx must be 4-D");
  NN_CHECK(dy.is_contiguous() && dx.is_contiguous(), "adaptive_avg_pool2d_backward: CUDA operands must be dense");
  const AdaptiveGeometry g{dx.shape()[2], dx.shape()[3], dy.shape()[2], dy.shape()[3]};
  const int64_t total = dx.numel();
  if (total == 0) return;
  cudaStream_t s = stream_for(dx);
  dispatch_float(dy.dtype(), "adaptive_avg_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    if (g.oh == 0 || g.ow == 0) {
      NN_CUDA_CHECK(cudaMemsetAsync(dx.raw_data(), 0, sizeof(T) * static_cast<size_t>(total), s));
      return;
    }
    adaptive_avg_pool2d_backward_kernel<T><<<blocks_for(total, kThreads), kThreads, 0, s>>>(
        static_cast<const T*>(dy.raw_data()), static_cast<T*>(dx.raw_data()), g, total);
    NN_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

void register_pool_cuda(KernelTable& t) {
  t.max_pool2d_forward = max_pool2d_forward;
  t.max_pool2d_backward = max_pool2d_backward;
  t.avg_pool2d_forward = avg_pool2d_forward;
  t.avg_pool2d_backward = avg_pool2d_backward;
  t.adaptive_avg_pool2d_forward = adaptive_avg_pool2d_forward;
  t.adaptive_avg_pool2d_backward = adaptive_avg_pool2d_backward;
}

}  // namespace nn::cuda
