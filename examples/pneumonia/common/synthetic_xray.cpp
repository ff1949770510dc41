// Synthetic chest X-rays: see synthetic_xray.h. The renderer works in normalised body coordinates
// (x to the image's right, y down, the thorax roughly in [-1, 1]^2), computes a "brightness
// before exposure" per pixel from additive layers (soft tissue, mediastinum, heart, bones, minus
// the air in the lungs, which pneumonia replaces by fluid), then blurs, applies the per-image
// exposure curve and adds detector noise. The patient's right is on the image's left, as on a
// real film, so the heart bulges into the image-right lung.
#include "synthetic_xray.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include <nn/error.h>
#include <nn/generator.h>
#include <nn/parallel.h>

namespace pneumonia {
namespace {

namespace fs = std::filesystem;
constexpr float kPi = 3.14159265358979f;

uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Per-image random numbers: Philox4x32-10 keyed by the seed, counter (block, index), the class in
// the key, so normal image i and pneumonia image i are unrelated. No std:: distributions (their
// output differs between standard libraries).
class Rng {
 public:
  Rng(uint64_t seed, uint64_t index, bool pneumonia)
      : key_(splitmix64(splitmix64(seed) ^ (pneumonia ? 0x5DEECE66Dull : 0x2545F4914F6CDD1Dull))),
        index_(index) {}
  uint32_t next_u32() {
    if (pos_ == 4) {
      nn::philox4x32(key_, block_++, index_, buf_);
      pos_ = 0;
    }
    return buf_[pos_++];
  }
  double uniform() { return nn::uints_to_unit_double(next_u32(), next_u32()); }
  float uniform(double lo, double hi) { return static_cast<float>(lo + (hi - lo) * uniform()); }
  bool coin(double p) { return uniform() < p; }
  float normal() {  // Box-Muller
    double u1 = std::max(uniform(), 1e-300), u2 = uniform();
    return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * 3.141592653589793 * u2));
  }
  uint64_t next_u64() { return (static_cast<uint64_t>(next_u32()) << 32) | next_u32(); }

 private:
  uint64_t key_, index_, block_ = 0;
  uint32_t buf_[4] = {0, 0, 0, 0};
  int pos_ = 4;
};

inline float clamp01(float v) { return std::min(1.0f, std::max(0.0f, v)); }
inline float smoothstep(float e0, float e1, float x) {
  float t = clamp01((x - e0) / (e1 - e0));
  return t * t * (3.0f - 2.0f * t);
}
inline float sq(float v) { return v * v; }

// Value noise on an integer lattice hashed with the salt; smooth (C1) interpolation, in [0, 1).
inline float lattice(int64_t ix, int64_t iy, uint64_t salt) {
  uint64_t h = splitmix64(salt ^ (static_cast<uint64_t>(ix) * 0x9E3779B97F4A7C15ull) ^
                          (static_cast<uint64_t>(iy) * 0xC2B2AE3D27D4EB4Full));
  return static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
}
float value_noise(float x, float y, uint64_t salt) {
  float fx = std::floor(x), fy = std::floor(y);
  int64_t ix = static_cast<int64_t>(fx), iy = static_cast<int64_t>(fy);
  float tx = x - fx, ty = y - fy;
  tx = tx * tx * (3.0f - 2.0f * tx);
  ty = ty * ty * (3.0f - 2.0f * ty);
  float a = lattice(ix, iy, salt), b = lattice(ix + 1, iy, salt);
  float c = lattice(ix, iy + 1, salt), d = lattice(ix + 1, iy + 1, salt);
  return (a + (b - a) * tx) + ((c + (d - c) * tx) - (a + (b - a) * tx)) * ty;
}
// Fractal sum of octaves, normalised to [0, 1).
float fbm(float x, float y, uint64_t salt, int octaves) {
  float sum = 0.0f, amp = 1.0f, norm = 0.0f;
  for (int o = 0; o < octaves; ++o) {
    sum += amp * value_noise(x, y, salt + 0x632BE59BD9B4E019ull * static_cast<uint64_t>(o + 1));
    norm += amp;
    amp *= 0.5f;
    x = x * 2.03f + 17.3f;
    y = y * 2.03f - 5.1f;
  }
  return sum / norm;
}
// Ridges (1 at the noise's mid-level, 0 at its extremes): thin branching lines.
inline float ridge(float n) { return 1.0f - std::fabs(2.0f * n - 1.0f); }

// 5x7 bitmaps of the side markers.
constexpr const char* kLetterL[7] = {"1....", "1....", "1....", "1....", "1....", "1....", "11111"};
constexpr const char* kLetterR[7] = {"1111.", "1...1", "1...1", "1111.", "1.1..", "1..1.", "1...1"};

// Everything random about one image, drawn up front (the per-pixel work uses no Rng).
struct Params {
  // Placement: image = translate + rotate(scale * body).
  float scale, theta, tx, ty, width;
  // Anatomy.
  float shoulder_y, neck_w, torso_w;
  float lung_rx[2], lung_cx[2], lung_top, lung_bottom;
  float dia_base[2], dia_depth;
  float heart_x, heart_y, heart_rx, heart_ry, heart_angle, heart_density;
  float med_w, thymus;  // thymus widens the upper mediastinum in young children
  float clav_y, clav_drop;
  float rib_curve, rib_spacing, rib_phase, rib_density, ant_rib_density;
  float vessel_gain, air;
  bool arms, bubble;
  float bubble_x, bubble_r;
  // Pneumonia.
  float patchy_strength = 0;
  // Up to two consolidations (foci); strength 0 = absent.
  float lobar_strength[2] = {0, 0};
  float lobar_cx[2] = {0, 0}, lobar_cy[2] = {0, 0}, lobar_rx[2] = {1, 1}, lobar_ry[2] = {1, 1}, lobar_angle[2] = {0, 0};
  float lobar_fissure = 2;  // lower border of a right-upper-lobe focus (focus 0), 2 = none
  bool bronchograms = false;
  float patchy_threshold = 1, patchy_side_weight[2] = {0, 0}, patchy_freq = 3.5f;
  float effusion = 0;
  int effusion_side = 0;
  // Image formation.
  float contrast, brightness, gamma, blur_sigma, noise_std, uneven;
  int marker;  // 0 none, 1 "L", 2 "R"
  float marker_x, marker_y;
  uint64_t salt;
};

Params draw_params(Rng& rng, bool pneumonia, int64_t size) {
  Params p{};
  p.scale = rng.uniform(0.86, 1.02);
  p.theta = rng.uniform(-0.07, 0.07);
  p.tx = rng.uniform(-0.06, 0.06);
  p.ty = rng.uniform(-0.04, 0.08);
  p.width = rng.uniform(0.9, 1.1);

  p.shoulder_y = rng.uniform(-0.72, -0.6);
  p.neck_w = rng.uniform(0.17, 0.24);
  p.torso_w = rng.uniform(0.9, 1.0);
  const float lung_w = rng.uniform(0.9, 1.08);
  p.lung_rx[0] = 0.35f * lung_w;  // image left = patient's right, the larger lung
  p.lung_rx[1] = 0.33f * lung_w;
  p.lung_cx[0] = -0.44f * lung_w;
  p.lung_cx[1] = 0.44f * lung_w;
  p.lung_top = rng.uniform(-0.74, -0.64);
  p.lung_bottom = rng.uniform(0.66, 0.8);
  const float inspiration = rng.uniform(-0.08, 0.1);  // deeper breath, lower diaphragm
  p.dia_base[0] = 0.30f + inspiration;  // right hemidiaphragm higher (the liver)
  p.dia_base[1] = 0.36f + inspiration + rng.uniform(-0.02, 0.04);
  p.dia_depth = rng.uniform(0.12, 0.2);

  const float heart_size = rng.uniform(0.9, 1.15);  // cardiothoracic ratio varies in children
  p.heart_x = rng.uniform(0.07, 0.13);
  p.heart_y = 0.3f + inspiration * 0.8f + rng.uniform(-0.03, 0.03);
  p.heart_rx = 0.34f * heart_size;
  p.heart_ry = 0.25f * heart_size;
  p.heart_angle = rng.uniform(-0.5, -0.25);
  p.heart_density = rng.uniform(0.1, 0.14);
  p.med_w = rng.uniform(0.09, 0.12);
  p.thymus = rng.coin(0.3) ? rng.uniform(0.04, 0.12) : 0.0f;

  p.clav_y = p.shoulder_y + rng.uniform(0.0, 0.06);
  p.clav_drop = rng.uniform(-0.04, 0.12);
  p.rib_curve = rng.uniform(0.55, 0.8);
  p.rib_spacing = rng.uniform(0.1, 0.125);
  p.rib_phase = rng.uniform(0.0, 1.0);
  p.rib_density = rng.uniform(0.045, 0.075);
  p.ant_rib_density = rng.uniform(0.02, 0.05);
  p.vessel_gain = rng.uniform(0.7, 1.3);
  p.air = rng.uniform(0.22, 0.3);
  p.arms = rng.coin(0.4);
  p.bubble = rng.coin(0.6);
  p.bubble_x = rng.uniform(0.25, 0.45);
  p.bubble_r = rng.uniform(0.05, 0.1);

  if (pneumonia) {
    // Strength: mostly moderate to dense, a minority mild (on a par with the exposure variation
    // of normal films), so the classes overlap a little but a small CNN learns them in minutes.
    auto strength = [&] { return std::min(0.95f, 0.3f + 0.65f * static_cast<float>(std::pow(rng.uniform(), 0.8))); };
    const double kind = rng.uniform();
    const bool lobar = kind < 0.45 || kind >= 0.8, patchy = kind >= 0.45;
    if (lobar) {
      // One lobe-sized consolidation, a second one (other lung or another zone) in 45%.
      const int foci = rng.coin(0.45) ? 2 : 1;
      const int first_side = rng.coin(0.6) ? 0 : 1;
      for (int f = 0; f < foci; ++f) {
        p.lobar_strength[f] = std::min(0.98f, strength() + 0.08f) * (f == 0 ? 1.0f : rng.uniform(0.7, 1.0));
        const int side = f == 0 ? first_side : (rng.coin(0.6) ? 1 - first_side : first_side);
        const double zone = rng.uniform();
        p.lobar_cy[f] = zone < 0.5 ? rng.uniform(0.1, 0.3) : zone < 0.75 ? rng.uniform(-0.12, 0.1) : rng.uniform(-0.5, -0.3);
        p.lobar_cx[f] = p.lung_cx[side] + rng.uniform(-0.08, 0.08);
        p.lobar_rx[f] = rng.uniform(0.2, 0.36);
        p.lobar_ry[f] = rng.uniform(0.18, 0.34);
        p.lobar_angle[f] = rng.uniform(-0.6, 0.6);
        // Right upper lobe: a sharp lower border at the horizontal fissure, at times.
        if (f == 0 && side == 0 && zone >= 0.75 && rng.coin(0.5)) p.lobar_fissure = rng.uniform(-0.2, -0.08);
      }
      p.bronchograms = p.lobar_strength[0] > 0.45f && rng.coin(0.6);
    }
    if (patchy) {
      p.patchy_strength = strength();
      const bool bilateral = rng.coin(0.7);
      const int side = rng.coin(0.5) ? 0 : 1;
      for (int s = 0; s < 2; ++s)
        p.patchy_side_weight[s] = bilateral ? rng.uniform(0.65, 1.0) : (s == side ? 1.0f : rng.uniform(0.0, 0.3));
      p.patchy_threshold = rng.uniform(0.36, 0.5);
      p.patchy_freq = rng.uniform(3.0, 5.0);
    }
    if (rng.coin(0.12)) {
      p.effusion = rng.uniform(0.05, 0.14);
      p.effusion_side = rng.coin(0.5) ? 0 : 1;
    }
  }

  p.contrast = rng.uniform(0.85, 1.2);
  p.brightness = rng.uniform(-0.06, 0.06);
  p.gamma = rng.uniform(0.8, 1.25);
  p.blur_sigma = rng.uniform(0.45, 1.1) * static_cast<float>(size) / 128.0f;
  p.noise_std = rng.uniform(0.006, 0.025);
  p.uneven = rng.uniform(0.0, 0.06);
  const double m = rng.uniform();
  p.marker = m < 0.35 ? 1 : m < 0.6 ? 2 : 0;
  p.marker_x = rng.coin(0.5) ? rng.uniform(-0.92, -0.75) : rng.uniform(0.6, 0.75);
  p.marker_y = rng.uniform(-0.92, -0.78);
  p.salt = rng.next_u64();
  return p;
}

// Brightness (before blur and exposure) at body coordinates (x, y).
float render_point(const Params& p, float x, float y) {
  const uint64_t salt = p.salt;
  const float ax = std::fabs(x);
  const int side = x < 0 ? 0 : 1;

  // Torso: neck widening into the shoulders, slightly narrower at the bottom.
  const float sh = clamp01((y - (p.shoulder_y - 0.32f)) / 0.4f);
  float w = p.neck_w + (p.torso_w - p.neck_w) * std::sqrt(sh * (2.0f - sh));  // rounded shoulders
  w *= 1.0f - 0.08f * smoothstep(0.3f, 1.1f, y);
  const float body = smoothstep(0.0f, 0.03f, w - ax);
  const float thickness = std::sqrt(std::max(0.0f, 1.0f - sq(x / w)));
  float v = body * (0.1f + 0.4f * std::pow(thickness, 0.6f));
  if (p.arms) {  // arms at the sides, with the humerus
    const float arm_c = p.torso_w + 0.17f, arm_d = std::fabs(ax - arm_c);
    const float arm = smoothstep(0.0f, 0.03f, 0.12f - arm_d) * smoothstep(p.shoulder_y - 0.1f, p.shoulder_y + 0.1f, y);
    v += arm * (0.12f + 0.12f * std::sqrt(std::max(0.0f, 1.0f - sq(arm_d / 0.12f))));
    v += arm * 0.12f * smoothstep(0.0f, 0.015f, 0.045f - arm_d);
  }

  // Mediastinum (with the thymus in some), aortic knob, heart.
  const float med_w = p.med_w + p.thymus * smoothstep(-0.2f, -0.5f, y) * smoothstep(-0.95f, -0.6f, y);
  const float med = smoothstep(0.0f, 0.04f, med_w - std::fabs(x - 0.01f)) * smoothstep(0.7f, 0.5f, y);
  const float knob = smoothstep(0.0f, 0.03f, 0.065f - std::sqrt(sq(x - 0.1f) + sq(y + 0.3f)));
  const float ca = std::cos(p.heart_angle), sa = std::sin(p.heart_angle);
  const float hx = x - p.heart_x, hy = y - p.heart_y;
  const float hu = (ca * hx + sa * hy) / p.heart_rx, hv = (-sa * hx + ca * hy) / p.heart_ry;
  const float heart = smoothstep(0.0f, 0.35f, 1.0f - (hu * hu + hv * hv));
  v += std::max(0.15f * std::max(med, knob), p.heart_density * heart);

  // Trachea and main bronchi (air: darker).
  {
    float tr = 0.0f;
    if (y < -0.16f) tr = smoothstep(0.0f, 0.015f, 0.032f - std::fabs(x - 0.005f));
    else if (y < 0.0f) tr = smoothstep(0.0f, 0.012f, 0.024f - std::fabs(ax - (y + 0.16f) * 0.9f));
    v -= 0.09f * tr * smoothstep(-1.0f, -0.8f, y);
  }

  // Spine: vertebral bodies separated by darker disc spaces, pedicles as faint ovals.
  {
    const float sp = smoothstep(0.0f, 0.02f, 0.07f - std::fabs(x - 0.005f));
    if (sp > 0.0f) {
      float ph = (y + 2.0f) / 0.085f;
      ph -= std::floor(ph);
      const float disc = smoothstep(0.0f, 0.12f, ph) * smoothstep(1.0f, 0.85f, ph);
      const float ped = smoothstep(0.0f, 0.15f, 1.0f - (sq((std::fabs(x) - 0.045f) / 0.016f) + sq((ph - 0.45f) / 0.22f)));
      v += sp * (0.04f + 0.03f * disc + 0.03f * ped);
    }
  }

  // Diaphragm: a dome per side, lateral costophrenic recess deeper.
  float dia = p.dia_base[side] + p.dia_depth * sq((ax - 0.3f) / 0.36f);
  if (p.effusion > 0.0f && side == p.effusion_side)  // meniscus: fluid fills the lateral recess
    dia -= p.effusion * smoothstep(0.3f, 0.72f, ax);
  const float below = smoothstep(-0.025f, 0.025f, y - dia);
  v += 0.05f * below * body;  // liver / abdomen slightly denser
  if (p.bubble && side == 1) {
    const float b = smoothstep(0.0f, 0.3f, 1.0f - (sq((x - p.bubble_x) / p.bubble_r) + sq((y - dia - 0.11f) / (0.6f * p.bubble_r))));
    v -= 0.12f * b * below;
  }

  // Lungs: superellipse fields, cut by the mediastinum, the heart and the diaphragm.
  const float lcy = 0.5f * (p.lung_top + p.lung_bottom), lry = 0.5f * (p.lung_bottom - p.lung_top);
  const float lx = (x - p.lung_cx[side]) / p.lung_rx[side], ly = (y - lcy) / lry;
  // Apex narrower than the base.
  const float taper = 0.78f + 0.22f * smoothstep(-1.0f, 0.1f, ly);
  const float q = std::pow(std::fabs(lx / taper), 2.4f) + std::pow(std::fabs(ly), 2.2f);
  float lung = smoothstep(0.0f, 0.3f, 1.0f - q);
  const float medial = p.med_w + 0.02f + 0.03f * smoothstep(-0.2f, 0.3f, y);
  lung *= smoothstep(medial, medial + 0.05f, ax);
  lung *= 1.0f - below;
  lung *= 1.0f - heart;

  if (lung > 0.0f) {
    // Hilum and bronchovascular markings: branching ridges in polar coordinates around the
    // hilum (the angle measured from the lateral direction, so its seam lies in the mediastinum).
    const float hxs = (side == 0 ? -1.0f : 1.0f);
    const float dx = (x - hxs * 0.17f) * hxs, dy = y + 0.03f;
    const float r = std::sqrt(dx * dx + dy * dy);
    const float ang = std::atan2(dy, dx);
    const float warp = 0.6f * fbm(x * 3.0f, y * 3.0f, salt + 11, 2);
    const float vessels = std::pow(ridge(fbm(ang * 4.5f + warp, r * 5.0f, salt + 23 + side, 3)), 4.0f);
    const float falloff = std::exp(-r / 0.32f);
    const float hilum = std::exp(-(dx * dx + dy * dy) / 0.005f);

    // Pneumonia: opacity in [0, 1] replaces air.
    float opacity = 0.0f;
    for (int f = 0; f < 2; ++f) {
      if (p.lobar_strength[f] <= 0.0f) continue;
      const float cl = std::cos(p.lobar_angle[f]), sl = std::sin(p.lobar_angle[f]);
      const float ox = x - p.lobar_cx[f], oy = y - p.lobar_cy[f];
      const float e = sq((cl * ox + sl * oy) / p.lobar_rx[f]) + sq((-sl * ox + cl * oy) / p.lobar_ry[f]) +
                      0.9f * (fbm(x * 5.0f, y * 5.0f, salt + 31 + static_cast<uint64_t>(f) * 3, 3) - 0.5f);
      float o = 1.0f - smoothstep(0.5f, 1.25f, e);
      if (f == 0 && p.lobar_fissure < 1.5f && side == 0) o *= 1.0f - smoothstep(-0.02f, 0.02f, y - p.lobar_fissure);
      // Fluffy texture inside, air bronchograms in some.
      o *= 0.8f + 0.2f * fbm(x * 12.0f, y * 12.0f, salt + 37, 2);
      if (p.bronchograms) {
        const float b = ridge(fbm(ang * 7.0f + warp, r * 6.0f, salt + 41, 2));
        o *= 1.0f - 0.55f * smoothstep(0.86f, 0.97f, b) * smoothstep(0.05f, 0.12f, r);
      }
      opacity = std::max(opacity, p.lobar_strength[f] * o);
    }
    if (p.patchy_strength > 0.0f) {
      const float n = fbm(x * p.patchy_freq, y * p.patchy_freq, salt + 53, 4);
      const float patches = smoothstep(p.patchy_threshold - 0.1f, p.patchy_threshold + 0.12f, n);
      const float where = 0.55f * std::exp(-r / 0.3f) + 0.45f * smoothstep(-0.2f, 0.35f, y);  // perihilar, bases
      // Patches over an interstitial haze.
      const float o = (0.7f * patches + 0.3f) * std::min(1.0f, 0.5f + where) * p.patchy_side_weight[side];
      opacity = std::max(opacity, p.patchy_strength * o);
    }
    const float vessel_gain = p.vessel_gain * (1.0f + 1.2f * p.patchy_strength * p.patchy_side_weight[side]);
    const float mottle = fbm(x * 9.0f, y * 9.0f, salt + 61, 2) - 0.5f;
    float air = p.air * (1.0f - opacity) * (1.0f + 0.12f * mottle);
    v -= lung * air;
    v += lung * (0.12f * opacity + 0.1f * vessel_gain * vessels * falloff + 0.1f * hilum +
                 0.05f * std::exp(-r / 0.25f));
  }

  // Ribs: posterior ribs curving down laterally, fainter anterior ribs sloping down medially,
  // brighter cortex at the edges of each rib; within the rib cage only.
  {
    const float cage = smoothstep(0.0f, 0.06f, w * 0.9f - ax) * smoothstep(p.lung_top - 0.08f, p.lung_top + 0.05f, y) *
                       smoothstep(0.06f, 0.12f, ax) * smoothstep(p.lung_bottom + 0.05f, p.lung_bottom - 0.15f, y);
    if (cage > 0.0f) {
      const float ys = y - p.rib_curve * ax * ax + 0.06f * ax - p.lung_top;
      float ph = std::pow(std::max(0.0f, ys + 0.2f), 0.9f) / p.rib_spacing + p.rib_phase;
      ph -= std::floor(ph);
      const float rib = smoothstep(0.0f, 0.08f, ph) * smoothstep(0.44f, 0.36f, ph);
      const float cortex = std::exp(-sq((ph - 0.03f) / 0.035f)) + std::exp(-sq((ph - 0.41f) / 0.035f));
      float pa = (y + 0.5f * ax - p.lung_top) / (p.rib_spacing * 1.25f) + 0.3f * p.rib_phase;
      pa -= std::floor(pa);
      const float arib = smoothstep(0.0f, 0.1f, pa) * smoothstep(0.45f, 0.35f, pa) * smoothstep(0.18f, 0.35f, ax);
      v += cage * (0.35f + 0.65f * lung) * (1.0f - 0.6f * below) *
           (p.rib_density * (0.75f * rib + 0.35f * cortex) + p.ant_rib_density * arib);
    }
  }

  // Clavicles: S-shaped bands from the sternum outwards.
  if (ax > 0.04f && ax < 0.68f) {
    const float t = (ax - 0.05f) / 0.6f;
    const float yc = p.clav_y + 0.03f - p.clav_drop * t + 0.035f * std::sin(kPi * t * 1.6f) - 0.07f * t * t;
    const float th = 0.028f * (1.0f + 0.35f * (1.0f - t));
    const float cl = std::exp(-sq((y - yc) / th)) * smoothstep(0.0f, 0.06f, t) * smoothstep(1.0f, 0.9f, t);
    v += 0.2f * cl;
  }
  return v;
}

void gaussian_blur(std::vector<float>& img, int64_t n, float sigma) {
  if (sigma < 0.3f) return;
  const int radius = static_cast<int>(std::ceil(3.0f * sigma));
  std::vector<float> k(static_cast<size_t>(2 * radius + 1));
  float sum = 0.0f;
  for (int i = -radius; i <= radius; ++i) sum += k[static_cast<size_t>(i + radius)] = std::exp(-0.5f * sq(i / sigma));
  for (float& kv : k) kv /= sum;
  std::vector<float> tmp(img.size());
  auto clampi = [n](int64_t i) { return std::min(n - 1, std::max<int64_t>(0, i)); };
  for (int64_t y = 0; y < n; ++y)
    for (int64_t x = 0; x < n; ++x) {
      float s = 0.0f;
      for (int i = -radius; i <= radius; ++i) s += k[static_cast<size_t>(i + radius)] * img[static_cast<size_t>(y * n + clampi(x + i))];
      tmp[static_cast<size_t>(y * n + x)] = s;
    }
  for (int64_t y = 0; y < n; ++y)
    for (int64_t x = 0; x < n; ++x) {
      float s = 0.0f;
      for (int i = -radius; i <= radius; ++i) s += k[static_cast<size_t>(i + radius)] * tmp[static_cast<size_t>(clampi(y + i) * n + x)];
      img[static_cast<size_t>(y * n + x)] = s;
    }
}

bool is_our_file(const fs::path& path, const std::string& prefix) {
  const std::string name = path.filename().string();
  if (name.size() <= prefix.size() + 4 || name.compare(0, prefix.size(), prefix) != 0) return false;
  if (name.compare(name.size() - 4, 4, ".png") != 0) return false;
  for (size_t i = prefix.size(); i + 4 < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return false;
  return true;
}

}  // namespace

nn::data::Image synthetic_xray(bool pneumonia, uint64_t index, const SyntheticXrayOptions& options) {
  const int64_t n = options.size;
  NN_CHECK(n >= 16 && n <= 4096, "synthetic_xray: size must be in 16..4096, got ", n);
  Rng rng(options.seed, index, pneumonia);
  const Params p = draw_params(rng, pneumonia, n);

  std::vector<float> img(static_cast<size_t>(n * n));
  const float ct = std::cos(p.theta), st = std::sin(p.theta);
  for (int64_t py = 0; py < n; ++py) {
    const float Y = (static_cast<float>(py) + 0.5f) / static_cast<float>(n) * 2.0f - 1.0f;
    for (int64_t px = 0; px < n; ++px) {
      const float X = (static_cast<float>(px) + 0.5f) / static_cast<float>(n) * 2.0f - 1.0f;
      // Image -> body: undo translation, rotation, scale, body width.
      const float ux = (X - p.tx) / p.scale, uy = (Y - p.ty) / p.scale;
      const float bx = (ct * ux + st * uy) / p.width, by = -st * ux + ct * uy;
      float v = render_point(p, bx, by);
      v += p.uneven * (fbm(X * 1.2f, Y * 1.2f, p.salt + 71, 2) - 0.5f);
      img[static_cast<size_t>(py * n + px)] = v;
    }
  }
  gaussian_blur(img, n, p.blur_sigma);

  // Exposure curve, detector noise, burnt-in side marker.
  Rng noise(options.seed ^ 0xA5A5A5A5A5A5A5A5ull, index, pneumonia);
  nn::data::Image out{n, n, 1, {}};
  out.pixels.resize(img.size());
  for (int64_t py = 0; py < n; ++py)
    for (int64_t px = 0; px < n; ++px) {
      const size_t i = static_cast<size_t>(py * n + px);
      float v = clamp01((img[i] - 0.04f) * p.contrast * 1.08f + p.brightness);
      v = std::pow(v, p.gamma);
      v += p.noise_std * noise.normal();
      if (p.marker != 0) {
        const float X = (static_cast<float>(px) + 0.5f) / static_cast<float>(n) * 2.0f - 1.0f;
        const float Y = (static_cast<float>(py) + 0.5f) / static_cast<float>(n) * 2.0f - 1.0f;
        const float cell = 0.022f;
        const int cx = static_cast<int>(std::floor((X - p.marker_x) / cell));
        const int cy = static_cast<int>(std::floor((Y - p.marker_y) / cell));
        if (cx >= 0 && cx < 5 && cy >= 0 && cy < 7 && (p.marker == 1 ? kLetterL : kLetterR)[cy][cx] == '1') v = 0.93f;
      }
      out.pixels[i] = clamp01(v);
    }
  return out;
}

int64_t write_synthetic_dataset(const std::string& root, int64_t normal, int64_t pneumonia,
                                const SyntheticXrayOptions& options, bool overwrite) {
  NN_CHECK(normal >= 0 && pneumonia >= 0, "write_synthetic_dataset: negative image count (normal ", normal,
           ", pneumonia ", pneumonia, ")");
  NN_CHECK(!root.empty(), "write_synthetic_dataset: empty output folder name");
  NN_CHECK(options.size >= 16 && options.size <= 4096, "write_synthetic_dataset: size must be in 16..4096, got ",
           options.size);
  const fs::path base(root);
  std::error_code ec;
  if (fs::exists(base, ec)) {
    NN_CHECK(fs::is_directory(base, ec), "write_synthetic_dataset: '", root, "' exists and is not a folder");
    const bool empty = fs::is_empty(base, ec);
    NN_CHECK(!ec, "write_synthetic_dataset: cannot read '", root, "': ", ec.message());
    NN_CHECK(empty || overwrite, "write_synthetic_dataset: '", root,
             "' is not empty; refusing to overwrite it (pass overwrite / --overwrite)");
  }
  const char* classes[2] = {"NORMAL", "PNEUMONIA"};
  const char* prefixes[2] = {"normal_", "pneumonia_"};
  for (int c = 0; c < 2; ++c) {
    const fs::path dir = base / classes[c];
    fs::create_directories(dir, ec);
    NN_CHECK(!ec, "write_synthetic_dataset: cannot create '", dir.string(), "': ", ec.message());
    if (overwrite) {  // remove our own earlier images (only names of our pattern)
      std::vector<fs::path> old;
      for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
        if (it->is_regular_file() && is_our_file(it->path(), prefixes[c])) old.push_back(it->path());
      NN_CHECK(!ec, "write_synthetic_dataset: cannot list '", dir.string(), "': ", ec.message());
      for (const fs::path& f : old) {
        fs::remove(f, ec);
        NN_CHECK(!ec, "write_synthetic_dataset: cannot remove '", f.string(), "': ", ec.message());
      }
    }
  }

  const int64_t total = normal + pneumonia;
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    for (int64_t k = next++; k < total; k = next++) {
      try {
        const bool pn = k >= normal;
        const int64_t i = pn ? k - normal : k;
        char name[64];
        std::snprintf(name, sizeof name, "%s%04lld.png", prefixes[pn ? 1 : 0], static_cast<long long>(i));
        nn::data::save_png((base / classes[pn ? 1 : 0] / name).string(),
                           synthetic_xray(pn, static_cast<uint64_t>(i), options));
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next = total;
      }
    }
  };
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(nn::get_num_threads(), total));
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return total;
}

}  // namespace pneumonia
