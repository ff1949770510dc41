// Batch normalization on dense (N, C, S) tensors (S = the spatial size), one channel per task:
//   stats:           mean and biased variance of each channel over N and S, one pass accumulating
//                    the sum and the sum of squares in double (x has float precision, so the
//                    cancellation in E[x^2] - mean^2 only matters once |mean| / std passes ~1e6);
//   forward:         y = x * (invstd * w) + (b - mean * invstd * w), one multiply-add per element;
//   backward_reduce: sum dy and sum dy * xhat per channel, in double;
//   backward_input:  dx = k * (dy - c1 - xhat * c2) with k = w * invstd, c1 = sum_dy / M,
//                    c2 = sum_dy_xhat / M (batch statistics), or dx = k * dy (running statistics).
// Reads: stats 1 pass over x; forward 1 over x, 1 write; backward 2 over dy and x, 1 write.
#include <cmath>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"

namespace nn::cpu {
namespace {

struct Dims {
  int64_t n, c, s;
};

Dims dims_of(const Tensor& x) {
  const int64_t n = x.size(0), c = x.size(1);
  return {n, c, n * c == 0 ? 0 : x.numel() / (n * c)};
}

// Per-channel tasks: a grain of channels sized to about 64K elements.
int64_t channel_grain(const Dims& d) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, d.n * d.s)); }

template <typename T>
T value_or(const Tensor& t, int64_t c, T fallback) {
  return t.defined() ? t.data<T>()[c] : fallback;
}

void batch_norm_stats(const Tensor& x, Tensor& mean, Tensor& var) {
  dispatch_float(x.dtype(), "batch_norm_stats", [&](auto tag) {
    using T = decltype(tag);
    const Dims d = dims_of(x);
    const T* xp = x.data<T>();
    T* mp = mean.data<T>();
    T* vp = var.data<T>();
    const double m = static_cast<double>(d.n * d.s);
    parallel_for(0, d.c, channel_grain(d), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        double sum = 0, sum_sq = 0;
        for (int64_t i = 0; i < d.n; ++i) {
          const T* row = xp + (i * d.c + c) * d.s;
          double s = 0, q = 0;
          for (int64_t j = 0; j < d.s; ++j) {
            const double v = row[j];
            s += v;
            q += v * v;
          }
          sum += s;
          sum_sq += q;
        }
        const double mu = sum / m;
        mp[c] = static_cast<T>(mu);
        vp[c] = static_cast<T>(std::max(0.0, sum_sq / m - mu * mu));
      }
    });
  });
}

void batch_norm_forward(const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                        const Tensor& bias, Tensor& y) {
  dispatch_float(x.dtype(), "batch_norm_forward", [&](auto tag) {
    using T = decltype(tag);
    const Dims d = dims_of(x);
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    parallel_for(0, d.c, channel_grain(d), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const T scale = invstd.data<T>()[c] * value_or<T>(weight, c, T(1));
        const T shift = value_or<T>(bias, c, T(0)) - mean.data<T>()[c] * scale;
        for (int64_t i = 0; i < d.n; ++i) {
          const T* in = xp + (i * d.c + c) * d.s;
          T* out = yp + (i * d.c + c) * d.s;
          for (int64_t j = 0; j < d.s; ++j) out[j] = in[j] * scale + shift;
        }
      }
    });
  });
}

void batch_norm_backward_reduce(const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                                Tensor& sum_dy, Tensor& sum_dy_xhat) {
  dispatch_float(x.dtype(), "batch_norm_backward_reduce", [&](auto tag) {
    using T = decltype(tag);
    const Dims d = dims_of(x);
    const T* xp = x.data<T>();
    const T* gp = dy.data<T>();
    parallel_for(0, d.c, channel_grain(d), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const double mu = mean.data<T>()[c];
        double g_sum = 0, gx_sum = 0;
        for (int64_t i = 0; i < d.n; ++i) {
          const T* in = xp + (i * d.c + c) * d.s;
          const T* g = gp + (i * d.c + c) * d.s;
          double s = 0, q = 0;
          for (int64_t j = 0; j < d.s; ++j) {
            s += g[j];
            q += static_cast<double>(g[j]) * (static_cast<double>(in[j]) - mu);
          }
          g_sum += s;
          gx_sum += q;
        }
        sum_dy.data<T>()[c] = static_cast<T>(g_sum);
        sum_dy_xhat.data<T>()[c] = static_cast<T>(gx_sum * invstd.data<T>()[c]);
      }
    });
  });
}

void batch_norm_backward_input(const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                               const Tensor& weight, const Tensor& sum_dy, const Tensor& sum_dy_xhat, bool batch_stats,
                               Tensor& dx) {
  dispatch_float(x.dtype(), "batch_norm_backward_input", [&](auto tag) {
    using T = decltype(tag);
    const Dims d = dims_of(x);
    const T* xp = x.data<T>();
    const T* gp = dy.data<T>();
    T* dp = dx.data<T>();
    const T inv_m = static_cast<T>(1.0 / static_cast<double>(std::max<int64_t>(1, d.n * d.s)));
    parallel_for(0, d.c, channel_grain(d), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const T is = invstd.data<T>()[c];
        const T k = is * value_or<T>(weight, c, T(1));
        for (int64_t i = 0; i < d.n; ++i) {
          const T* g = gp + (i * d.c + c) * d.s;
          T* out = dp + (i * d.c + c) * d.s;
          if (!batch_stats) {
            for (int64_t j = 0; j < d.s; ++j) out[j] = k * g[j];
            continue;
          }
          // dx = k * (dy - c1 - (x - mean) * invstd * c2) = k * dy - k * c2 * invstd * x + (k * c2 * invstd * mean - k * c1)
          const T c1 = sum_dy.data<T>()[c] * inv_m, c2 = sum_dy_xhat.data<T>()[c] * inv_m;
          const T a = k * c2 * is, b = a * mean.data<T>()[c] - k * c1;
          const T* in = xp + (i * d.c + c) * d.s;
          for (int64_t j = 0; j < d.s; ++j) out[j] = k * g[j] - a * in[j] + b;
        }
      }
    });
  });
}

}  // namespace

void register_batch_norm_cpu(KernelTable& t) {
  t.batch_norm_stats = batch_norm_stats;
  t.batch_norm_forward = batch_norm_forward;
  t.batch_norm_backward_reduce = batch_norm_backward_reduce;
  t.batch_norm_backward_input = batch_norm_backward_input;
}

}  // namespace nn::cpu
