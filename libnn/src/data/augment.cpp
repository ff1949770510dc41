// Seeded augmentation (nn/data/augment.h): one affine resampling, flip, brightness, contrast.
// Single-threaded on purpose: it runs inside the data loader's worker threads.
#include "nn/data/augment.h"

#include <algorithm>
#include <cmath>

namespace nn::data {
namespace {

constexpr double kPi = 3.14159265358979323846;

bool finite_nonnegative(double v) { return std::isfinite(v) && v >= 0.0; }

void check_options(const AugmentOptions& o) {
  NN_CHECK(finite_nonnegative(o.zoom) && o.zoom < 1.0, "augment: zoom must be in [0, 1), got ", o.zoom);
  NN_CHECK(finite_nonnegative(o.shear) && o.shear < kPi / 2,
           "augment: shear must be in [0, pi/2) radians, got ", o.shear);
  NN_CHECK(finite_nonnegative(o.rotation_degrees) && o.rotation_degrees <= 360.0,
           "augment: rotation_degrees must be in [0, 360], got ", o.rotation_degrees);
  NN_CHECK(finite_nonnegative(o.translate) && o.translate <= 1.0,
           "augment: translate must be in [0, 1], got ", o.translate);
  NN_CHECK(finite_nonnegative(o.brightness) && o.brightness <= 1.0,
           "augment: brightness must be in [0, 1], got ", o.brightness);
  NN_CHECK(finite_nonnegative(o.contrast) && o.contrast <= 1.0,
           "augment: contrast must be in [0, 1], got ", o.contrast);
  NN_CHECK(finite_nonnegative(o.aspect) && o.aspect <= 3.0, "augment: aspect must be in [0, 3], got ", o.aspect);
}

void check_image(const Image& image) {
  NN_CHECK(image.height >= 1 && image.width >= 1, "augment: empty image (", image.height, "x",
           image.width, ")");
  NN_CHECK(image.channels >= 1 && image.channels <= 4, "augment: an image has 1 to 4 channels, got ",
           image.channels);
  NN_CHECK(image.pixels.size() == static_cast<size_t>(image.height * image.width * image.channels),
           "augment: the image holds ", image.pixels.size(), " samples, but ", image.height, "x",
           image.width, "x", image.channels, " needs ", image.height * image.width * image.channels);
}

// Uniform in [-r, r] from u in [0, 1).
double symmetric(double u, double r) { return r * (2.0 * u - 1.0); }

bool has_alpha(int64_t channels) { return channels == 2 || channels == 4; }

}  // namespace

bool is_identity(const AugmentOptions& o) {
  return o.zoom == 0.0 && o.shear == 0.0 && o.rotation_degrees == 0.0 && o.translate == 0.0 &&
         !o.horizontal_flip && o.brightness == 0.0 && o.contrast == 0.0 && o.aspect == 0.0;
}

AugmentParams draw_augment_params(const AugmentOptions& o, Generator& gen) {
  check_options(o);
  const uint64_t counter = gen.reserve(3);
  uint32_t w[12];
  for (int b = 0; b < 3; ++b) philox4x32(gen.seed(), counter + static_cast<uint64_t>(b), 0, w + 4 * b);
  double u[12];
  for (int i = 0; i < 12; ++i) u[i] = w[i] * (1.0 / 4294967296.0);  // [0, 1), 32 bits
  AugmentParams p;
  p.zoom = 1.0 + symmetric(u[0], o.zoom);
  p.shear = symmetric(u[1], o.shear);
  p.rotation = symmetric(u[2], o.rotation_degrees) * kPi / 180.0;
  p.translate_x = symmetric(u[3], o.translate);
  p.translate_y = symmetric(u[4], o.translate);
  p.flip = o.horizontal_flip && u[5] < 0.5;
  p.brightness = symmetric(u[6], o.brightness);
  p.contrast = 1.0 + symmetric(u[7], o.contrast);
  p.aspect = std::exp(symmetric(u[8], std::log1p(o.aspect)));
  return p;
}

Image apply_augment(const Image& image, const AugmentParams& p) {
  check_image(image);
  NN_CHECK(std::isfinite(p.zoom) && p.zoom > 0.0 && std::isfinite(p.shear) &&
               std::abs(p.shear) < kPi / 2 && std::isfinite(p.rotation) &&
               std::isfinite(p.translate_x) && std::isfinite(p.translate_y) &&
               std::isfinite(p.brightness) && std::isfinite(p.contrast) && p.contrast >= 0.0 &&
               std::isfinite(p.aspect) && p.aspect > 0.0,
           "apply_augment: invalid parameters (zoom ", p.zoom, ", shear ", p.shear, ", rotation ",
           p.rotation, ", translate ", p.translate_x, "/", p.translate_y, ", brightness ",
           p.brightness, ", contrast ", p.contrast, ")");
  const int64_t H = image.height, W = image.width, C = image.channels;
  Image out = image;

  // Geometry: skipped when it is the identity, so brightness/contrast-only augmentation does not
  // resample.
  const bool geometric = p.zoom != 1.0 || p.shear != 0.0 || p.rotation != 0.0 ||
                         p.translate_x != 0.0 || p.translate_y != 0.0 || p.aspect != 1.0;
  if (geometric) {
    // M = R * Sh * Z and the offset R * t, in (x, y) relative to the centre.
    const double cr = std::cos(p.rotation), sr = std::sin(p.rotation);
    const double cs = std::cos(p.shear), ss = std::sin(p.shear);
    const double f = p.zoom, fa = p.zoom * p.aspect;
    // Sh * Z = [[cs f a, 0], [-ss f a, f]]
    const double a00 = cr * cs * fa - sr * ss * fa, a01 = sr * f;
    const double a10 = -sr * cs * fa - cr * ss * fa, a11 = cr * f;
    const double tx = p.translate_x * static_cast<double>(W), ty = p.translate_y * static_cast<double>(H);
    const double ox = cr * tx + sr * ty, oy = -sr * tx + cr * ty;
    const double cx = 0.5 * static_cast<double>(W - 1), cy = 0.5 * static_cast<double>(H - 1);
    const double max_x = static_cast<double>(W - 1), max_y = static_cast<double>(H - 1);
    const float* src = image.pixels.data();
    float* dst = out.pixels.data();
    for (int64_t y = 0; y < H; ++y) {
      const double v = static_cast<double>(y) - cy;
      for (int64_t x = 0; x < W; ++x) {
        const double u = static_cast<double>(x) - cx;
        // fill_mode="nearest" with bilinear sampling = clamping the coordinate to the image.
        const double sx = std::clamp(cx + a00 * u + a01 * v + ox, 0.0, max_x);
        const double sy = std::clamp(cy + a10 * u + a11 * v + oy, 0.0, max_y);
        const int64_t x0 = std::min<int64_t>(static_cast<int64_t>(sx), W - 1);
        const int64_t y0 = std::min<int64_t>(static_cast<int64_t>(sy), H - 1);
        const int64_t x1 = std::min<int64_t>(x0 + 1, W - 1), y1 = std::min<int64_t>(y0 + 1, H - 1);
        const double fx = sx - static_cast<double>(x0), fy = sy - static_cast<double>(y0);
        const float* p00 = src + (y0 * W + x0) * C;
        const float* p01 = src + (y0 * W + x1) * C;
        const float* p10 = src + (y1 * W + x0) * C;
        const float* p11 = src + (y1 * W + x1) * C;
        float* d = dst + (y * W + x) * C;
        for (int64_t c = 0; c < C; ++c) {
          const double top = p00[c] + fx * (p01[c] - p00[c]);
          const double bottom = p10[c] + fx * (p11[c] - p10[c]);
          d[c] = static_cast<float>(top + fy * (bottom - top));
        }
      }
    }
  }

  if (p.flip) {
    for (int64_t y = 0; y < H; ++y) {
      float* row = out.pixels.data() + y * W * C;
      for (int64_t x = 0; x < W / 2; ++x)
        for (int64_t c = 0; c < C; ++c) std::swap(row[x * C + c], row[(W - 1 - x) * C + c]);
    }
  }

  // Brightness, contrast (colour channels only), clamp to [0, 1] (every channel).
  const int64_t colour = has_alpha(C) ? C - 1 : C;
  const int64_t n = H * W;
  float* d = out.pixels.data();
  double mean = 0.0;
  if (p.contrast != 1.0) {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < colour; ++c) mean += static_cast<double>(d[i * C + c]) + p.brightness;
    mean /= static_cast<double>(n * colour);
  }
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t c = 0; c < C; ++c) {
      double v = d[i * C + c];
      if (c < colour) v = mean + p.contrast * (v + p.brightness - mean);
      d[i * C + c] = static_cast<float>(std::clamp(v, 0.0, 1.0));
    }
  }
  return out;
}

Image augment(const Image& image, const AugmentOptions& options, Generator& gen) {
  check_options(options);
  check_image(image);
  if (is_identity(options)) return image;
  return apply_augment(image, draw_augment_params(options, gen));
}

}  // namespace nn::data
