// Helpers shared by the white-box tests of the CPU's convolution kernels (test_conv_winograd.cpp,
// test_conv_few_channels.cpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernel_table.h"

namespace nn::test {

// A 3x3 stride-1 convolution of x (n, c, h, w) into o channels, padding `pad` on every side.
inline Conv2dGeometry geometry(int64_t n, int64_t c, int64_t o, int64_t h, int64_t w, int64_t pad) {
  return Conv2dGeometry::from({n, c, h, w}, {o, c, 3, 3}, {1, 1}, {pad, pad});
}

// n values ~ N(0, scale^2) from `seed`.
inline std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// How many of `pooled` (N, O, OH/2, OW/2) differ in their bits from the 2x2 stride-2 max pool of
// y (N, O, OH, OW) by max_pool2d's rule (b replaces a when b > a or b is NaN, in window order; two
// NaNs count as equal); `nans` gets how many expected values are NaN.
inline int64_t max_pool_mismatches(const std::vector<float>& y, const std::vector<float>& pooled,
                                   const Conv2dGeometry& g, int64_t* nans) {
  const auto step = [](float a, float b) { return (b > a || std::isnan(b)) ? b : a; };
  const int64_t ph = g.oh / 2, pw = g.ow / 2;
  int64_t mismatches = 0;
  *nans = 0;
  for (int64_t p = 0; p < g.n * g.o; ++p)
    for (int64_t i = 0; i < ph; ++i)
      for (int64_t j = 0; j < pw; ++j) {
        const float* r0 = y.data() + (p * g.oh + 2 * i) * g.ow + 2 * j;
        const float* r1 = r0 + g.ow;
        const float want = step(step(step(r0[0], r0[1]), r1[0]), r1[1]);
        const float got = pooled[static_cast<size_t>((p * ph + i) * pw + j)];
        *nans += std::isnan(want);
        if (std::memcmp(&want, &got, sizeof got) != 0 && !(std::isnan(want) && std::isnan(got))) ++mismatches;
      }
  return mismatches;
}

}  // namespace nn::test
