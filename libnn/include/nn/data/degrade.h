// Image degradations: what another X-ray machine, acquisition protocol, post-processing or file
// format does to an image - exposure (gamma), blur, lower resolution, noise, JPEG compression.
// Deterministic functions (for evaluating a model under such shifts), and a seeded random draw of
// them (for training a model not to rely on one machine's look). Images keep their size and
// channel count; values are in [0, 1] (inputs are clamped to it first).
#pragma once

#include <cstdint>
#include <vector>

#include "nn/data/image.h"
#include "nn/generator.h"

namespace nn::data {

// v -> v^gamma on the colour samples (alpha kept): gamma < 1 brightens the mid-tones (a harder,
// over-exposed look), gamma > 1 darkens them.
Image adjust_gamma(const Image& image, double gamma);
// A separable Gaussian blur of standard deviation `sigma` pixels (taps within 3 sigma, edges
// replicated); sigma 0 returns the image.
Image gaussian_blur(const Image& image, double sigma);
// Independent N(0, sigma^2) noise on every colour sample, from `gen`, clamped to [0, 1].
Image add_gaussian_noise(const Image& image, double sigma, Generator& gen);
// Resized to round(factor * side) (antialiased, at least 1 pixel) and back to the original size
// (bilinear): the detail a lower-resolution detector or a smaller stored file loses. factor in
// (0, 1]; 1 returns the image.
Image downscale_upscale(const Image& image, double factor);
// Encoded as a JPEG of `quality` (1..100) and decoded again (gray stays gray).
Image jpeg_roundtrip(const Image& image, int quality);

// The cumulative distribution of an image's colour samples (alpha excluded) over `bins` equal-width
// bins of [0, 1] (values clamped): cdf[b] = the fraction of samples in bins 0..b; cdf.back() == 1.
std::vector<double> intensity_cdf(const Image& image, int bins = 256);
// Histogram matching: every colour sample v replaced by the reference distribution's value at v's
// rank in the image (the reference's quantile at the image's cdf(v), interpolated linearly within
// the reference's bins), so the image takes the reference's histogram - another machine's or
// another processing's gray levels - while keeping the order of its own. The reference is a cdf of
// intensity_cdf's form (any number of bins >= 2).
Image match_histogram(const Image& image, const std::vector<double>& reference_cdf);

// A random draw of degradations for training. Each one is applied with its probability; the
// strengths are uniform in the ranges given (gamma: log-uniform in [1/gamma_max, gamma_max]).
struct DegradeOptions {
  double gamma_max = 1;             // >= 1; 1: off
  double blur_probability = 0;      // sigma uniform in [0, blur_sigma_max] pixels
  double blur_sigma_max = 0;
  double noise_probability = 0;     // sigma uniform in [0, noise_sigma_max]
  double noise_sigma_max = 0;
  double downscale_probability = 0;  // factor uniform in [downscale_min, 1]
  double downscale_min = 1;
  double jpeg_probability = 0;      // quality uniform in [jpeg_quality_min, 95]
  int jpeg_quality_min = 95;
};
// True when no degradation can happen: degrade() then returns its input unchanged.
bool is_identity(const DegradeOptions& options);

// One draw: what apply_degrade applies, in this order: gamma, blur, downscale, noise, JPEG.
struct DegradeParams {
  double gamma = 1;
  double blur_sigma = 0;
  double downscale = 1;
  double noise_sigma = 0;
  uint64_t noise_seed = 0;  // the noise's generator seed
  int jpeg_quality = 0;     // 0: no JPEG
};
// Consumes exactly three Philox blocks of `gen` whatever the options (streams stay aligned).
DegradeParams draw_degrade_params(const DegradeOptions& options, Generator& gen);
Image apply_degrade(const Image& image, const DegradeParams& params);
// draw_degrade_params + apply_degrade; an identity `options` returns `image` unchanged (no numbers
// drawn).
Image degrade(const Image& image, const DegradeOptions& options, Generator& gen);

}  // namespace nn::data
