// Random fills from a Philox stream: element i draws from block (counter + i/2), half of it each,
// so every element's value depends only on (seed, counter, i), whatever the thread count.
#include <cmath>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"
#include "nn/generator.h"

namespace nn::cpu {
namespace {

template <typename T>
inline T unit_from_block(const uint32_t w[4], int j) {
  if constexpr (std::is_same_v<T, float>) return uint_to_unit_float(w[2 * j]);
  else return uints_to_unit_double(w[2 * j], w[2 * j + 1]);
}

// Calls f(i, block_words) for each element i of the dense output.
template <typename F>
void for_each_block(int64_t n, uint64_t seed, uint64_t counter, const F& f) {
  int64_t blocks = (n + 1) / 2;
  parallel_for(0, blocks, 4096, [&](int64_t b0, int64_t b1) {
    uint32_t w[4];
    for (int64_t b = b0; b < b1; ++b) {
      philox4x32(seed, counter + static_cast<uint64_t>(b), 0, w);
      f(b, w);
    }
  });
}

void random_uniform(Tensor& out, uint64_t seed, uint64_t counter, double low, double high) {
  dispatch_float(out.dtype(), "random_uniform", [&](auto tag) {
    using T = decltype(tag);
    T* p = out.data<T>();
    const int64_t n = out.numel();
    // Computed in double and kept below `high`: in f32, low + span*u can round up onto high.
    const T top = high > low ? std::nextafter(static_cast<T>(high), static_cast<T>(low)) : static_cast<T>(high);
    for_each_block(n, seed, counter, [&](int64_t b, const uint32_t w[4]) {
      for (int j = 0; j < 2 && 2 * b + j < n; ++j) {
        T v = static_cast<T>(low + (high - low) * static_cast<double>(unit_from_block<T>(w, j)));
        p[2 * b + j] = v < top ? v : top;
      }
    });
  });
}

void random_normal(Tensor& out, uint64_t seed, uint64_t counter, double mean, double std) {
  dispatch_float(out.dtype(), "random_normal", [&](auto tag) {
    using T = decltype(tag);
    T* p = out.data<T>();
    const int64_t n = out.numel();
    for_each_block(n, seed, counter, [&](int64_t b, const uint32_t w[4]) {
      // Box-Muller on the block's two uniforms; 1-u keeps the log argument in (0, 1].
      double u1 = 1.0 - uints_to_unit_double(w[0], w[1]);
      double u2 = uints_to_unit_double(w[2], w[3]);
      double r = std::sqrt(-2.0 * std::log(u1));
      double z[2] = {r * std::cos(2 * M_PI * u2), r * std::sin(2 * M_PI * u2)};
      for (int j = 0; j < 2 && 2 * b + j < n; ++j) p[2 * b + j] = static_cast<T>(mean + std * z[j]);
    });
  });
}

void dropout_mask(Tensor& out, uint64_t seed, uint64_t counter, double p_drop) {
  dispatch_float(out.dtype(), "dropout_mask", [&](auto tag) {
    using T = decltype(tag);
    T* p = out.data<T>();
    const int64_t n = out.numel();
    const T scale = static_cast<T>(1.0 / (1.0 - p_drop));
    const T threshold = static_cast<T>(p_drop);
    for_each_block(n, seed, counter, [&](int64_t b, const uint32_t w[4]) {
      for (int j = 0; j < 2 && 2 * b + j < n; ++j)
        p[2 * b + j] = unit_from_block<T>(w, j) >= threshold ? scale : T(0);
    });
  });
}

}  // namespace

void register_random_cpu(KernelTable& t) {
  t.random_uniform = random_uniform;
  t.random_normal = random_normal;
  t.dropout_mask = dropout_mask;
}

}  // namespace nn::cpu
