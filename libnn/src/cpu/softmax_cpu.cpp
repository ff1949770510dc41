// Softmax and log-softmax over the last dim of a dense (rows, cols) tensor, max-subtracted so no
// exponent overflows. Backward: softmax dx = y * (dy - sum(dy * y)); log-softmax
// dx = dy - exp(y) * sum(dy). About 5 FLOPs and 2-3 memory passes per element.
#include <cmath>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"

namespace nn::cpu {
namespace {

void softmax_forward(const Tensor& x, Tensor& y, bool log) {
  dispatch_float(x.dtype(), "softmax_forward", [&](auto tag) {
    using T = decltype(tag);
    const int64_t cols = x.shape().back();
    const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* in = xp + r * cols;
        T* out = yp + r * cols;
        T m = in[0];
        for (int64_t c = 1; c < cols; ++c) m = in[c] > m ? in[c] : m;
        double s = 0;
        for (int64_t c = 0; c < cols; ++c) {
          T e = std::exp(in[c] - m);
          if (!log) out[c] = e;
          s += e;
        }
        if (log) {
          T lse = m + static_cast<T>(std::log(s));
          for (int64_t c = 0; c < cols; ++c) out[c] = in[c] - lse;
        } else {
          T inv = static_cast<T>(1.0 / s);
          for (int64_t c = 0; c < cols; ++c) out[c] *= inv;
        }
      }
    });
  });
}

void softmax_backward(const Tensor& dy, const Tensor& y, Tensor& dx, bool log) {
  dispatch_float(y.dtype(), "softmax_backward", [&](auto tag) {
    using T = decltype(tag);
    const int64_t cols = y.shape().back();
    const int64_t rows = cols == 0 ? 0 : y.numel() / cols;
    const T* gp = dy.data<T>();
    const T* yp = y.data<T>();
    T* dp = dx.data<T>();
    parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* g = gp + r * cols;
        const T* yy = yp + r * cols;
        T* d = dp + r * cols;
        double s = 0;
        if (log) {
          for (int64_t c = 0; c < cols; ++c) s += g[c];
          for (int64_t c = 0; c < cols; ++c) d[c] = g[c] - std::exp(yy[c]) * static_cast<T>(s);
        } else {
          for (int64_t c = 0; c < cols; ++c) s += static_cast<double>(g[c]) * yy[c];
          for (int64_t c = 0; c < cols; ++c) d[c] = yy[c] * (g[c] - static_cast<T>(s));
        }
      }
    });
  });
}

}  // namespace

void register_softmax_cpu(KernelTable& t) {
  t.softmax_forward = softmax_forward;
  t.softmax_backward = softmax_backward;
}

}  // namespace nn::cpu
