// Image degradations (nn/data/degrade.h).
#include "nn/data/degrade.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "nn/error.h"

namespace nn::data {
namespace {

constexpr double kTwoPi = 6.283185307179586;

void check_image(const Image& image, const char* op) {
  NN_CHECK(image.height >= 1 && image.width >= 1 && image.channels >= 1 && image.channels <= 4 &&
               image.pixels.size() == static_cast<size_t>(image.height * image.width * image.channels),
           op, ": expects a non-empty image of 1 to 4 channels, got ", image.height, "x", image.width, "x",
           image.channels, " with ", image.pixels.size(), " samples");
}

bool is_alpha(int64_t channel, int64_t channels) { return (channels == 2 || channels == 4) && channel == channels - 1; }

float clamp01(float v) { return v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; }  // NaN -> 0

// The 1-D Gaussian taps for `sigma`, radius ceil(3 sigma), normalised to sum 1.
std::vector<float> gaussian_taps(double sigma) {
  const int radius = std::max(1, static_cast<int>(std::ceil(3.0 * sigma)));
  std::vector<float> taps(static_cast<size_t>(2 * radius + 1));
  double total = 0;
  for (int k = -radius; k <= radius; ++k) total += std::exp(-0.5 * k * k / (sigma * sigma));
  for (int k = -radius; k <= radius; ++k)
    taps[static_cast<size_t>(k + radius)] = static_cast<float>(std::exp(-0.5 * k * k / (sigma * sigma)) / total);
  return taps;
}

// Uniform in [0, 1) from 32 random bits.
double unit(uint32_t bits) { return bits * (1.0 / 4294967296.0); }

}  // namespace

Image adjust_gamma(const Image& image, double gamma) {
  check_image(image, "adjust_gamma");
  NN_CHECK(std::isfinite(gamma) && gamma > 0, "adjust_gamma: gamma must be positive, got ", gamma);
  Image out = image;
  const int64_t c = image.channels;
  for (size_t i = 0; i < out.pixels.size(); ++i)
    if (!is_alpha(static_cast<int64_t>(i) % c, c))
      out.pixels[i] = static_cast<float>(std::pow(static_cast<double>(clamp01(out.pixels[i])), gamma));
  return out;
}

Image gaussian_blur(const Image& image, double sigma) {
  check_image(image, "gaussian_blur");
  NN_CHECK(std::isfinite(sigma) && sigma >= 0, "gaussian_blur: sigma must be >= 0, got ", sigma);
  if (sigma == 0) return image;
  const std::vector<float> taps = gaussian_taps(sigma);
  const int64_t radius = static_cast<int64_t>(taps.size() / 2), h = image.height, w = image.width, c = image.channels;
  Image tmp = image, out = image;
  for (int64_t y = 0; y < h; ++y)  // horizontal
    for (int64_t x = 0; x < w; ++x)
      for (int64_t k = 0; k < c; ++k) {
        float acc = 0;
        for (int64_t t = -radius; t <= radius; ++t) {
          const int64_t xx = std::clamp<int64_t>(x + t, 0, w - 1);
          acc += taps[static_cast<size_t>(t + radius)] * image.pixels[static_cast<size_t>((y * w + xx) * c + k)];
        }
        tmp.pixels[static_cast<size_t>((y * w + x) * c + k)] = acc;
      }
  for (int64_t y = 0; y < h; ++y)  // vertical
    for (int64_t x = 0; x < w; ++x)
      for (int64_t k = 0; k < c; ++k) {
        float acc = 0;
        for (int64_t t = -radius; t <= radius; ++t) {
          const int64_t yy = std::clamp<int64_t>(y + t, 0, h - 1);
          acc += taps[static_cast<size_t>(t + radius)] * tmp.pixels[static_cast<size_t>((yy * w + x) * c + k)];
        }
        out.pixels[static_cast<size_t>((y * w + x) * c + k)] = acc;
      }
  return out;
}

Image add_gaussian_noise(const Image& image, double sigma, Generator& gen) {
  check_image(image, "add_gaussian_noise");
  NN_CHECK(std::isfinite(sigma) && sigma >= 0, "add_gaussian_noise: sigma must be >= 0, got ", sigma);
  Image out = image;
  const int64_t c = image.channels;
  const size_t n = out.pixels.size();
  const uint64_t counter = gen.reserve((n + 1) / 2 + 1);  // one Philox block gives two normals
  for (size_t i = 0; i < n; i += 2) {
    uint32_t r[4];
    philox4x32(gen.seed(), counter + i / 2, 0, r);
    // Box-Muller: two independent N(0, 1) from two uniforms (the first kept away from 0).
    const double u1 = (r[0] + 1.0) * (1.0 / 4294967297.0), u2 = unit(r[1]);
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double z[2] = {radius * std::cos(kTwoPi * u2), radius * std::sin(kTwoPi * u2)};
    for (size_t j = 0; j < 2 && i + j < n; ++j)
      if (!is_alpha(static_cast<int64_t>(i + j) % c, c))
        out.pixels[i + j] = clamp01(static_cast<float>(clamp01(out.pixels[i + j]) + sigma * z[j]));
  }
  return out;
}

Image downscale_upscale(const Image& image, double factor) {
  check_image(image, "downscale_upscale");
  NN_CHECK(std::isfinite(factor) && factor > 0 && factor <= 1, "downscale_upscale: factor must be in (0, 1], got ",
           factor);
  if (factor == 1) return image;
  const int64_t h = std::max<int64_t>(1, std::llround(factor * static_cast<double>(image.height)));
  const int64_t w = std::max<int64_t>(1, std::llround(factor * static_cast<double>(image.width)));
  return resize(resize(image, h, w), image.height, image.width);
}

Image jpeg_roundtrip(const Image& image, int quality) {
  check_image(image, "jpeg_roundtrip");
  const std::vector<uint8_t> bytes = encode_jpeg(image, quality);
  Image decoded = decode_image(bytes.data(), bytes.size(), "<jpeg_roundtrip>");
  if (decoded.channels == image.channels) return decoded;
  // The alpha channel JPEG dropped comes back as it was.
  Image out = image;
  const int64_t n = image.height * image.width, c = image.channels, d = decoded.channels;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < d; ++k) out.pixels[static_cast<size_t>(i * c + k)] = decoded.pixels[static_cast<size_t>(i * d + k)];
  return out;
}

std::vector<double> intensity_cdf(const Image& image, int bins) {
  check_image(image, "intensity_cdf");
  NN_CHECK(bins >= 2, "intensity_cdf: needs at least 2 bins, got ", bins);
  std::vector<double> cdf(static_cast<size_t>(bins), 0.0);
  const int64_t c = image.channels;
  int64_t n = 0;
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    if (is_alpha(static_cast<int64_t>(i) % c, c)) continue;
    const auto b = std::min<int64_t>(bins - 1, static_cast<int64_t>(clamp01(image.pixels[i]) * bins));
    cdf[static_cast<size_t>(b)] += 1;
    ++n;
  }
  double run = 0;
  for (double& v : cdf) {
    run += v;
    v = run / static_cast<double>(n);
  }
  cdf.back() = 1.0;
  return cdf;
}

Image match_histogram(const Image& image, const std::vector<double>& reference) {
  check_image(image, "match_histogram");
  NN_CHECK(reference.size() >= 2 && std::abs(reference.back() - 1.0) < 1e-9,
           "match_histogram: the reference must be a cdf of at least 2 bins ending at 1");
  for (size_t b = 1; b < reference.size(); ++b)
    NN_CHECK(reference[b] >= reference[b - 1], "match_histogram: the reference cdf decreases at bin ", b);
  const std::vector<double> own = intensity_cdf(image, 256);
  const double ref_bins = static_cast<double>(reference.size());
  // The value of the reference at quantile q: the bin where its cdf reaches q, linearly within it.
  auto quantile = [&](double q) {
    const auto it = std::lower_bound(reference.begin(), reference.end(), q);
    const size_t b = static_cast<size_t>(std::min<std::ptrdiff_t>(it - reference.begin(), reference.size() - 1));
    const double below = b == 0 ? 0.0 : reference[b - 1], width = reference[b] - below;
    const double within = width > 0 ? (q - below) / width : 0.5;
    return (static_cast<double>(b) + std::clamp(within, 0.0, 1.0)) / ref_bins;
  };
  std::array<float, 256> map{};
  for (int v = 0; v < 256; ++v) {
    // A level's rank: the middle of the samples in its bin.
    const double below = v == 0 ? 0.0 : own[static_cast<size_t>(v) - 1];
    map[static_cast<size_t>(v)] = static_cast<float>(quantile((below + own[static_cast<size_t>(v)]) / 2));
  }
  Image out = image;
  const int64_t c = image.channels;
  for (size_t i = 0; i < out.pixels.size(); ++i)
    if (!is_alpha(static_cast<int64_t>(i) % c, c)) {
      const auto b = std::min<int64_t>(255, static_cast<int64_t>(clamp01(out.pixels[i]) * 256));
      out.pixels[i] = map[static_cast<size_t>(b)];
    }
  return out;
}

bool is_identity(const DegradeOptions& o) {
  return o.gamma_max == 1 && (o.blur_probability == 0 || o.blur_sigma_max == 0) &&
         (o.noise_probability == 0 || o.noise_sigma_max == 0) &&
         (o.downscale_probability == 0 || o.downscale_min == 1) && o.jpeg_probability == 0;
}

DegradeParams draw_degrade_params(const DegradeOptions& o, Generator& gen) {
  NN_CHECK(std::isfinite(o.gamma_max) && o.gamma_max >= 1, "DegradeOptions: gamma_max must be >= 1, got ", o.gamma_max);
  for (double p : {o.blur_probability, o.noise_probability, o.downscale_probability, o.jpeg_probability})
    NN_CHECK(p >= 0 && p <= 1, "DegradeOptions: probabilities must be in [0, 1], got ", p);
  NN_CHECK(o.blur_sigma_max >= 0 && o.noise_sigma_max >= 0, "DegradeOptions: sigmas must be >= 0");
  NN_CHECK(o.downscale_min > 0 && o.downscale_min <= 1, "DegradeOptions: downscale_min must be in (0, 1], got ",
           o.downscale_min);
  NN_CHECK(o.jpeg_quality_min >= 1 && o.jpeg_quality_min <= 95, "DegradeOptions: jpeg_quality_min must be 1..95, got ",
           o.jpeg_quality_min);
  const uint64_t counter = gen.reserve(3);
  uint32_t r[12];
  for (int b = 0; b < 3; ++b) philox4x32(gen.seed(), counter + static_cast<uint64_t>(b), 0, r + 4 * b);
  DegradeParams p;
  p.gamma = std::exp(std::log(o.gamma_max) * (2.0 * unit(r[0]) - 1.0));
  if (unit(r[1]) < o.blur_probability) p.blur_sigma = o.blur_sigma_max * unit(r[2]);
  if (unit(r[3]) < o.downscale_probability) p.downscale = o.downscale_min + (1.0 - o.downscale_min) * unit(r[4]);
  if (unit(r[5]) < o.noise_probability) {
    p.noise_sigma = o.noise_sigma_max * unit(r[6]);
    p.noise_seed = (static_cast<uint64_t>(r[7]) << 32) | r[8];
  }
  if (unit(r[9]) < o.jpeg_probability)
    p.jpeg_quality = o.jpeg_quality_min + static_cast<int>(unit(r[10]) * (95 - o.jpeg_quality_min + 1));
  return p;
}

Image apply_degrade(const Image& image, const DegradeParams& p) {
  Image out = p.gamma != 1 ? adjust_gamma(image, p.gamma) : image;
  if (p.blur_sigma > 0) out = gaussian_blur(out, p.blur_sigma);
  if (p.downscale < 1) out = downscale_upscale(out, p.downscale);
  if (p.noise_sigma > 0) {
    Generator noise(p.noise_seed);
    out = add_gaussian_noise(out, p.noise_sigma, noise);
  }
  if (p.jpeg_quality > 0) out = jpeg_roundtrip(out, p.jpeg_quality);
  return out;
}

Image degrade(const Image& image, const DegradeOptions& options, Generator& gen) {
  if (is_identity(options)) return image;
  return apply_degrade(image, draw_degrade_params(options, gen));
}

}  // namespace nn::data
