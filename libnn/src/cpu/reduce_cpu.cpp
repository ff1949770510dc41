// Row reductions on the CPU: x dense (rows, cols) -> one value per row. Sums accumulate in double.
// Memory-bound: one read of x.
#include <cmath>
#include <vector>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"

namespace nn::cpu {
namespace {

template <typename T>
double sum_span(const T* p, int64_t n) {
  double acc[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    acc[0] += p[i];
    acc[1] += p[i + 1];
    acc[2] += p[i + 2];
    acc[3] += p[i + 3];
  }
  for (; i < n; ++i) acc[0] += p[i];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

void sum_rows(const Tensor& x, Tensor& out) {
  dispatch_float(x.dtype(), "sum_rows", [&](auto tag) {
    using T = decltype(tag);
    const int64_t rows = out.numel();
    const int64_t cols = rows == 0 ? 0 : x.numel() / rows;
    const T* xp = x.data<T>();
    T* op = out.data<T>();
    if (rows >= get_num_threads() * 4 || cols < 65536) {
      parallel_for(0, rows, std::max<int64_t>(1, 65536 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) op[r] = static_cast<T>(sum_span(xp + r * cols, cols));
      });
      return;
    }
    // Few long rows: split each row over the threads.
    const int64_t chunk = 65536;
    const int64_t chunks = (cols + chunk - 1) / chunk;
    std::vector<double> partial(static_cast<size_t>(chunks));
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = xp + r * cols;
      parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          int64_t b = c * chunk;
          partial[c] = sum_span(row + b, std::min(cols, b + chunk) - b);
        }
      });
      double s = 0;
      for (double v : partial) s += v;
      op[r] = static_cast<T>(s);
    }
  });
}

void max_rows(const Tensor& x, Tensor& values, Tensor& indices) {
  dispatch_float(x.dtype(), "max_rows", [&](auto tag) {
    using T = decltype(tag);
    const int64_t rows = values.numel();
    const int64_t cols = rows == 0 ? 0 : x.numel() / rows;
    const T* xp = x.data<T>();
    T* vp = values.data<T>();
    int64_t* ip = indices.data<int64_t>();
    parallel_for(0, rows, std::max<int64_t>(1, 65536 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* row = xp + r * cols;
        int64_t best = 0;
        for (int64_t c = 1; c < cols; ++c) {
          if (std::isnan(row[best])) break;  // NaN wins and stays
          if (row[c] > row[best] || std::isnan(row[c])) best = c;
        }
        vp[r] = row[best];
        ip[r] = best;
      }
    });
  });
}

}  // namespace

void register_reduce_cpu(KernelTable& t) {
  t.sum_rows = sum_rows;
  t.max_rows = max_rows;
}

}  // namespace nn::cpu
