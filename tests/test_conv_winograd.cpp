// White-box tests of the CPU backend's Winograd F(4x4, 3x3) convolution (cpu/conv_winograd_cpu.h):
// forward (with and without bias and ReLU) and backward-input against a float64 direct convolution
// written here, on odd sizes, paddings 0..2, batches 1..3 and VGG16's channel counts (spatially
// cropped), plus the threading paths and winograd_applicable's decisions.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "conv_test_util.h"
#include "cpu/conv_winograd_cpu.h"
#include "nn/autograd.h"
#include "nn/error.h"
#include "nn/ops.h"
#include "nn/optim.h"
#include "nn/parallel.h"

namespace nn::test {
namespace {

// y = relu?(conv(x, w) + bias), direct, in float64.
std::vector<double> ref_forward(const std::vector<float>& x, const std::vector<float>& w, const float* bias, bool relu,
                                const Conv2dGeometry& g) {
  std::vector<double> y(static_cast<size_t>(g.n * g.o * g.oh * g.ow));
  std::vector<double> acc(static_cast<size_t>(g.oh * g.ow));
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t o = 0; o < g.o; ++o) {
      std::fill(acc.begin(), acc.end(), bias ? static_cast<double>(bias[o]) : 0.0);
      for (int64_t c = 0; c < g.c; ++c)
        for (int64_t i = 0; i < 3; ++i)
          for (int64_t j = 0; j < 3; ++j) {
            const double wv = w[static_cast<size_t>(((o * g.c + c) * 3 + i) * 3 + j)];
            const float* xc = x.data() + (n * g.c + c) * g.h * g.w;
            // Output columns whose input column ow - pad + j lies in [0, W).
            const int64_t lo = std::max<int64_t>(0, g.pad_w - j), hi = std::min(g.ow, g.w + g.pad_w - j);
            for (int64_t oh = 0; oh < g.oh; ++oh) {
              const int64_t ih = oh - g.pad_h + i;
              if (ih < 0 || ih >= g.h) continue;
              const float* row = xc + ih * g.w - g.pad_w + j;
              double* out = acc.data() + oh * g.ow;
              for (int64_t ow = lo; ow < hi; ++ow) out[ow] += wv * row[ow];
            }
          }
      double* dst = y.data() + (n * g.o + o) * g.oh * g.ow;
      for (size_t k = 0; k < acc.size(); ++k) dst[k] = relu ? std::max(acc[k], 0.0) : acc[k];
    }
  return y;
}

// dx = d conv / d x applied to dy, direct (the adjoint of the forward loops), in float64.
std::vector<double> ref_backward_input(const std::vector<float>& dy, const std::vector<float>& w,
                                       const Conv2dGeometry& g) {
  std::vector<double> dx(static_cast<size_t>(g.n * g.c * g.h * g.w), 0.0);
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t o = 0; o < g.o; ++o)
      for (int64_t c = 0; c < g.c; ++c)
        for (int64_t i = 0; i < 3; ++i)
          for (int64_t j = 0; j < 3; ++j) {
            const double wv = w[static_cast<size_t>(((o * g.c + c) * 3 + i) * 3 + j)];
            const float* dyo = dy.data() + (n * g.o + o) * g.oh * g.ow;
            double* dxc = dx.data() + (n * g.c + c) * g.h * g.w;
            const int64_t lo = std::max<int64_t>(0, g.pad_w - j), hi = std::min(g.ow, g.w + g.pad_w - j);
            for (int64_t oh = 0; oh < g.oh; ++oh) {
              const int64_t ih = oh - g.pad_h + i;
              if (ih < 0 || ih >= g.h) continue;
              double* row = dxc + ih * g.w - g.pad_w + j;
              const float* in = dyo + oh * g.ow;
              for (int64_t ow = lo; ow < hi; ++ow) row[ow] += wv * in[ow];
            }
          }
  return dx;
}

// dw[o][c][i][j] = sum_{n,oh,ow} dy[n][o][oh][ow] * x[n][c][oh+i-pad][ow+j-pad], direct, in float64.
std::vector<double> ref_backward_weight(const std::vector<float>& dy, const std::vector<float>& x,
                                        const Conv2dGeometry& g) {
  std::vector<double> dw(static_cast<size_t>(g.o * g.c * 9), 0.0);
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t o = 0; o < g.o; ++o)
      for (int64_t c = 0; c < g.c; ++c)
        for (int64_t i = 0; i < 3; ++i)
          for (int64_t j = 0; j < 3; ++j) {
            const float* dyo = dy.data() + (n * g.o + o) * g.oh * g.ow;
            const float* xc = x.data() + (n * g.c + c) * g.h * g.w;
            const int64_t lo = std::max<int64_t>(0, g.pad_w - j), hi = std::min(g.ow, g.w + g.pad_w - j);
            double sum = 0;
            for (int64_t oh = 0; oh < g.oh; ++oh) {
              const int64_t ih = oh - g.pad_h + i;
              if (ih < 0 || ih >= g.h) continue;
              const float* row = xc + ih * g.w - g.pad_w + j;
              const float* d = dyo + oh * g.ow;
              for (int64_t ow = lo; ow < hi; ++ow) sum += static_cast<double>(d[ow]) * row[ow];
            }
            dw[static_cast<size_t>(((o * g.c + c) * 3 + i) * 3 + j)] += sum;
          }
  return dw;
}

// max|y - ref| / max|ref| (the absolute error when ref is all zero).
double relative_error(const std::vector<float>& y, const std::vector<double>& ref) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    err = std::max(err, std::abs(static_cast<double>(y[i]) - ref[i]));
    scale = std::max(scale, std::abs(ref[i]));
  }
  return scale > 0 ? err / scale : err;
}

struct Result {
  double forward, backward;
};

// Runs both passes on random data from `seed` and returns their relative errors.
Result check(const Conv2dGeometry& g, bool bias, bool relu, uint32_t seed) {
  const auto x = random_vector(static_cast<size_t>(g.n * g.c * g.h * g.w), seed);
  // PyTorch's default init scale (kaiming uniform ~ 1/sqrt(fan_in)) keeps outputs O(1).
  const auto w = random_vector(static_cast<size_t>(g.o * g.c * 9), seed + 1, 1.0f / std::sqrt(9.0f * g.c));
  const auto b = random_vector(static_cast<size_t>(g.o), seed + 2);
  const auto dy = random_vector(static_cast<size_t>(g.n * g.o * g.oh * g.ow), seed + 3);
  // Poisoned outputs: both passes must overwrite every element.
  std::vector<float> y(static_cast<size_t>(g.n * g.o * g.oh * g.ow), std::nanf(""));
  std::vector<float> dx(x.size(), std::nanf(""));
  cpu::winograd_conv2d_forward(x.data(), w.data(), bias ? b.data() : nullptr, relu, y.data(), g);
  cpu::winograd_conv2d_backward_input(dy.data(), w.data(), dx.data(), g);
  return {relative_error(y, ref_forward(x, w, bias ? b.data() : nullptr, relu, g)),
          relative_error(dx, ref_backward_input(dy, w, g))};
}

// Runs the backward-weight pass on random x ~ N(0,1), dy ~ N(0,1) and returns its relative error.
double check_weight(const Conv2dGeometry& g, uint32_t seed) {
  const auto x = random_vector(static_cast<size_t>(g.n * g.c * g.h * g.w), seed);
  const auto dy = random_vector(static_cast<size_t>(g.n * g.o * g.oh * g.ow), seed + 3);
  std::vector<float> dw(static_cast<size_t>(g.o * g.c * 9), std::nanf(""));  // must be overwritten
  cpu::winograd_conv2d_backward_weight(dy.data(), x.data(), dw.data(), g);
  return relative_error(dw, ref_backward_weight(dy, x, g));
}

std::string describe(const Conv2dGeometry& g) {
  char s[160];
  std::snprintf(s, sizeof s, "N=%lld C=%lld O=%lld HxW=%lldx%lld pad=%lld", static_cast<long long>(g.n),
                static_cast<long long>(g.c), static_cast<long long>(g.o), static_cast<long long>(g.h),
                static_cast<long long>(g.w), static_cast<long long>(g.pad_h));
  return s;
}

// Every H, W in {1, 2, 3, 5, 7, 13, 17} with paddings 0..2 (where the output is not empty); the
// channel counts, batch, bias and ReLU cycle through {1, 3, 64, 70}, 1..3, on/off.
// Calls f(k, h, w, pad, c, o) for every H, W in `sizes` and padding 0..2 whose output is not
// empty, the channel counts cycling through `channels` with the case number k; returns the count.
template <size_t S, typename F>
int64_t for_each_odd_case(const int64_t (&sizes)[S], const int64_t (&channels)[4], const F& f) {
  int64_t index = 0;
  for (int64_t pad = 0; pad <= 2; ++pad)
    for (int64_t h : sizes)
      for (int64_t w : sizes) {
        if (h + 2 * pad - 2 < 1 || w + 2 * pad - 2 < 1) continue;
        const int64_t k = index++;
        f(k, h, w, pad, channels[k % 4], channels[(k / 4 + k) % 4]);
      }
  return index;
}

TEST(WinogradConv, OddSizesAllPaddings) {
  const int64_t sizes[] = {1, 2, 3, 5, 7, 13, 17};
  const int64_t channels[] = {1, 3, 64, 70};
  double worst = 0;
  const int64_t index = for_each_odd_case(sizes, channels, [&](int64_t k, int64_t h, int64_t w, int64_t pad, int64_t c, int64_t o) {
    // Keep the big-channel cases on small images.
    const int64_t n = (c >= 64 && o >= 64 && h * w > 50) ? 1 : 1 + k % 3;
    const auto g = geometry(n, c, o, h, w, pad);
    const Result r = check(g, k % 2 == 0, k % 3 == 0, static_cast<uint32_t>(100 + k));
    EXPECT_LE(r.forward, 1e-5) << describe(g);
    EXPECT_LE(r.backward, 1e-5) << describe(g);
    worst = std::max({worst, r.forward, r.backward});
  });
  EXPECT_GT(index, 100);
  std::printf("[ odd sizes: %lld cases, max relative error %.3g ]\n", static_cast<long long>(index), worst);
}

struct VggLayer {
  int64_t c, o, size;
};
// VGG16's distinct conv layers (3x3, padding 1), C -> O at size x size.
const VggLayer kVgg16[] = {{3, 64, 224},    {64, 64, 224},   {64, 128, 112}, {128, 128, 112}, {128, 256, 56},
                           {256, 256, 56},  {256, 512, 28},  {512, 512, 28}, {512, 512, 14}};

// The channel counts of every VGG16 layer at batch 1, on images cropped to keep the test fast (the
// reference and, until the packed GEMM lands, the GEMM are plain loops): 20x24 up to 128 channels,
// 16x20 at 256, 14x14 at 512 (the last block's true size). The bound: relative error <= 1e-4.
TEST(WinogradConv, Vgg16LayerShapes) {
  double worst = 0;
  for (size_t i = 0; i < std::size(kVgg16); ++i) {
    const VggLayer& l = kVgg16[i];
    const int64_t big = std::max(l.c, l.o);
    const int64_t h = std::min<int64_t>(l.size, big <= 128 ? 20 : big <= 256 ? 16 : 14);
    const int64_t w = std::min<int64_t>(l.size, big <= 128 ? 24 : big <= 256 ? 20 : 14);
    const auto g = geometry(1, l.c, l.o, h, w, 1);
    const Result r = check(g, true, i % 2 == 1, static_cast<uint32_t>(7 + i));
    EXPECT_LE(r.forward, 1e-4) << describe(g);
    EXPECT_LE(r.backward, 1e-4) << describe(g);
    worst = std::max({worst, r.forward, r.backward});
    std::printf("[ VGG16 %lld->%lld (%lldx%lld of %lld): forward %.3g, backward input %.3g ]\n",
                static_cast<long long>(l.c), static_cast<long long>(l.o), static_cast<long long>(h),
                static_cast<long long>(w), static_cast<long long>(l.size), r.forward, r.backward);
  }
  std::printf("[ VGG16 shapes: max relative error %.3g ]\n", worst);
}

// Enough tiles for several blocks per call: blocks cross tile rows and images, the threads take
// blocks of their own. Then the same on one thread, and inside a parallel region (serial there).
TEST(WinogradConv, ManyTilesAcrossImagesAndThreads) {
  const auto g = geometry(3, 64, 72, 30, 34, 1);
  const Result threaded = check(g, true, true, 42);
  EXPECT_LE(threaded.forward, 1e-5);
  EXPECT_LE(threaded.backward, 1e-5);

  const int threads = get_num_threads();
  set_num_threads(1);
  const Result serial = check(g, true, false, 43);
  set_num_threads(threads);
  EXPECT_LE(serial.forward, 1e-5);
  EXPECT_LE(serial.backward, 1e-5);

  Result inner[2] = {{1, 1}, {1, 1}};
#pragma omp parallel num_threads(2)
  {
    const int t = omp_get_thread_num();
    if (t < 2) inner[t] = check(geometry(1 + t, 64, 64, 17 + t, 19, 1), t == 0, t == 1, 50u + t);
  }
  for (const Result& r : inner) {
    EXPECT_LE(r.forward, 1e-5);
    EXPECT_LE(r.backward, 1e-5);
  }
}

// Few tiles, many channels: the threads share the input transform and split the output channels.
TEST(WinogradConv, FewTilesManyChannels) {
  for (int64_t pad = 0; pad <= 2; ++pad) {
    const auto g = geometry(1, 128, 160, 9, 11, pad);
    const Result r = check(g, true, pad == 1, static_cast<uint32_t>(60 + pad));
    EXPECT_LE(r.forward, 1e-5) << describe(g);
    EXPECT_LE(r.backward, 1e-5) << describe(g);
  }
}

// The portable transforms (what runs on CPUs without AVX2/FMA) on a few edge cases.
TEST(WinogradConv, PortableKernels) {
  cpu::winograd_use_portable_kernels(true);
  double worst = 0;
  for (int64_t pad = 0; pad <= 2; ++pad) {
    for (const auto& g : {geometry(2, 5, 7, 13, 17, pad), geometry(1, 64, 70, 17, 37, pad), geometry(3, 3, 1, 5, 3, pad)}) {
      const Result r = check(g, pad != 1, pad == 2, static_cast<uint32_t>(70 + pad));
      EXPECT_LE(r.forward, 1e-5) << describe(g);
      EXPECT_LE(r.backward, 1e-5) << describe(g);
      worst = std::max({worst, r.forward, r.backward});
    }
  }
  cpu::winograd_use_portable_kernels(false);
  std::printf("[ portable kernels: max relative error %.3g ]\n", worst);
}

// The 2x2 max pool made in the output pass (max_pool_2x2) against the unpooled output pooled by
// hand with max_pool2d's comparison (b wins when b > a or b is NaN, window order), bit for bit:
// odd output sizes (floor mode drops the last row or column), a pooled output of one row, many
// tiles over threads and images, few tiles split over output channels, the portable kernels, and a
// NaN in the input without ReLU (the pool must carry it as max_pool2d does).
TEST(WinogradConv, MaxPoolInTheOutputPassHasMaxPool2dBits) {
  struct Case {
    Conv2dGeometry g;
    bool relu, portable, nan;
  };
  const Case cases[] = {
      {geometry(2, 16, 24, 13, 15, 1), true, false, false},   // 13x15 -> 6x7
      {geometry(3, 20, 17, 6, 5, 0), false, false, false},    // 4x3 -> 2x1
      {geometry(1, 64, 72, 62, 66, 1), true, false, false},   // blocks over both threads
      {geometry(1, 128, 160, 9, 11, 2), true, false, false},  // 11x13, few tiles: split over O
      {geometry(2, 16, 24, 13, 15, 1), false, true, false},
      {geometry(1, 64, 70, 17, 37, 1), true, true, false},
      {geometry(1, 16, 16, 14, 14, 1), false, false, true},
      {geometry(1, 16, 16, 14, 14, 1), false, true, true},
  };
  uint32_t seed = 300;
  for (const Case& k : cases) {
    const Conv2dGeometry& g = k.g;
    auto x = random_vector(static_cast<size_t>(g.n * g.c * g.h * g.w), seed++);
    if (k.nan) x[static_cast<size_t>(5 * g.w + 6)] = std::nanf("");
    const auto w = random_vector(static_cast<size_t>(g.o * g.c * 9), seed++, 1.0f / std::sqrt(9.0f * g.c));
    const auto b = random_vector(static_cast<size_t>(g.o), seed++);
    const int64_t ph = g.oh / 2, pw = g.ow / 2;
    std::vector<float> y(static_cast<size_t>(g.n * g.o * g.oh * g.ow));
    std::vector<float> pooled(static_cast<size_t>(g.n * g.o * ph * pw), std::nanf(""));  // must be overwritten
    if (k.nan) std::fill(pooled.begin(), pooled.end(), 12345.0f);
    cpu::winograd_use_portable_kernels(k.portable);
    cpu::winograd_conv2d_forward(x.data(), w.data(), b.data(), k.relu, y.data(), g);
    cpu::winograd_conv2d_forward(x.data(), w.data(), b.data(), k.relu, pooled.data(), g, nullptr, true);
    cpu::winograd_use_portable_kernels(false);
    int64_t nans = 0;
    const int64_t mismatches = max_pool_mismatches(y, pooled, g, &nans);
    EXPECT_EQ(mismatches, 0) << describe(g) << (k.portable ? " portable" : "") << (k.relu ? " relu" : "");
    EXPECT_EQ(nans > 0, k.nan) << describe(g);
  }
}

// Backward weight on every H, W in {1, 2, 3, 5, 7, 13} with paddings 0..2; channels cycle through
// {1, 3, 16, 70}, batch through 1..3.
TEST(WinogradConv, BackwardWeightOddSizes) {
  const int64_t sizes[] = {1, 2, 3, 5, 7, 13};
  const int64_t channels[] = {1, 3, 16, 70};
  double worst = 0;
  const int64_t index = for_each_odd_case(sizes, channels, [&](int64_t k, int64_t h, int64_t w, int64_t pad, int64_t c, int64_t o) {
    const auto g = geometry(1 + k % 3, c, o, h, w, pad);
    const double err = check_weight(g, static_cast<uint32_t>(300 + k));
    EXPECT_LE(err, 1e-4) << describe(g);
    worst = std::max(worst, err);
  });
  EXPECT_GT(index, 70);
  std::printf("[ backward weight, odd sizes: %lld cases, max relative error %.3g ]\n", static_cast<long long>(index),
              worst);
}

// VGG16's channel counts, images cropped (the float64 reference is slow), batch 2 (the sum runs
// over images too).
TEST(WinogradConv, BackwardWeightVgg16LayerShapes) {
  double worst = 0;
  for (size_t i = 0; i < std::size(kVgg16); ++i) {
    const VggLayer& l = kVgg16[i];
    const int64_t big = std::max(l.c, l.o);
    const int64_t h = std::min<int64_t>(l.size, big <= 128 ? 20 : big <= 256 ? 12 : 7);
    const int64_t w = std::min<int64_t>(l.size, big <= 128 ? 24 : big <= 256 ? 12 : 8);
    const auto g = geometry(2, l.c, l.o, h, w, 1);
    const double err = check_weight(g, static_cast<uint32_t>(400 + i));
    EXPECT_LE(err, 1e-4) << describe(g);
    worst = std::max(worst, err);
    std::printf("[ VGG16 %lld->%lld (2 x %lldx%lld of %lld): backward weight %.3g ]\n", static_cast<long long>(l.c),
                static_cast<long long>(l.o), static_cast<long long>(h), static_cast<long long>(w),
                static_cast<long long>(l.size), err);
  }
  std::printf("[ VGG16 shapes, backward weight: max relative error %.3g ]\n", worst);
}

// The threading paths of the backward-weight pass: many tiles (blocks per thread, private
// accumulators summed at the end), few tiles (blocks split over channels), one thread, inside a
// parallel region; and the portable transforms.
TEST(WinogradConv, BackwardWeightThreadsAndPortable) {
  const Conv2dGeometry many = geometry(3, 32, 40, 30, 34, 1), few = geometry(1, 128, 160, 9, 11, 0);
  EXPECT_LE(check_weight(many, 500), 1e-4);
  EXPECT_LE(check_weight(few, 501), 1e-4);
  const int threads = get_num_threads();
  set_num_threads(1);
  EXPECT_LE(check_weight(many, 502), 1e-4);
  set_num_threads(threads);
  double inner[2] = {1, 1};
#pragma omp parallel num_threads(2)
  {
    const int t = omp_get_thread_num();
    if (t < 2) inner[t] = check_weight(geometry(1 + t, 32, 24, 17 + t, 19, 1), 510u + t);
  }
  EXPECT_LE(inner[0], 1e-4);
  EXPECT_LE(inner[1], 1e-4);
  cpu::winograd_use_portable_kernels(true);
  for (int64_t pad = 0; pad <= 2; ++pad) {
    EXPECT_LE(check_weight(geometry(2, 5, 7, 13, 17, pad), 520u + pad), 1e-4);
    EXPECT_LE(check_weight(geometry(1, 20, 18, 17, 37, pad), 530u + pad), 1e-4);
  }
  cpu::winograd_use_portable_kernels(false);
}

TEST(WinogradConv, ApplicableDecisions) {
  for (const VggLayer& l : kVgg16) {
    const auto g = geometry(8, l.c, l.o, l.size, l.size, 1);
    EXPECT_EQ(cpu::winograd_applicable(g), l.c >= cpu::kWinogradMinChannels) << describe(g);
  }
  const auto base = geometry(1, 64, 64, 28, 28, 1);
  EXPECT_TRUE(cpu::winograd_applicable(base));
  EXPECT_TRUE(cpu::winograd_applicable(geometry(1, 64, 64, 28, 28, 0)));
  EXPECT_TRUE(cpu::winograd_applicable(geometry(1, 64, 64, 28, 28, 2)));
  EXPECT_FALSE(cpu::winograd_applicable(geometry(1, 64, 64, 28, 28, 3)));
  EXPECT_FALSE(cpu::winograd_applicable(geometry(1, cpu::kWinogradMinChannels - 1, 64, 28, 28, 1)));
  EXPECT_FALSE(cpu::winograd_applicable(geometry(1, 64, cpu::kWinogradMinChannels - 1, 28, 28, 1)));
  EXPECT_FALSE(cpu::winograd_applicable(geometry(1, 3, 64, 224, 224, 1)));
  // Tiny images: 4x4 tiles mostly padding.
  EXPECT_FALSE(cpu::winograd_applicable(geometry(8, 512, 512, 1, 1, 1)));
  EXPECT_FALSE(cpu::winograd_applicable(geometry(8, 512, 512, 2, 2, 1)));
  EXPECT_FALSE(cpu::winograd_applicable(geometry(8, 512, 512, 5, 5, 1)));
  EXPECT_TRUE(cpu::winograd_applicable(geometry(8, 512, 512, 7, 7, 1)));
  EXPECT_TRUE(cpu::winograd_applicable(geometry(1, 64, 64, 3, 3, 1)));
  EXPECT_TRUE(cpu::winograd_applicable(geometry(1, 16, 16, 4, 4, 1)));
  // Big weights (36*C*O floats > 4 MiB) need enough outputs to amortise their transform.
  EXPECT_FALSE(cpu::winograd_applicable(geometry(1, 512, 512, 14, 14, 1)));
  // ... unless the transform is cached (inference with nn::set_conv_weight_cache): nothing to amortise.
  EXPECT_TRUE(cpu::winograd_applicable(geometry(1, 512, 512, 14, 14, 1), true));
  EXPECT_TRUE(cpu::winograd_applicable(geometry(8, 256, 256, 4, 4, 1), true));
  EXPECT_FALSE(cpu::winograd_applicable(geometry(8, 512, 512, 2, 2, 1), true));  // the tiles rule still holds
  EXPECT_TRUE(cpu::winograd_applicable(geometry(2, 512, 512, 14, 14, 1)));
  EXPECT_TRUE(cpu::winograd_applicable(geometry(1, 512, 512, 28, 28, 1)));
  EXPECT_TRUE(cpu::winograd_applicable(geometry(1, 128, 128, 14, 14, 1)));
  EXPECT_FALSE(cpu::winograd_applicable(geometry(8, 256, 256, 4, 4, 1)));
  EXPECT_TRUE(cpu::winograd_applicable(geometry(8, 64, 64, 4, 4, 1)));
  // The backward-weight pass follows the same rule.
  for (const auto& gg : {base, geometry(1, 3, 64, 224, 224, 1), geometry(8, 512, 512, 2, 2, 1),
                         geometry(1, 512, 512, 14, 14, 1), geometry(8, 512, 512, 7, 7, 1),
                         geometry(32, 16, 16, 128, 128, 1)})
    EXPECT_EQ(cpu::winograd_backward_weight_applicable(gg), cpu::winograd_applicable(gg)) << describe(gg);
  // Not a 3x3 stride-1 kernel.
  const Shape x = {1, 64, 28, 28};
  EXPECT_FALSE(cpu::winograd_applicable(Conv2dGeometry::from(x, {64, 64, 3, 3}, {2, 2}, {1, 1})));
  EXPECT_FALSE(cpu::winograd_applicable(Conv2dGeometry::from(x, {64, 64, 1, 1}, {1, 1}, {0, 0})));
  EXPECT_FALSE(cpu::winograd_applicable(Conv2dGeometry::from(x, {64, 64, 5, 5}, {1, 1}, {2, 2})));
  EXPECT_FALSE(cpu::winograd_applicable(Conv2dGeometry::from(x, {64, 64, 3, 1}, {1, 1}, {1, 0})));
}

TEST(WinogradConv, RejectsOtherGeometries) {
  std::vector<float> buf(64 * 64 * 9 * 4, 0.0f);
  auto g = Conv2dGeometry::from({1, 4, 8, 8}, {4, 4, 3, 3}, {2, 1}, {1, 1});
  EXPECT_THROW(cpu::winograd_conv2d_forward(buf.data(), buf.data(), nullptr, false, buf.data(), g), Error);
  g = geometry(1, 4, 4, 8, 8, 3);
  EXPECT_THROW(cpu::winograd_conv2d_backward_input(buf.data(), buf.data(), buf.data(), g), Error);
  EXPECT_THROW(cpu::winograd_conv2d_backward_weight(buf.data(), buf.data(), buf.data(), g), Error);
}

}  // namespace
}  // namespace nn::test

// ---- the inference weight cache (nn::set_conv_weight_cache) ----

namespace nn::test {
namespace {

// Turns the cache on for a scope.
struct WeightCacheOn {
  WeightCacheOn() { set_conv_weight_cache(true); }
  ~WeightCacheOn() { set_conv_weight_cache(false); }
};

Tensor conv_pad1(const Tensor& x, const Tensor& w, const Tensor& b) {
  NoGradGuard no_grad;
  Conv2dOptions o;
  o.padding = {1, 1};
  o.relu = true;
  return conv2d(x, w, b, o);
}

bool bitwise_equal(const Tensor& a, const Tensor& b) { return a.to_vector<float>() == b.to_vector<float>(); }

TEST(WinogradWeightCache, SameBitsAsTransformingEveryCallOnBothPaths) {
  Generator gen(91);
  // 128 channels at 12x12, batch 1: few tiles (one block split over output channels, whose
  // packed chunks are cached); 32 -> 48 channels at 32x32, batch 4: blocks per thread, with the
  // packed point matrices cached. Both have enough work for every thread.
  const int threads = get_num_threads();
  set_num_threads(2);
  for (const auto& [shape, o] : {std::pair<Shape, int64_t>{{1, 128, 12, 12}, 128}, {{4, 32, 32, 32}, 48}}) {
    const Tensor x = randn(shape, gen), w = randn({o, shape[1], 3, 3}, gen), b = randn({o}, gen);
    ASSERT_TRUE(cpu::winograd_applicable(Conv2dGeometry::from(shape, w.shape(), {1, 1}, {1, 1})));
    const Tensor expected = conv_pad1(x, w, b);
    WeightCacheOn cache;
    EXPECT_TRUE(bitwise_equal(conv_pad1(x, w, b), expected));  // transforms and keeps
    EXPECT_TRUE(bitwise_equal(conv_pad1(x, w, b), expected));  // reuses
  }
  set_num_threads(threads);
}

TEST(WinogradWeightCache, BigWeightsAtBatchOneTakeWinogradOnlyWhenCached) {
  // 256 -> 256 channels at 14x14, one image: a 9.4 MB transform for 196 outputs. Transformed on
  // every call it does not pay (im2col + GEMM); cached, it does. Both within 1e-4 of float64.
  Generator gen(93);
  const Tensor x = randn({1, 256, 14, 14}, gen), w = mul(randn({256, 256, 3, 3}, gen), 1.0 / 48.0),
               b = randn({256}, gen);
  const Conv2dGeometry g = Conv2dGeometry::from(x.shape(), w.shape(), {1, 1}, {1, 1});
  ASSERT_FALSE(cpu::winograd_applicable(g));
  ASSERT_TRUE(cpu::winograd_applicable(g, true));
  const std::vector<float> bv = b.to_vector<float>();
  const std::vector<double> ref = ref_forward(x.to_vector<float>(), w.to_vector<float>(), bv.data(), true, g);
  const Tensor direct = conv_pad1(x, w, b);
  EXPECT_LE(relative_error(direct.to_vector<float>(), ref), 1e-5);
  WeightCacheOn cache;
  const Tensor winograd = conv_pad1(x, w, b);
  EXPECT_LE(relative_error(winograd.to_vector<float>(), ref), 1e-4);
  EXPECT_FALSE(bitwise_equal(winograd, direct));  // another algorithm ran
  EXPECT_TRUE(bitwise_equal(conv_pad1(x, w, b), winograd));  // and the cached transform is reused
}

TEST(WinogradWeightCache, FollowsWritesToTheWeight) {
  Generator gen(92);
  const Tensor x = randn({2, 32, 16, 16}, gen), b = randn({48}, gen);
  Tensor w = randn({48, 32, 3, 3}, gen).requires_grad_();
  WeightCacheOn cache;
  const Tensor before = conv_pad1(x, w, b);
  {  // an in-place write through nn
    NoGradGuard no_grad;
    w.mul_(-0.5);
  }
  set_conv_weight_cache(false);
  const Tensor halved = conv_pad1(x, w, b);
  set_conv_weight_cache(true);
  EXPECT_FALSE(bitwise_equal(halved, before));
  EXPECT_TRUE(bitwise_equal(conv_pad1(x, w, b), halved));
  // An optimizer step (raw writes that bump the version counter).
  w.set_grad(randn({48, 32, 3, 3}, gen));
  optim::SGD sgd({w}, 0.1);
  sgd.step();
  set_conv_weight_cache(false);
  const Tensor stepped = conv_pad1(x, w, b);
  set_conv_weight_cache(true);
  EXPECT_FALSE(bitwise_equal(stepped, halved));
  EXPECT_TRUE(bitwise_equal(conv_pad1(x, w, b), stepped));
  // A new weight at (possibly) the same address: a different storage, transformed afresh.
  for (int k = 0; k < 3; ++k) {
    const Tensor w2 = randn({48, 32, 3, 3}, gen);
    const Tensor cached = conv_pad1(x, w2, b);
    set_conv_weight_cache(false);
    EXPECT_TRUE(bitwise_equal(cached, conv_pad1(x, w2, b)));
    set_conv_weight_cache(true);
  }
}

}  // namespace
}  // namespace nn::test
