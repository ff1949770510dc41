// nn/data/degrade.h: each degradation against its definition (gamma per sample, the Gaussian blur
// against a float64 double loop, the noise's mean and standard deviation, downscaling keeping a
// constant image and losing detail, the JPEG round trip close and gray), the random draw's
// determinism and ranges, and the training draw leaving an identity configuration alone.
#include <gtest/gtest.h>
#include <nn/data/degrade.h>
#include <nn/error.h>

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

namespace {

using nn::data::Image;

Image random_image(int64_t h, int64_t w, int64_t c, uint32_t seed) {
  std::mt19937 rng(seed);
  Image im{h, w, c, {}};
  im.pixels.resize(static_cast<size_t>(h * w * c));
  for (float& v : im.pixels) v = 0.05f + 0.9f * static_cast<float>(rng() % 1000) / 1000.0f;
  return im;
}

TEST(Degrade, GammaIsAPowerOfEachSampleAndKeepsAlpha) {
  Image im = random_image(5, 7, 2, 1);
  Image g = nn::data::adjust_gamma(im, 1.7);
  for (size_t i = 0; i < im.pixels.size(); ++i) {
    const double want = i % 2 == 1 ? im.pixels[i] : std::pow(static_cast<double>(im.pixels[i]), 1.7);
    EXPECT_NEAR(g.pixels[i], want, 1e-6) << i;
  }
  EXPECT_THROW(nn::data::adjust_gamma(im, 0), nn::Error);
}

TEST(Degrade, BlurMatchesAFloat64Reference) {
  const Image im = random_image(9, 11, 1, 2);
  const double sigma = 1.3;
  const Image b = nn::data::gaussian_blur(im, sigma);
  const int r = static_cast<int>(std::ceil(3 * sigma));
  std::vector<double> taps;
  for (int k = -r; k <= r; ++k) taps.push_back(std::exp(-0.5 * k * k / (sigma * sigma)));
  const double total = std::accumulate(taps.begin(), taps.end(), 0.0);
  double worst = 0;
  for (int64_t y = 0; y < 9; ++y)
    for (int64_t x = 0; x < 11; ++x) {
      double acc = 0;  // the 2-D separable sum, edges replicated
      for (int i = -r; i <= r; ++i)
        for (int j = -r; j <= r; ++j) {
          const int64_t yy = std::clamp<int64_t>(y + i, 0, 8), xx = std::clamp<int64_t>(x + j, 0, 10);
          acc += taps[i + r] * taps[j + r] / (total * total) * im.pixels[static_cast<size_t>(yy * 11 + xx)];
        }
      worst = std::max(worst, std::abs(acc - b.pixels[static_cast<size_t>(y * 11 + x)]));
    }
  EXPECT_LT(worst, 1e-6);
  EXPECT_EQ(nn::data::gaussian_blur(im, 0).pixels, im.pixels);
}

TEST(Degrade, NoiseHasTheRequestedSpreadAndIsSeeded) {
  Image flat{64, 64, 1, std::vector<float>(64 * 64, 0.5f)};
  nn::Generator gen(3);
  Image noisy = nn::data::add_gaussian_noise(flat, 0.05, gen);
  double mean = 0, var = 0;
  for (float v : noisy.pixels) mean += v;
  mean /= noisy.pixels.size();
  for (float v : noisy.pixels) var += (v - mean) * (v - mean);
  var /= noisy.pixels.size();
  EXPECT_NEAR(mean, 0.5, 0.003);
  EXPECT_NEAR(std::sqrt(var), 0.05, 0.003);
  nn::Generator again(3);
  EXPECT_EQ(nn::data::add_gaussian_noise(flat, 0.05, again).pixels, noisy.pixels);
  nn::Generator other(4);
  EXPECT_NE(nn::data::add_gaussian_noise(flat, 0.05, other).pixels, noisy.pixels);
}

TEST(Degrade, DownscalingKeepsConstantsAndLosesDetail) {
  Image flat{20, 30, 1, std::vector<float>(600, 0.25f)};
  for (float v : nn::data::downscale_upscale(flat, 0.4).pixels) EXPECT_NEAR(v, 0.25f, 1e-6);
  // A one-pixel checkerboard (contrast 1) is averaged almost away at half resolution (the
  // antialiasing filter's taps are not exactly symmetric about each 2x2 cell near the edges).
  Image board{16, 16, 1, std::vector<float>(256)};
  for (int64_t i = 0; i < 256; ++i) board.pixels[static_cast<size_t>(i)] = ((i / 16 + i % 16) % 2) ? 1.0f : 0.0f;
  for (float v : nn::data::downscale_upscale(board, 0.5).pixels) EXPECT_NEAR(v, 0.5f, 0.02);
  EXPECT_EQ(nn::data::downscale_upscale(board, 1.0).pixels, board.pixels);
  EXPECT_THROW(nn::data::downscale_upscale(board, 0.0), nn::Error);
}

TEST(Degrade, JpegRoundTripIsCloseAndKeepsChannels) {
  Image smooth{32, 40, 1, std::vector<float>(32 * 40)};
  for (int64_t y = 0; y < 32; ++y)
    for (int64_t x = 0; x < 40; ++x)
      smooth.pixels[static_cast<size_t>(y * 40 + x)] = static_cast<float>(0.5 + 0.3 * std::sin(x / 5.0) * std::cos(y / 7.0));
  Image q90 = nn::data::jpeg_roundtrip(smooth, 90), q10 = nn::data::jpeg_roundtrip(smooth, 10);
  ASSERT_EQ(q90.channels, 1);
  double e90 = 0, e10 = 0;
  for (size_t i = 0; i < smooth.pixels.size(); ++i) {
    e90 = std::max(e90, static_cast<double>(std::abs(q90.pixels[i] - smooth.pixels[i])));
    e10 = std::max(e10, static_cast<double>(std::abs(q10.pixels[i] - smooth.pixels[i])));
  }
  EXPECT_LT(e90, 0.03);
  EXPECT_GT(e10, e90);  // lower quality, larger error
  Image rgba = random_image(8, 8, 4, 5);
  Image back = nn::data::jpeg_roundtrip(rgba, 80);
  ASSERT_EQ(back.channels, 4);
  for (size_t i = 3; i < back.pixels.size(); i += 4) EXPECT_EQ(back.pixels[i], rgba.pixels[i]);  // alpha kept
}

TEST(Degrade, RandomDrawsAreSeededWithinTheirRanges) {
  nn::data::DegradeOptions o;
  o.gamma_max = 1.5;
  o.blur_probability = 0.5;
  o.blur_sigma_max = 1.0;
  o.noise_probability = 0.5;
  o.noise_sigma_max = 0.04;
  o.downscale_probability = 0.5;
  o.downscale_min = 0.5;
  o.jpeg_probability = 0.5;
  o.jpeg_quality_min = 30;
  int blurred = 0, jpeg = 0;
  for (uint64_t s = 0; s < 400; ++s) {
    nn::Generator gen(s);
    nn::data::DegradeParams p = nn::data::draw_degrade_params(o, gen);
    EXPECT_EQ(gen.offset(), 3u);
    EXPECT_TRUE(p.gamma >= 1 / 1.5 - 1e-12 && p.gamma <= 1.5 + 1e-12) << p.gamma;
    EXPECT_TRUE(p.blur_sigma >= 0 && p.blur_sigma <= 1.0);
    EXPECT_TRUE(p.downscale >= 0.5 && p.downscale <= 1.0);
    EXPECT_TRUE(p.noise_sigma >= 0 && p.noise_sigma <= 0.04);
    EXPECT_TRUE(p.jpeg_quality == 0 || (p.jpeg_quality >= 30 && p.jpeg_quality <= 95)) << p.jpeg_quality;
    blurred += p.blur_sigma > 0;
    jpeg += p.jpeg_quality > 0;
  }
  EXPECT_NEAR(blurred, 200, 40);
  EXPECT_NEAR(jpeg, 200, 40);
  const Image im = random_image(12, 12, 1, 6);
  nn::Generator a(9), b(9);
  EXPECT_EQ(nn::data::degrade(im, o, a).pixels, nn::data::degrade(im, o, b).pixels);
  nn::Generator c(9);
  EXPECT_EQ(nn::data::degrade(im, nn::data::DegradeOptions{}, c).pixels, im.pixels);
  EXPECT_EQ(c.offset(), 0u);  // an identity draws nothing
}

}  // namespace

namespace {

TEST(Degrade, HistogramMatchingTakesTheReferenceDistributionAndKeepsTheOrder) {
  // An image with a dark-leaning distribution matched to a bright-heavy one: its cdf becomes the
  // reference's (within what its most frequent 8-bit level, which maps to one value, allows), and
  // brighter pixels stay brighter.
  Image im{40, 50, 1, std::vector<float>(2000)}, ref{30, 30, 1, std::vector<float>(900)};
  std::mt19937 rng(7);
  for (float& v : im.pixels) v = std::pow(static_cast<float>(rng() % 1000) / 1000.0f, 1.3f);
  for (float& v : ref.pixels) v = std::sqrt(static_cast<float>(rng() % 1000) / 1000.0f);
  const std::vector<double> target = nn::data::intensity_cdf(ref, 64);
  Image out = nn::data::match_histogram(im, target);
  const std::vector<double> got = nn::data::intensity_cdf(out, 64);
  double worst = 0;
  for (size_t b = 0; b < got.size(); ++b) worst = std::max(worst, std::abs(got[b] - target[b]));
  EXPECT_LT(worst, 0.05);
  for (size_t i = 0; i < im.pixels.size(); ++i)
    for (size_t j = i + 1; j < std::min(im.pixels.size(), i + 20); ++j)
      if (im.pixels[i] < im.pixels[j] - 1.0f / 255) {
        EXPECT_LE(out.pixels[i], out.pixels[j]) << i << " " << j;
      }
  EXPECT_THROW(nn::data::match_histogram(im, {0.5, 0.4, 1.0}), nn::Error);  // not a cdf
  EXPECT_EQ(nn::data::intensity_cdf(im).back(), 1.0);
}

}  // namespace
