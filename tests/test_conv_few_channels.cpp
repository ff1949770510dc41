// White-box tests of the CPU's direct forward convolution for 1-4 input channels
// (cpu/conv_few_channels_cpu.h): against a float64 direct convolution on odd sizes, paddings 0..2,
// 1..4 channels and output channel counts that leave partial blocks, the AVX2 and the portable
// loops; the 2x2 max pool in its epilogue against max_pool2d's rule, bit for bit; thread counts;
// and which geometries it takes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "conv_test_util.h"
#include "cpu/conv_few_channels_cpu.h"
#include "nn/parallel.h"

namespace nn::test {
namespace {

// y = relu?(conv(x, w) + bias), direct, in float64.
std::vector<double> reference(const std::vector<float>& x, const std::vector<float>& w, const float* bias, bool relu,
                              const Conv2dGeometry& g) {
  std::vector<double> y(static_cast<size_t>(g.n * g.o * g.oh * g.ow));
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t o = 0; o < g.o; ++o)
      for (int64_t r = 0; r < g.oh; ++r)
        for (int64_t q = 0; q < g.ow; ++q) {
          double s = bias ? bias[o] : 0.0;
          for (int64_t c = 0; c < g.c; ++c)
            for (int64_t i = 0; i < 3; ++i)
              for (int64_t j = 0; j < 3; ++j) {
                const int64_t ih = r + i - g.pad_h, iw = q + j - g.pad_w;
                if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
                s += static_cast<double>(w[static_cast<size_t>(((o * g.c + c) * 3 + i) * 3 + j)]) *
                     x[static_cast<size_t>(((n * g.c + c) * g.h + ih) * g.w + iw)];
              }
          y[static_cast<size_t>(((n * g.o + o) * g.oh + r) * g.ow + q)] = relu ? std::max(s, 0.0) : s;
        }
  return y;
}

std::string describe(const Conv2dGeometry& g) {
  return "N=" + std::to_string(g.n) + " C=" + std::to_string(g.c) + " O=" + std::to_string(g.o) +
         " HxW=" + std::to_string(g.h) + "x" + std::to_string(g.w) + " pad=" + std::to_string(g.pad_h);
}

// Every H, W in `sizes` with paddings 0..2 (where the output is not empty), channels 1..4 and
// output channels {1, 2, 5, 16} in turn, batch 1..2, bias and ReLU on and off.
void check_all(bool portable) {
  cpu::few_channels_use_portable_kernel(portable);
  const int64_t sizes[] = {1, 2, 3, 5, 7, 16, 19, 34};
  const int64_t outs[] = {1, 2, 5, 16};
  int64_t k = 0;
  double worst = 0;
  for (int64_t pad = 0; pad <= 2; ++pad)
    for (int64_t h : sizes)
      for (int64_t w : sizes) {
        if (h + 2 * pad - 2 < 1 || w + 2 * pad - 2 < 1) continue;
        const Conv2dGeometry g = geometry(1 + k % 2, 1 + k % 4, outs[(k / 4) % 4], h, w, pad);
        const bool bias = k % 3 != 0, relu = k % 5 < 2;
        ++k;
        ASSERT_TRUE(cpu::few_channels_applicable(g)) << describe(g);
        const auto x = random_vector(static_cast<size_t>(g.n * g.c * g.h * g.w), static_cast<uint32_t>(k));
        const auto wt = random_vector(static_cast<size_t>(g.o * g.c * 9), static_cast<uint32_t>(k + 1000));
        const auto b = random_vector(static_cast<size_t>(g.o), static_cast<uint32_t>(k + 2000));
        std::vector<float> y(static_cast<size_t>(g.n * g.o * g.oh * g.ow), std::nanf(""));  // must be overwritten
        cpu::conv_few_channels_forward(x.data(), wt.data(), bias ? b.data() : nullptr, relu, y.data(), g, false);
        const auto ref = reference(x, wt, bias ? b.data() : nullptr, relu, g);
        double err = 0, scale = 0;
        for (size_t i = 0; i < ref.size(); ++i) {
          err = std::max(err, std::abs(static_cast<double>(y[i]) - ref[i]));  // NaN: fails below
          if (std::isnan(y[i])) err = INFINITY;
          scale = std::max(scale, std::abs(ref[i]));
        }
        const double rel = scale > 0 ? err / scale : err;
        EXPECT_LE(rel, 1e-6) << describe(g) << (portable ? " portable" : "");
        worst = std::max(worst, rel);
      }
  cpu::few_channels_use_portable_kernel(false);
  EXPECT_GT(k, 150);
  std::printf("[ %lld cases, max relative error %.3g ]\n", static_cast<long long>(k), worst);
}

TEST(FewChannelsConv, MatchesFloat64DirectConvolution) { check_all(false); }

TEST(FewChannelsConv, PortableLoopsMatchFloat64DirectConvolution) { check_all(true); }

// The pooled output against the unpooled one pooled by hand with max_pool2d's rule (b wins when
// b > a or b is NaN, window order), bit for bit: odd sizes, partial column blocks, a NaN input
// without ReLU, both code paths.
TEST(FewChannelsConv, MaxPoolHasMaxPool2dBits) {
  struct Case {
    Conv2dGeometry g;
    bool relu, portable, nan;
  };
  const Case cases[] = {
      {geometry(2, 3, 16, 128, 128, 1), true, false, false},  // the pneumonia model's first layer
      {geometry(1, 3, 5, 13, 37, 1), true, false, false},     // odd: 13x37 -> 6x18
      {geometry(2, 2, 7, 9, 6, 0), false, false, false},      // 7x4 -> 3x2
      {geometry(1, 4, 3, 19, 21, 2), true, true, false},
      {geometry(1, 1, 2, 34, 40, 1), false, false, true},
      {geometry(1, 1, 2, 34, 40, 1), false, true, true},
  };
  uint32_t seed = 500;
  for (const Case& k : cases) {
    const Conv2dGeometry& g = k.g;
    auto x = random_vector(static_cast<size_t>(g.n * g.c * g.h * g.w), seed++);
    if (k.nan) x[static_cast<size_t>(5 * g.w + 6)] = std::nanf("");
    const auto w = random_vector(static_cast<size_t>(g.o * g.c * 9), seed++);
    const auto b = random_vector(static_cast<size_t>(g.o), seed++);
    const int64_t ph = g.oh / 2, pw = g.ow / 2;
    std::vector<float> y(static_cast<size_t>(g.n * g.o * g.oh * g.ow));
    std::vector<float> pooled(static_cast<size_t>(g.n * g.o * ph * pw), 12345.0f);  // must be overwritten
    cpu::few_channels_use_portable_kernel(k.portable);
    cpu::conv_few_channels_forward(x.data(), w.data(), b.data(), k.relu, y.data(), g, false);
    cpu::conv_few_channels_forward(x.data(), w.data(), b.data(), k.relu, pooled.data(), g, true);
    cpu::few_channels_use_portable_kernel(false);
    int64_t nans = 0;
    const int64_t mismatches = max_pool_mismatches(y, pooled, g, &nans);
    EXPECT_EQ(mismatches, 0) << describe(g) << (k.portable ? " portable" : "");
    EXPECT_EQ(nans > 0, k.nan) << describe(g);
  }
}

// The items split over threads: the same bits on one thread and on two.
TEST(FewChannelsConv, ThreadCountDoesNotChangeTheBits) {
  const Conv2dGeometry g = geometry(3, 3, 64, 40, 56, 1);
  const auto x = random_vector(static_cast<size_t>(g.n * g.c * g.h * g.w), 1);
  const auto w = random_vector(static_cast<size_t>(g.o * g.c * 9), 2);
  const auto b = random_vector(static_cast<size_t>(g.o), 3);
  std::vector<float> one(static_cast<size_t>(g.n * g.o * g.oh * g.ow)), two(one.size());
  const int threads = get_num_threads();
  set_num_threads(1);
  cpu::conv_few_channels_forward(x.data(), w.data(), b.data(), true, one.data(), g, false);
  set_num_threads(2);
  cpu::conv_few_channels_forward(x.data(), w.data(), b.data(), true, two.data(), g, false);
  set_num_threads(threads);
  EXPECT_EQ(one, two);
}

TEST(FewChannelsConv, TakesOnlyItsGeometries) {
  EXPECT_TRUE(cpu::few_channels_applicable(geometry(1, 3, 64, 224, 224, 1)));
  EXPECT_TRUE(cpu::few_channels_applicable(geometry(2, 4, 1, 1, 1, 1)));
  EXPECT_FALSE(cpu::few_channels_applicable(geometry(1, 5, 64, 32, 32, 1)));  // more than 4 channels
  EXPECT_FALSE(cpu::few_channels_applicable(
      Conv2dGeometry::from({1, 3, 32, 32}, {8, 3, 3, 3}, {2, 2}, {1, 1})));  // stride 2
  EXPECT_FALSE(cpu::few_channels_applicable(
      Conv2dGeometry::from({1, 3, 32, 32}, {8, 3, 5, 5}, {1, 1}, {2, 2})));  // 5x5
  EXPECT_FALSE(cpu::few_channels_applicable(
      Conv2dGeometry::from({1, 3, 32, 32}, {8, 3, 3, 3}, {1, 1}, {3, 3})));  // padding 3
}

}  // namespace
}  // namespace nn::test
