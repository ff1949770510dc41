// conv2d on CUDA (kernels/conv_cuda.cu: implicit GEMM, and conv_winograd_cuda.cu: Winograd
// F(4x4, 3x3) for 3x3 stride-1 layers with >= 16 channels each side) through the public API,
// against the CPU backend: the same f32 inputs are run in f64 on the CPU (the reference) and in f32
// on the device, forward and autograd backward (gradients of x, w and bias for a fixed random dy),
// and compared element by element within 1e-4 relative to max(|reference|, its RMS). The cases
// cover the paths of the kernels: 1x1, 3x3 (the implicit GEMM's specialised path: fewer than 16
// channels on one side, or stride 2), 5x5, 7x7 and non-square kernels; strides 1, 2, 3 and mixed;
// padding 0, 1, 2 and larger than the kernel; odd sizes (tiles cut at every edge, pixel tiles that
// straddle images, output channels past one block); bias, no bias, fused ReLU; split-K and unsplit
// weight gradients. The Winograd cases: C, O in {16, 17, 64}, images whose 4x4 tiles hang over the
// right and bottom edges (13x17, 7x5, 9x11), batch 1 and 3, padding 0, 1, 2 and mixed, outputs
// whose width is a multiple of 4 (the vector stores), many tiles (the weight gradient's depth
// segments). Skips without a device.
#include <gtest/gtest.h>
#include <nn/nn.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace {

#define REQUIRE_CUDA() \
  if (!nn::cuda_available()) GTEST_SKIP() << "no CUDA device"

struct ConvCase {
  int64_t n, c, h, w;
  int64_t o, kh, kw;
  int64_t stride_h, stride_w, pad_h, pad_w;
  bool bias;
  bool relu;
  uint64_t seed;
};

std::string describe(const ConvCase& k) {
  return "x (" + std::to_string(k.n) + "," + std::to_string(k.c) + "," + std::to_string(k.h) + "," +
         std::to_string(k.w) + ") w (" + std::to_string(k.o) + "," + std::to_string(k.c) + "," + std::to_string(k.kh) +
         "," + std::to_string(k.kw) + ") stride (" + std::to_string(k.stride_h) + "," + std::to_string(k.stride_w) +
         ") pad (" + std::to_string(k.pad_h) + "," + std::to_string(k.pad_w) + ")" + (k.bias ? " bias" : "") +
         (k.relu ? " relu" : "");
}

// Every element of `actual` (device f32) within 1e-4 * max(|expected|, RMS of expected) of
// `expected` (CPU f64).
void expect_close(const nn::Tensor& actual, const nn::Tensor& expected, const std::string& what) {
  ASSERT_TRUE(actual.defined()) << what << ": no gradient";
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  const std::vector<float> a = actual.to(nn::Device::cpu()).to_vector<float>();
  const std::vector<double> e = expected.to_vector<double>();
  double sum_sq = 0;
  for (double v : e) sum_sq += v * v;
  const double rms = e.empty() ? 0.0 : std::sqrt(sum_sq / static_cast<double>(e.size()));
  int reported = 0;
  for (size_t i = 0; i < e.size(); ++i) {
    const double tolerance = 1e-4 * std::max({std::abs(e[i]), rms, 1e-6});
    if (!(std::abs(a[i] - e[i]) <= tolerance)) {
      ADD_FAILURE() << what << "[" << i << "] = " << a[i] << ", expected " << e[i] << " (tolerance " << tolerance
                    << ")";
      if (++reported == 5) return;
    }
  }
}

// Forward and all gradients on the device against the CPU in f64.
void check_conv(const ConvCase& k) {
  SCOPED_TRACE(describe(k));
  nn::Generator gen(k.seed);
  const nn::Tensor x = nn::randn({k.n, k.c, k.h, k.w}, gen);
  const nn::Tensor w = nn::randn({k.o, k.c, k.kh, k.kw}, gen);
  const nn::Tensor b = k.bias ? nn::randn({k.o}, gen) : nn::Tensor();
  nn::Conv2dOptions opt;
  opt.stride = {k.stride_h, k.stride_w};
  opt.padding = {k.pad_h, k.pad_w};
  opt.relu = k.relu;
  const int64_t oh = (k.h + 2 * k.pad_h - k.kh) / k.stride_h + 1, ow = (k.w + 2 * k.pad_w - k.kw) / k.stride_w + 1;
  const nn::Tensor dy = nn::randn({k.n, k.o, oh, ow}, gen);

  // Reference: the CPU backend in f64.
  nn::Tensor x_ref = x.to(nn::f64).requires_grad_(), w_ref = w.to(nn::f64).requires_grad_();
  nn::Tensor b_ref = k.bias ? b.to(nn::f64).requires_grad_() : nn::Tensor();
  nn::Tensor y_ref = nn::conv2d(x_ref, w_ref, b_ref, opt);
  y_ref.backward(dy.to(nn::f64));

  // The device, f32.
  const nn::Device cuda = nn::Device::cuda();
  nn::Tensor x_dev = x.to(cuda).requires_grad_(), w_dev = w.to(cuda).requires_grad_();
  nn::Tensor b_dev = k.bias ? b.to(cuda).requires_grad_() : nn::Tensor();
  nn::Tensor y_dev = nn::conv2d(x_dev, w_dev, b_dev, opt);
  ASSERT_EQ(y_dev.device(), cuda);
  expect_close(y_dev, y_ref, "y");
  y_dev.backward(dy.to(cuda));
  expect_close(x_dev.grad(), x_ref.grad(), "dx");
  expect_close(w_dev.grad(), w_ref.grad(), "dw");
  if (k.bias) expect_close(b_dev.grad(), b_ref.grad(), "db");
}

//                         n  c   h   w   o  kh kw sh sw ph pw bias   relu   seed
TEST(CudaConv, OneByOne) {
  REQUIRE_CUDA();
  check_conv({2, 17, 9, 11, 33, 1, 1, 1, 1, 0, 0, true, false, 1});
  check_conv({1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, false, false, 2});
  check_conv({3, 3, 5, 4, 5, 1, 1, 2, 2, 0, 0, true, true, 3});
  // Padding larger than the kernel: the stride-1 input gradient sees a negative padding.
  check_conv({1, 3, 4, 5, 5, 1, 1, 1, 1, 1, 2, true, false, 4});
}

TEST(CudaConv, ThreeByThreeSpecialisedPath) {
  REQUIRE_CUDA();
  // Fewer than 16 input or output channels: the implicit GEMM, not Winograd.
  check_conv({2, 3, 19, 17, 5, 3, 3, 1, 1, 1, 1, true, false, 10});
  check_conv({3, 15, 7, 9, 33, 3, 3, 1, 1, 1, 1, false, true, 11});
  check_conv({2, 64, 13, 17, 15, 3, 3, 1, 1, 1, 1, true, true, 16});
  check_conv({3, 15, 19, 17, 129, 3, 3, 1, 1, 0, 0, true, false, 17});
  check_conv({1, 1, 3, 3, 1, 3, 3, 1, 1, 0, 0, true, false, 12});
  check_conv({1, 5, 1, 1, 129, 3, 3, 1, 1, 1, 1, true, true, 13});
  check_conv({2, 3, 8, 8, 129, 3, 3, 1, 1, 2, 2, true, false, 14});
  // 3x3 with stride 2 (the general transposed gather for the input gradient).
  check_conv({2, 17, 15, 13, 33, 3, 3, 2, 2, 1, 1, true, false, 15});
}

TEST(CudaConv, LargerKernels) {
  REQUIRE_CUDA();
  check_conv({2, 3, 12, 11, 5, 5, 5, 1, 1, 2, 2, true, false, 20});
  check_conv({1, 3, 19, 19, 33, 7, 7, 2, 2, 2, 2, true, true, 21});
  check_conv({3, 1, 16, 13, 1, 5, 5, 3, 3, 0, 0, false, false, 22});
  check_conv({1, 17, 18, 17, 5, 7, 7, 3, 3, 2, 1, true, false, 23});
}

TEST(CudaConv, NonSquareKernelsAndStrides) {
  REQUIRE_CUDA();
  check_conv({2, 3, 9, 14, 5, 3, 5, 1, 1, 1, 2, true, false, 30});
  check_conv({1, 17, 1, 19, 33, 1, 3, 1, 1, 0, 1, true, true, 31});
  check_conv({3, 3, 13, 7, 5, 2, 4, 2, 1, 0, 1, false, false, 32});
  check_conv({1, 5, 11, 10, 129, 5, 3, 1, 3, 2, 0, true, false, 33});
  check_conv({2, 1, 17, 17, 1, 4, 2, 3, 2, 1, 1, true, true, 34});
}

TEST(CudaConv, OddSizesAcrossTiles) {
  REQUIRE_CUDA();
  // 3 images of 19x17: pixel tiles of 128 straddle images; 129 output channels need two blocks
  // (15 input channels keep it on the implicit GEMM; 17 would take Winograd).
  check_conv({3, 15, 19, 17, 129, 3, 3, 1, 1, 1, 1, true, false, 40});
  check_conv({3, 33, 19, 15, 17, 3, 3, 2, 2, 0, 0, true, true, 41});
  check_conv({1, 129, 5, 7, 3, 1, 1, 1, 1, 0, 0, true, false, 42});
  check_conv({3, 5, 2, 19, 33, 2, 2, 1, 1, 0, 0, false, false, 43});
}

// Winograd F(4x4, 3x3): 3x3, stride 1, padding <= 2, C >= 16 and O >= 16.
TEST(CudaConv, WinogradOddSizes) {
  REQUIRE_CUDA();
  // 13x17 and 7x5 images: 4x4 tiles hang over the right and bottom edges; every padding.
  for (const int64_t pad : {0, 1, 2}) {
    const uint64_t seed = 70 + static_cast<uint64_t>(pad);
    check_conv({1, 16, 13, 17, 16, 3, 3, 1, 1, pad, pad, true, false, seed});
    check_conv({3, 17, 7, 5, 16, 3, 3, 1, 1, pad, pad, true, true, seed + 3});
    check_conv({3, 16, 13, 17, 17, 3, 3, 1, 1, pad, pad, false, false, seed + 6});
  }
  // Different padding per axis, 17 and 64 channels.
  check_conv({3, 17, 13, 17, 17, 3, 3, 1, 1, 1, 2, true, true, 80});
  check_conv({1, 16, 7, 5, 64, 3, 3, 1, 1, 2, 0, true, false, 81});
  check_conv({3, 64, 9, 11, 17, 3, 3, 1, 1, 1, 1, true, true, 82});
  check_conv({1, 64, 7, 5, 64, 3, 3, 1, 1, 0, 1, false, false, 83});
}

TEST(CudaConv, WinogradVectorStoresAndManyTiles) {
  REQUIRE_CUDA();
  // Output width a multiple of 4: the output transform stores float4 rows.
  check_conv({3, 17, 12, 16, 64, 3, 3, 1, 1, 1, 1, true, true, 90});
  check_conv({1, 64, 10, 14, 17, 3, 3, 1, 1, 2, 2, true, false, 91});
  // 3 x 32x32 tiles of 4x4: the weight gradient cuts its GEMM depth into segments.
  check_conv({3, 16, 127, 126, 17, 3, 3, 1, 1, 1, 1, true, false, 92});
}

TEST(CudaConv, VggLayerBatchTwo) {
  REQUIRE_CUDA();
  // 64 -> 64, 3x3, padding 1, 28x28, batch 2: Winograd, all three passes.
  check_conv({2, 64, 28, 28, 64, 3, 3, 1, 1, 1, 1, true, true, 50});
  check_conv({2, 64, 28, 28, 64, 3, 3, 1, 1, 1, 1, true, false, 51});
  // 64 -> 15 and 15 -> 64 at 28x28: the implicit GEMM's vectorised paths and a split-K weight
  // gradient.
  check_conv({2, 64, 28, 28, 15, 3, 3, 1, 1, 1, 1, true, true, 52});
  check_conv({2, 15, 28, 28, 64, 3, 3, 1, 1, 1, 1, true, false, 53});
}

TEST(CudaConv, WeightGradientIsDeterministic) {
  REQUIRE_CUDA();
  // 32 input channels: Winograd (segment partials summed in order); 15: the implicit GEMM's split-K.
  for (const int64_t c : {32, 15}) {
    SCOPED_TRACE("input channels " + std::to_string(c));
    nn::Generator gen(60);
    const nn::Device cuda = nn::Device::cuda();
    const nn::Tensor x = nn::randn({4, c, 20, 20}, gen).to(cuda);
    const nn::Tensor dy = nn::randn({4, 48, 20, 20}, gen).to(cuda);
    std::vector<float> first;
    for (int run = 0; run < 3; ++run) {
      nn::Tensor w = nn::randn({48, c, 3, 3}, gen).to(cuda).requires_grad_();
      nn::Conv2dOptions opt;
      opt.padding = {1, 1};
      nn::conv2d(x, w, nn::Tensor(), opt).backward(dy);
      const std::vector<float> dw = w.grad().to(nn::Device::cpu()).to_vector<float>();
      if (run == 0) first = dw;
      else EXPECT_EQ(dw, first) << "run " << run;
    }
  }
}

TEST(CudaConv, NonF32IsAClearError) {
  REQUIRE_CUDA();
  const nn::Device cuda = nn::Device::cuda();
  const nn::Tensor x = nn::zeros({1, 2, 5, 5}, nn::f64, cuda);
  const nn::Tensor w = nn::zeros({3, 2, 3, 3}, nn::f64, cuda);
  try {
    nn::conv2d(x, w);
    FAIL() << "an f64 conv2d on CUDA must throw";
  } catch (const nn::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("f32"), std::string::npos) << msg;
  }
}

}  // namespace

namespace {

// The backward passes for layers with at most 4 input channels (conv_few_channels_cuda.cu): VGG's
// first layer and shapes around it: partial 32x32 tiles, 1x1 images, outputs smaller and larger
// than the input, even kernels, the largest weight set the shared-memory rule admits; for the
// weight gradient, pixel runs that cross strips and images, many tiny images, strides 2 and 3.
TEST(CudaConv, FewInputChannelsBackward) {
  REQUIRE_CUDA();
  //         n  c   h   w    o  kh kw sh sw ph pw bias  relu  seed
  check_conv({2, 3, 37, 45, 64, 3, 3, 1, 1, 1, 1, true, true, 90});
  check_conv({2, 3, 70, 66, 67, 3, 3, 1, 1, 1, 1, true, false, 91});
  check_conv({3, 1, 1, 1, 3, 3, 3, 1, 1, 1, 1, false, false, 92});
  check_conv({2, 3, 33, 70, 67, 3, 3, 1, 1, 0, 0, true, false, 93});
  check_conv({1, 2, 10, 40, 7, 5, 5, 1, 1, 4, 4, false, false, 94});
  check_conv({2, 4, 5, 3, 5, 1, 1, 1, 1, 0, 0, true, false, 95});
  check_conv({3, 3, 64, 32, 5, 2, 2, 1, 1, 1, 1, true, false, 96});
  check_conv({1, 4, 9, 11, 122, 5, 5, 1, 1, 2, 2, true, true, 97});
  check_conv({5, 3, 33, 70, 67, 3, 3, 1, 1, 1, 1, true, false, 98});
  check_conv({200, 1, 9, 7, 2, 3, 3, 1, 1, 1, 1, false, false, 99});
  check_conv({2, 2, 9, 13, 3, 3, 3, 2, 2, 0, 0, true, false, 100});
  check_conv({3, 1, 33, 31, 5, 5, 5, 3, 3, 2, 2, false, false, 101});
  check_conv({2, 4, 37, 70, 5, 2, 2, 2, 2, 1, 1, true, false, 102});
}

TEST(CudaConv, FewInputChannelsWeightGradientIsBitwiseRepeatable) {
  REQUIRE_CUDA();
  nn::Generator gen(103);
  const nn::Device cuda = nn::Device::cuda();
  const nn::Tensor x = nn::randn({3, 3, 37, 45}, gen).to(cuda);
  const nn::Tensor dy = nn::randn({3, 64, 37, 45}, gen).to(cuda);
  const nn::Tensor w0 = nn::randn({64, 3, 3, 3}, gen);
  nn::Conv2dOptions opt;
  opt.padding = {1, 1};
  std::vector<std::vector<float>> grads;
  for (int run = 0; run < 2; ++run) {
    nn::Tensor w = w0.to(cuda).requires_grad_();
    nn::conv2d(x, w, nn::Tensor(), opt).backward(dy);
    grads.push_back(w.grad().to_vector<float>());
  }
  EXPECT_EQ(grads[0], grads[1]);
}

}  // namespace
