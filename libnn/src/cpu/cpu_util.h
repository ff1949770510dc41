// Helpers for CPU kernels: dtype dispatch and strided iteration.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cpu/parallel.h"
#include "nn/tensor.h"

namespace nn::cpu {

// Whether this CPU runs the kernels compiled for AVX2, and for AVX2 with FMA (asked once; false off
// x86). The kernels with such versions choose them at run time with these.
inline bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return yes;
#else
  return false;
#endif
}
inline bool cpu_has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool yes = cpu_has_avx2() && __builtin_cpu_supports("fma");
  return yes;
#else
  return false;
#endif
}

// 1 / (1 + exp(-v)) without ever exponentiating a positive number (no overflow for large |v|).
template <typename T>
inline T stable_sigmoid(T v) {
  if (v >= 0) return T(1) / (T(1) + std::exp(-v));
  const T e = std::exp(v);
  return e / (T(1) + e);
}

// Calls f(T{}) with T = float or double for the tensor's dtype; other dtypes are an error.
template <typename F>
void dispatch_float(DType dtype, const char* kernel, const F& f) {
  switch (dtype) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    default:
      NN_CHECK(false, kernel, ": dtype ", dtype_name(dtype), " is not supported on cpu (use f32 or f64)");
  }
}

// A dense loop nest over `shape` for N operands with their own strides (elements), coalesced so
// that dims which are contiguous for every operand merge. for_each_run calls
// f(offsets, count, inner_strides) for runs along the innermost dim, in parallel over runs.
template <size_t N>
struct StridedLoop {
  std::vector<int64_t> shape;
  std::array<std::vector<int64_t>, N> strides;

  StridedLoop(const Shape& full_shape, const std::array<const Shape*, N>& operand_strides) {
    for (size_t d = 0; d < full_shape.size(); ++d) {
      if (full_shape[d] == 1) continue;
      bool merge = !shape.empty();
      for (size_t k = 0; k < N && merge; ++k)
        merge = strides[k].back() == (*operand_strides[k])[d] * full_shape[d];
      if (merge) {
        shape.back() *= full_shape[d];
        for (size_t k = 0; k < N; ++k) strides[k].back() = (*operand_strides[k])[d];
      } else {
        shape.push_back(full_shape[d]);
        for (size_t k = 0; k < N; ++k) strides[k].push_back((*operand_strides[k])[d]);
      }
    }
    if (shape.empty()) {
      shape.push_back(1);
      for (size_t k = 0; k < N; ++k) strides[k].push_back(0);
    }
  }

  template <typename F>
  void for_each_run(const F& f) const {
    const int64_t nd = static_cast<int64_t>(shape.size());
    const int64_t inner = shape.back();
    int64_t rows = 1;
    for (int64_t d = 0; d + 1 < nd; ++d) rows *= shape[d];
    std::array<int64_t, N> inner_strides;
    for (size_t k = 0; k < N; ++k) inner_strides[k] = strides[k].back();
    // Long runs are split into pieces so that a single large run still uses every thread.
    const int64_t piece = 16384;
    const int64_t pieces = rows >= 64 ? 1 : std::max<int64_t>(1, (inner + piece - 1) / piece);
    const int64_t piece_len = (inner + pieces - 1) / pieces;
    int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(std::min(inner, piece_len), 1));
    parallel_for(0, rows * pieces, grain, [&](int64_t w0, int64_t w1) {
      for (int64_t w = w0; w < w1; ++w) {
        int64_t r = w / pieces, p = w % pieces;
        std::array<int64_t, N> off{};
        int64_t rem = r;
        for (int64_t d = nd - 2; d >= 0; --d) {
          int64_t i = rem % shape[d];
          rem /= shape[d];
          for (size_t k = 0; k < N; ++k) off[k] += i * strides[k][d];
        }
        int64_t start = p * piece_len;
        int64_t count = std::min(inner, start + piece_len) - start;
        if (count <= 0) continue;
        for (size_t k = 0; k < N; ++k) off[k] += start * inner_strides[k];
        f(off, count, inner_strides);
      }
    });
  }
};

}  // namespace nn::cpu
