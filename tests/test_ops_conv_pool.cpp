// Op table cases for conv2d and the pooling ops, each against a naive float64 reference written
// with plain loops (direct convolution, window scans), plus tests of the argument checks and of
// a few values taken from PyTorch 1.13 (argmax convention, avg_pool2d ceil_mode divisors).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "op_harness.h"

namespace nn::test {
namespace {

using V = std::vector<Tensor>;
using R = std::vector<Ref>;

// ---- convolution ----

// y[n][o][oh][ow] = b[o] + sum_{c,i,j} x[n][c][oh*sh-ph+i][ow*sw-pw+j] * w[o][c][i][j]: the direct
// seven-loop convolution, zero outside the input.
Ref ref_conv2d(const Ref& x, const Ref& w, const Ref* b, const Conv2dOptions& opt) {
  const int64_t n_ = x.size(0), c_ = x.size(1), h = x.size(2), wd = x.size(3);
  const int64_t o_ = w.size(0), kh = w.size(2), kw = w.size(3);
  const int64_t sh = opt.stride[0], sw = opt.stride[1], ph = opt.padding[0], pw = opt.padding[1];
  const int64_t oh_ = (h + 2 * ph - kh) / sh + 1, ow_ = (wd + 2 * pw - kw) / sw + 1;
  Ref y({n_, o_, oh_, ow_});
  for (int64_t n = 0; n < n_; ++n)
    for (int64_t o = 0; o < o_; ++o)
      for (int64_t oh = 0; oh < oh_; ++oh)
        for (int64_t ow = 0; ow < ow_; ++ow) {
          double acc = b ? b->v[o] : 0.0;
          for (int64_t c = 0; c < c_; ++c)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t ih = oh * sh - ph + i, iw = ow * sw - pw + j;
                if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
                acc += x({n, c, ih, iw}) * w({o, c, i, j});
              }
          y({n, o, oh, ow}) = opt.relu ? std::max(acc, 0.0) : acc;
        }
  return y;
}

OpCase conv_case(const std::string& name, Input x, const Shape& w, bool bias, Conv2dOptions opt) {
  std::vector<Input> inputs{x, Input{w}};
  if (bias) inputs.push_back(Input{{w[0]}});
  OpCase c{name, inputs,
           [opt](const V& t) { return conv2d(t[0], t[1], t.size() > 2 ? t[2] : Tensor(), opt); },
           [opt](const R& r) { return ref_conv2d(r[0], r[1], r.size() > 2 ? &r[2] : nullptr, opt); }};
  // f32 sums of up to C*KH*KW products of N(0,1) values.
  c.atol = 1e-4;
  c.rtol = 1e-4;
  return c;
}

Conv2dOptions conv_opts(int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w) {
  Conv2dOptions o;
  o.stride = {stride_h, stride_w};
  o.padding = {pad_h, pad_w};
  return o;
}

Conv2dOptions relu_opts(Conv2dOptions o) {
  o.relu = true;
  return o;
}

// ---- pooling references; output sizes are given by the case (worked out by hand, checked against
// PyTorch), so the op's own size rule is tested too ----

struct PoolSpec {
  int64_t kh, kw, sh, sw, ph, pw;
  int64_t oh, ow;
};

Pool2dOptions pool_opts(const PoolSpec& s, bool ceil_mode, bool count_include_pad = true) {
  Pool2dOptions o;
  o.kernel = {s.kh, s.kw};
  o.stride = {s.sh, s.sw};
  o.padding = {s.ph, s.pw};
  o.ceil_mode = ceil_mode;
  o.count_include_pad = count_include_pad;
  return o;
}

// Input planes (all leading dims flattened) and the output shape with the last two dims replaced.
int64_t planes_of(const Ref& x) { return x.numel() / (x.size(-2) * x.size(-1)); }
Shape pooled_shape(const Ref& x, int64_t oh, int64_t ow) {
  Shape s = x.shape;
  s[s.size() - 2] = oh;
  s[s.size() - 1] = ow;
  return s;
}

// Scans every window position ih = oh*sh - ph + a, iw = ow*sw - pw + b (a < kh, b < kw).
template <typename Visit>
void scan_window(const PoolSpec& s, int64_t oh, int64_t ow, const Visit& visit) {
  for (int64_t a = 0; a < s.kh; ++a)
    for (int64_t b = 0; b < s.kw; ++b) visit(oh * s.sh - s.ph + a, ow * s.sw - s.pw + b);
}

Ref ref_max_pool(const Ref& x, const PoolSpec& s) {
  const int64_t h = x.size(-2), w = x.size(-1);
  Ref y(pooled_shape(x, s.oh, s.ow));
  for (int64_t p = 0; p < planes_of(x); ++p)
    for (int64_t oh = 0; oh < s.oh; ++oh)
      for (int64_t ow = 0; ow < s.ow; ++ow) {
        double best = -std::numeric_limits<double>::infinity();
        scan_window(s, oh, ow, [&](int64_t ih, int64_t iw) {
          if (ih >= 0 && ih < h && iw >= 0 && iw < w) best = std::max(best, x.v[(p * h + ih) * w + iw]);
        });
        y.v[(p * s.oh + oh) * s.ow + ow] = best;
      }
  return y;
}

// A convolution with its 2x2 stride-2 max pool (Conv2dOptions::max_pool_2x2): the pooled direct
// convolution. Forward in f32 runs the backend's fused kernel (Winograd's output pass with 16+
// channels, else the convolution into a temporary and the max pool's kernel); the gradient check
// in f64 differentiates conv2d then max_pool2d.
OpCase conv_pool_case(const std::string& name, Input x, const Shape& w, bool bias, Conv2dOptions opt) {
  opt.max_pool_2x2 = true;
  OpCase c = conv_case(name, x, w, bias, opt);
  c.reference = [opt](const R& r) {
    Ref y = ref_conv2d(r[0], r[1], r.size() > 2 ? &r[2] : nullptr, opt);
    return ref_max_pool(y, PoolSpec{2, 2, 2, 2, 0, 0, y.size(2) / 2, y.size(3) / 2});
  };
  c.fd_max_elements = 24;
  return c;
}

// PyTorch's average: the sum over the window's input elements, divided by the number of window
// positions inside the padded input (count_include_pad) or inside the input.
Ref ref_avg_pool(const Ref& x, const PoolSpec& s, bool count_include_pad) {
  const int64_t h = x.size(-2), w = x.size(-1);
  Ref y(pooled_shape(x, s.oh, s.ow));
  for (int64_t p = 0; p < planes_of(x); ++p)
    for (int64_t oh = 0; oh < s.oh; ++oh)
      for (int64_t ow = 0; ow < s.ow; ++ow) {
        double sum = 0;
        int64_t in_padded = 0, in_input = 0;
        scan_window(s, oh, ow, [&](int64_t ih, int64_t iw) {
          if (ih < -s.ph || ih >= h + s.ph || iw < -s.pw || iw >= w + s.pw) return;
          ++in_padded;
          if (ih < 0 || ih >= h || iw < 0 || iw >= w) return;
          ++in_input;
          sum += x.v[(p * h + ih) * w + iw];
        });
        y.v[(p * s.oh + oh) * s.ow + ow] = sum / static_cast<double>(count_include_pad ? in_padded : in_input);
      }
  return y;
}

Ref ref_adaptive_avg_pool(const Ref& x, int64_t oh_n, int64_t ow_n) {
  const int64_t h = x.size(-2), w = x.size(-1);
  Ref y(pooled_shape(x, oh_n, ow_n));
  for (int64_t p = 0; p < planes_of(x); ++p)
    for (int64_t oh = 0; oh < oh_n; ++oh)
      for (int64_t ow = 0; ow < ow_n; ++ow) {
        const auto h0 = static_cast<int64_t>(std::floor(double(oh) * h / oh_n));
        const auto h1 = static_cast<int64_t>(std::ceil(double(oh + 1) * h / oh_n));
        const auto w0 = static_cast<int64_t>(std::floor(double(ow) * w / ow_n));
        const auto w1 = static_cast<int64_t>(std::ceil(double(ow + 1) * w / ow_n));
        double sum = 0;
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t iw = w0; iw < w1; ++iw) sum += x.v[(p * h + ih) * w + iw];
        y.v[(p * oh_n + oh) * ow_n + ow] = sum / static_cast<double>((h1 - h0) * (w1 - w0));
      }
  return y;
}

OpCase max_pool_case(const std::string& name, Input x, PoolSpec s, bool ceil_mode) {
  x.fill = Fill::distinct;  // no ties: the finite differences stay on one side of every max
  return {name, {x}, [s, ceil_mode](const V& t) { return max_pool2d(t[0], pool_opts(s, ceil_mode)); },
          [s](const R& r) { return ref_max_pool(r[0], s); }};
}

OpCase avg_pool_case(const std::string& name, Input x, PoolSpec s, bool ceil_mode, bool count_include_pad) {
  return {name, {x},
          [s, ceil_mode, count_include_pad](const V& t) {
            return avg_pool2d(t[0], pool_opts(s, ceil_mode, count_include_pad));
          },
          [s, count_include_pad](const R& r) { return ref_avg_pool(r[0], s, count_include_pad); }};
}

OpCase adaptive_case(const std::string& name, Input x, int64_t oh, int64_t ow) {
  return {name, {x}, [oh, ow](const V& t) { return adaptive_avg_pool2d(t[0], {oh, ow}); },
          [oh, ow](const R& r) { return ref_adaptive_avg_pool(r[0], oh, ow); }};
}

}  // namespace

NN_OP_CASES(conv) {
  CaseList cases = {
      conv_case("3x3_pad1_bias_batch2", Input{{2, 3, 7, 9}}, {4, 3, 3, 3}, true, conv_opts(1, 1, 1, 1)),
      conv_case("3x3_nopad_nobias", Input{{1, 2, 6, 5}}, {3, 2, 3, 3}, false, conv_opts(1, 1, 0, 0)),
      conv_case("3x3_stride2_pad1_batch3", Input{{3, 2, 7, 9}}, {4, 2, 3, 3}, true, conv_opts(2, 2, 1, 1)),
      conv_case("3x3_pad2_nobias", Input{{2, 2, 5, 6}}, {3, 2, 3, 3}, false, conv_opts(1, 1, 2, 2)),
      conv_case("5x3_stride2x1_pad2x1", Input{{2, 3, 9, 8}}, {4, 3, 5, 3}, true, conv_opts(2, 1, 2, 1)),
      // 1x1, stride 1, unpadded: the GEMM reads x directly (no im2col).
      conv_case("1x1_direct_bias", Input{{2, 5, 4, 6}}, {3, 5, 1, 1}, true, conv_opts(1, 1, 0, 0)),
      conv_case("1x1_direct_batch1", Input{{1, 4, 3, 5}}, {6, 4, 1, 1}, false, conv_opts(1, 1, 0, 0)),
      conv_case("1x1_stride2", Input{{2, 4, 7, 9}}, {3, 4, 1, 1}, true, conv_opts(2, 2, 0, 0)),
      conv_case("1x1_pad1", Input{{1, 2, 3, 4}}, {3, 2, 1, 1}, false, conv_opts(1, 1, 1, 1)),
      conv_case("transposed_input", Input{{2, 3, 6, 5}, Fill::normal, Layout::transposed}, {4, 3, 3, 3}, true,
                conv_opts(1, 1, 1, 1)),
      conv_case("strided_input_stride2", Input{{2, 2, 7, 8}, Fill::normal, Layout::strided}, {3, 2, 3, 3}, false,
                conv_opts(2, 2, 1, 0)),
      // Kernel as large as the padded input: a single output position.
      conv_case("kernel_fills_padded_input", Input{{2, 2, 3, 4}}, {2, 2, 5, 6}, true, conv_opts(1, 1, 1, 1)),
      // ReLU fused into the output pass (values, and the gradient masked by y > 0).
      conv_case("3x3_pad1_relu", Input{{2, 3, 7, 9}}, {4, 3, 3, 3}, true, relu_opts(conv_opts(1, 1, 1, 1))),
      conv_case("3x3_stride2_relu_nobias", Input{{2, 2, 7, 9}}, {5, 2, 3, 3}, false, relu_opts(conv_opts(2, 2, 1, 1))),
      // With the 2x2 max pool; odd outputs (the last row or column is dropped, as floor mode).
      conv_pool_case("3x3_pad1_relu_max_pool_odd", Input{{2, 3, 7, 9}}, {4, 3, 3, 3}, true,
                     relu_opts(conv_opts(1, 1, 1, 1))),
      conv_pool_case("winograd_relu_max_pool_odd", Input{{2, 16, 11, 13}}, {16, 16, 3, 3}, true,
                     relu_opts(conv_opts(1, 1, 1, 1))),
      conv_pool_case("winograd_max_pool_no_relu_pad0", Input{{1, 16, 10, 9}}, {17, 16, 3, 3}, false,
                     conv_opts(1, 1, 0, 0)),
      // Unbatched (C,H,W) input.
      conv_case("unbatched", Input{{3, 6, 7}}, {2, 3, 3, 3}, true, conv_opts(1, 1, 1, 1)),
  };
  // Unbatched reference: the same convolution on a batch of one, reshaped back.
  cases.back().reference = [](const R& r) {
    Ref x = r[0];
    x.shape.insert(x.shape.begin(), 1);
    Ref y = ref_conv2d(x, r[1], &r[2], conv_opts(1, 1, 1, 1));
    y.shape.erase(y.shape.begin());
    return y;
  };
  // One image, one band, 9 MFLOP: im2col split over channels and Eigen's threaded GEMM.
  OpCase single = conv_case("threaded_gemm_single_image", Input{{1, 64, 16, 16}}, {32, 64, 3, 3}, false,
                            conv_opts(1, 1, 1, 1));
  single.atol = 3e-4;
  single.fd_max_elements = 16;
  cases.push_back(single);
  // Large enough (576 x 4096 col) that the kernels work in 8 output-row bands: batch 1 splits
  // bands over threads (backward input: one image, Eigen's threaded GEMM and col2im split over
  // channels), batch 2 splits (image, band) items and whole images.
  // Enough work (8 MFLOP) that threads take whole images, with stride and non-square padding.
  OpCase split = conv_case("split_images_stride2_3x5", Input{{4, 32, 24, 22}}, {16, 32, 3, 5}, true,
                           conv_opts(2, 2, 1, 2));
  split.atol = 3e-4;
  split.fd_max_elements = 16;
  cases.push_back(split);
  for (int64_t batch : {1, 2}) {
    OpCase big = conv_case("multi_band_batch" + std::to_string(batch), Input{{batch, 64, 64, 64}}, {4, 64, 3, 3},
                           true, conv_opts(1, 1, 1, 1));
    big.atol = 5e-4;
    big.fd_max_elements = 6;
    cases.push_back(big);
  }
  return cases;
}

NN_OP_CASES(pool) {
  const PoolSpec k2s2{2, 2, 2, 2, 0, 0, 3, 4};
  return {
      max_pool_case("max_2x2_s2", Input{{2, 3, 6, 8}}, k2s2, false),
      max_pool_case("max_2x2_s2_odd_input_floor", Input{{1, 2, 7, 9}}, {2, 2, 2, 2, 0, 0, 3, 4}, false),
      max_pool_case("max_3x3_s2_pad1", Input{{1, 2, 7, 9}}, {3, 3, 2, 2, 1, 1, 4, 5}, false),
      max_pool_case("max_2x2_s2_ceil", Input{{1, 2, 7, 9}}, {2, 2, 2, 2, 0, 0, 4, 5}, true),
      // ceil_mode would give 4 windows on 5 rows, but the 4th would start in the right padding.
      max_pool_case("max_2x2_s2_pad1_ceil_drops_last", Input{{1, 2, 5, 5}}, {2, 2, 2, 2, 1, 1, 3, 3}, true),
      max_pool_case("max_3x2_s1x2", Input{{2, 2, 5, 6}}, {3, 2, 1, 2, 0, 0, 3, 3}, false),
      max_pool_case("max_transposed_input", Input{{2, 2, 6, 6}, Fill::normal, Layout::transposed},
                    {2, 2, 2, 2, 0, 0, 3, 3}, false),
      max_pool_case("max_unbatched", Input{{3, 6, 8}}, {2, 2, 2, 2, 0, 0, 3, 4}, false),
      avg_pool_case("avg_2x2_s2", Input{{2, 3, 6, 8}}, {2, 2, 2, 2, 0, 0, 3, 4}, false, true),
      avg_pool_case("avg_3x3_s2_pad1_include_pad", Input{{2, 2, 7, 9}}, {3, 3, 2, 2, 1, 1, 4, 5}, false, true),
      avg_pool_case("avg_3x3_s2_pad1_exclude_pad", Input{{2, 2, 7, 9}}, {3, 3, 2, 2, 1, 1, 4, 5}, false, false),
      // The last window runs past the padded input and is clipped to it (divisor 6, not 9).
      avg_pool_case("avg_3x3_s2_pad1_ceil_include_pad", Input{{1, 2, 6, 6}}, {3, 3, 2, 2, 1, 1, 4, 4}, true, true),
      avg_pool_case("avg_3x3_s2_pad1_ceil_exclude_pad", Input{{1, 2, 6, 6}}, {3, 3, 2, 2, 1, 1, 4, 4}, true, false),
      avg_pool_case("avg_strided_input", Input{{2, 2, 5, 6}, Fill::normal, Layout::strided}, {2, 3, 1, 3, 1, 0, 6, 2},
                    false, true),
      adaptive_case("adaptive_9x11_to_7x7", Input{{2, 2, 9, 11}}, 7, 7),
      adaptive_case("adaptive_to_1x1", Input{{2, 3, 5, 7}}, 1, 1),
      adaptive_case("adaptive_upsample_3x4_to_5x6", Input{{1, 2, 3, 4}}, 5, 6),
      adaptive_case("adaptive_transposed_unbatched", Input{{2, 6, 5}, Fill::normal, Layout::transposed}, 4, 3),
  };
}

namespace {

using ::testing::HasSubstr;

// The message of the nn::Error that f throws (fails the test when none is thrown).
template <typename F>
std::string error_message(const F& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no nn::Error was thrown";
  return "";
}

TEST(Conv2dChecks, WrongChannelCountNamesBothShapes) {
  Tensor x = zeros({1, 3, 5, 5}), w = zeros({4, 2, 3, 3});
  std::string msg = error_message([&] { conv2d(x, w); });
  EXPECT_THAT(msg, HasSubstr("input has 3 channels"));
  EXPECT_THAT(msg, HasSubstr("expects 2 input channels"));
}

TEST(Conv2dChecks, BadBiasShapeIsRejected) {
  Tensor x = zeros({1, 3, 5, 5}), w = zeros({4, 3, 3, 3});
  EXPECT_THAT(error_message([&] { conv2d(x, w, zeros({3})); }), HasSubstr("bias must have shape (4)"));
  EXPECT_THAT(error_message([&] { conv2d(x, w, zeros({4, 1})); }), HasSubstr("bias must have shape (4)"));
}

TEST(Conv2dChecks, InputSmallerThanKernelIsRejected) {
  Tensor x = zeros({1, 1, 2, 2}), w = zeros({1, 1, 3, 3});
  EXPECT_THAT(error_message([&] { conv2d(x, w); }), HasSubstr("kernel 3x3 is larger than the padded input 2x2"));
  Conv2dOptions pad1;
  pad1.padding = {1, 1};
  EXPECT_EQ(conv2d(x, w, Tensor(), pad1).shape(), (Shape{1, 1, 2, 2}));
}

TEST(Conv2dChecks, RanksStridePaddingAndDtypeAreChecked) {
  Tensor w = zeros({2, 1, 3, 3});
  EXPECT_THAT(error_message([&] { conv2d(zeros({5, 5}), w); }), HasSubstr("expected input of shape (N, C, H, W)"));
  EXPECT_THAT(error_message([&] { conv2d(zeros({1, 1, 5, 5}), zeros({2, 9})); }),
              HasSubstr("expected weight of shape"));
  Conv2dOptions bad_stride;
  bad_stride.stride = {0, 1};
  EXPECT_THAT(error_message([&] { conv2d(zeros({1, 1, 5, 5}), w, Tensor(), bad_stride); }),
              HasSubstr("stride must be positive"));
  Conv2dOptions bad_pad;
  bad_pad.padding = {1, -1};
  EXPECT_THAT(error_message([&] { conv2d(zeros({1, 1, 5, 5}), w, Tensor(), bad_pad); }),
              HasSubstr("padding must be non-negative"));
  EXPECT_THAT(error_message([&] { conv2d(zeros({1, 1, 5, 5}, f64), w); }), HasSubstr("but weight is f32"));
}

TEST(Conv2dValues, UnbatchedMatchesBatchOfOne) {
  Generator gen(5);
  Tensor x = randn({3, 6, 7}, gen), w = randn({4, 3, 3, 3}, gen), b = randn({4}, gen);
  Conv2dOptions o;
  o.padding = {1, 1};
  Tensor y3 = conv2d(x, w, b, o);
  Tensor y4 = conv2d(x.unsqueeze(0), w, b, o);
  ASSERT_EQ(y3.shape(), (Shape{4, 6, 7}));
  EXPECT_EQ(y3.to_vector<float>(), y4.squeeze(0).to_vector<float>());
}

TEST(Conv2dValues, BiasGradientIsSumOfOutputGradient) {
  Generator gen(6);
  Tensor x = randn({2, 3, 5, 5}, gen), w = randn({4, 3, 3, 3}, gen);
  Tensor b = randn({4}, gen).requires_grad_();
  Tensor y = conv2d(x, w, b);
  sum(y).backward();
  // d(sum y)/db[o] = number of outputs per channel = N * OH * OW.
  for (float g : b.grad().to_vector<float>()) EXPECT_FLOAT_EQ(g, 2.0f * 3 * 3);
}

TEST(Pool2dChecks, PaddingLargerThanHalfKernelIsRejected) {
  Pool2dOptions o;
  o.kernel = {3, 3};
  o.padding = {2, 1};
  EXPECT_THAT(error_message([&] { max_pool2d(zeros({1, 1, 8, 8}), o); }),
              HasSubstr("must be at most half the kernel size"));
  EXPECT_THAT(error_message([&] { avg_pool2d(zeros({1, 1, 8, 8}), o); }), HasSubstr("avg_pool2d"));
}

TEST(Pool2dChecks, TooSmallInputAndBadRankAreRejected) {
  Pool2dOptions o;
  o.kernel = {3, 3};
  EXPECT_THAT(error_message([&] { max_pool2d(zeros({1, 1, 2, 5}), o); }), HasSubstr("is too small for kernel 3x3"));
  EXPECT_THAT(error_message([&] { max_pool2d(zeros({4, 4}), o); }),
              HasSubstr("expected input of shape (N, C, H, W) or (C, H, W)"));
  EXPECT_THAT(error_message([&] { adaptive_avg_pool2d(zeros({1, 1, 4, 4}), {0, 2}); }),
              HasSubstr("output size must be positive"));
  o.stride = {-1, 1};
  EXPECT_THAT(error_message([&] { avg_pool2d(zeros({1, 1, 8, 8}), o); }), HasSubstr("stride must be positive"));
}

TEST(Pool2dValues, MaxPoolIndicesAreFlatPlaneIndicesAsPyTorch) {
  Tensor x = arange(32).reshape({2, 1, 4, 4});
  Pool2dOptions o;  // 2x2, stride = kernel
  auto [y, idx] = max_pool2d_with_indices(x, o);
  EXPECT_EQ(idx.to_vector<int64_t>(), (std::vector<int64_t>{5, 7, 13, 15, 5, 7, 13, 15}));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{5, 7, 13, 15, 21, 23, 29, 31}));
  o.kernel = {3, 3};
  o.stride = {2, 2};
  o.padding = {1, 1};
  EXPECT_EQ(max_pool2d_with_indices(x, o).second.to_vector<int64_t>(),
            (std::vector<int64_t>{5, 7, 13, 15, 5, 7, 13, 15}));
}

TEST(Pool2dValues, MaxPoolTiesAndNaNFollowPyTorch) {
  // 2x2 stride 2: the fast path (floor mode) and the general loop (ceil mode on this odd input).
  // Ties: the first maximum in row-major order; NaN: the last NaN of the window (`v > best || isnan(v)`).
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor x = from_vector<float>({1, 1, 2, 0, 1, 1, 0, 2, nan, 3, 5, 5, 4, nan, 5, 5, 7, 7, 7, 7}, {1, 1, 5, 4});
  Pool2dOptions o;
  for (bool ceil : {false, true}) {
    o.ceil_mode = ceil;  // ceil: 3x2 outputs, the last row of windows partial (general loop)
    auto [y, idx] = max_pool2d_with_indices(x, o);
    const std::vector<int64_t> indices = idx.to_vector<int64_t>();
    const std::vector<float> values = y.to_vector<float>();
    ASSERT_GE(indices.size(), 4u);
    EXPECT_EQ(indices[0], 0) << "ceil " << ceil;  // window {1, 1, 1, 1}: first
    EXPECT_EQ(indices[1], 2) << "ceil " << ceil;  // window {2, 0, 0, 2}: the first 2
    EXPECT_EQ(indices[2], 13) << "ceil " << ceil;  // window {nan, 3, 4, nan}: the last NaN
    EXPECT_TRUE(std::isnan(values[2]));
    EXPECT_EQ(indices[3], 10) << "ceil " << ceil;  // window {5, 5, 5, 5}: first
  }
}

TEST(Pool2dValues, MaxPoolWithoutIndicesHasTheSameBits) {
  // max_pool2d without autograd skips the argmax (the AVX2 path for 2x2 f32 windows): the values
  // must be those of max_pool2d_with_indices bit for bit, NaNs, signed zeros and odd widths (the
  // scalar tail) included; f64 and other windows take the general loop.
  Generator gen(12);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t w : {2, 16, 37, 58}) {
    Tensor x = randn({3, 5, 6, w}, gen);
    float* p = x.data<float>();
    for (int64_t i = 0; i < x.numel(); i += 7) p[i] = (i % 3 == 0) ? nan : (i % 3 == 1 ? 0.0f : -0.0f);
    for (DType dtype : {DType::f32, DType::f64}) {
      const Tensor xd = x.to(dtype);
      for (const Pool2dOptions& o : {Pool2dOptions{}, Pool2dOptions{{3, 3}, {2, 2}, {1, 1}, true}}) {
        Tensor values;
        {
          NoGradGuard no_grad;
          values = max_pool2d(xd, o);
        }
        const Tensor expected = max_pool2d_with_indices(xd, o).first;
        ASSERT_EQ(values.shape(), expected.shape());
        const auto a = values.to_vector<double>(), e = expected.to_vector<double>();
        for (size_t i = 0; i < a.size(); ++i) {
          ASSERT_EQ(std::isnan(a[i]), std::isnan(e[i])) << i;
          if (std::isnan(a[i])) continue;
          ASSERT_EQ(std::signbit(a[i]), std::signbit(e[i])) << i;
          ASSERT_EQ(a[i], e[i]) << i;
        }
      }
    }
  }
}

TEST(Pool2dValues, MaxPool2x2IndicesMatchAScalarReference) {
  // VGG's 2x2 windows run 8 outputs per AVX2 step with the argmax blended along: values and
  // indices against the window loop written out here (first maximum wins, a NaN wins), with ties,
  // NaNs and signed zeros planted, and widths with and without a scalar tail.
  Generator gen(13);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t w : {16, 34, 50}) {
    Tensor x = randn({2, 3, 8, w}, gen);
    float* p = x.data<float>();
    for (int64_t i = 0; i < x.numel(); i += 5) p[i] = (i % 4 == 0) ? nan : (i % 4 == 1 ? 0.0f : (i % 4 == 2 ? -0.0f : 1.0f));
    auto [y, idx] = max_pool2d_with_indices(x, Pool2dOptions{});
    const auto yv = y.to_vector<float>();
    const auto iv = idx.to_vector<int64_t>();
    const int64_t oh = 4, ow = w / 2;
    for (int64_t plane = 0; plane < 6; ++plane)
      for (int64_t r = 0; r < oh; ++r)
        for (int64_t o = 0; o < ow; ++o) {
          const float* xs = p + plane * 8 * w;
          float best = xs[2 * r * w + 2 * o];
          int64_t at = 2 * r * w + 2 * o;
          for (int64_t k : {2 * r * w + 2 * o + 1, (2 * r + 1) * w + 2 * o, (2 * r + 1) * w + 2 * o + 1})
            if (xs[k] > best || std::isnan(xs[k])) best = xs[k], at = k;
          const size_t e = static_cast<size_t>((plane * oh + r) * ow + o);
          ASSERT_EQ(iv[e], at) << "w " << w << " plane " << plane << " (" << r << ", " << o << ")";
          ASSERT_EQ(std::isnan(yv[e]), std::isnan(best));
          if (!std::isnan(best)) {
            ASSERT_EQ(std::signbit(yv[e]), std::signbit(best));
          }
        }
  }
}

TEST(Pool2dValues, AvgPoolCeilModeDivisorsMatchPyTorch) {
  // torch.nn.functional.avg_pool2d(arange(1, 37).view(1,1,6,6), 3, 2, 1, ceil_mode=True)
  Tensor x = arange(1.0, 37.0).reshape({1, 1, 6, 6});
  Pool2dOptions o;
  o.kernel = {3, 3};
  o.stride = {2, 2};
  o.padding = {1, 1};
  o.ceil_mode = true;
  std::vector<float> expected{2.0f,  4.0f,  16.0f / 3, 3.0f,  9.0f,  15.0f, 17.0f, 9.0f,
                              17.0f, 27.0f, 29.0f,     15.0f, 10.5f, 16.5f, 17.5f, 9.0f};
  std::vector<float> got = avg_pool2d(x, o).to_vector<float>();
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], 1e-5) << "element " << i;
}

TEST(Pool2dValues, MaxReductionGradientUsesThePoolScatter) {
  // reduce.cpp's max backward runs max_pool2d_backward on (1, rows, 1, cols) planes.
  Tensor x = tensor({1, 9, 3, 4, 2, 8}, {2, 3}).requires_grad_();
  sum(mul(max(x, {1}), tensor({2, 5}))).backward();
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{0, 2, 0, 0, 0, 5}));
}

}  // namespace
}  // namespace nn::test
