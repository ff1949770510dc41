// Training-time image augmentation, Keras ImageDataGenerator-like but seeded and deterministic:
// every random number comes from an explicit nn::Generator, so the same generator state gives the
// same output on any thread.
//
// One augmentation = one random affine resampling (zoom, shear, rotation, translation about the
// image centre; bilinear; points outside the image take the nearest edge pixel, Keras'
// fill_mode="nearest"), an optional horizontal flip, then brightness and contrast, clamped to
// [0, 1]. The image keeps its size and channel count.
//
// The geometry is an inverse map, as in Keras (scipy.ndimage.affine_transform): the output pixel at
// column x, row y, taken relative to the centre c = ((W - 1) / 2, (H - 1) / 2), samples the input at
//
//   src = c + R(theta) * (Sh(s) * Z(f) * (p - c) + t),     p = (x, y)
//   Z(f) = [[f a, 0], [0, f]]                     f in [1 - zoom, 1 + zoom]  (f < 1 enlarges);
//                                                 a log-uniform in [1/(1 + aspect), 1 + aspect]
//                                                 (a > 1 squeezes the content horizontally)
//   Sh(s) = [[cos s, 0], [-sin s, 1]]             s in [-shear, shear] radians (Keras' matrix,
//                                                 written in (x, y) instead of (row, col))
//   R(theta) = [[cos, sin], [-sin, cos]]          theta in [-rotation_degrees, rotation_degrees]
//                                                 (Keras' matrix; with y pointing down, a
//                                                 positive theta turns the content clockwise)
//   t = (tx * W, ty * H)                          tx, ty in [-translate, translate]
//
// With the flip, the output is mirrored left-right after the resampling. Brightness adds
// d in [-brightness, brightness]; contrast then maps v -> m + k (v - m), k in [1 - contrast,
// 1 + contrast], m the mean of the colour samples of the (resampled, brightened) image. Alpha
// channels (2nd of 2, 4th of 4) are resampled but not brightened or contrasted.
#pragma once

#include "nn/data/image.h"
#include "nn/generator.h"

namespace nn::data {

struct AugmentOptions {
  double zoom = 0.2;             // sampling scale f uniform in [1 - zoom, 1 + zoom]; 0 <= zoom < 1
  double shear = 0.2;            // shear angle in radians, uniform in [-shear, shear]; < pi/2
  double rotation_degrees = 10;  // rotation in degrees, uniform in [-r, r]
  double translate = 0.05;       // fraction of width / height, uniform in [-t, t]
  bool horizontal_flip = false;  // probability 1/2 when on; off by default (it would break left/right anatomy)
  double brightness = 0.1;       // adds d uniform in [-b, b] (pixel values are in [0, 1])
  double contrast = 0.1;         // scales around the image mean by k uniform in [1 - c, 1 + c]; c <= 1
  double aspect = 0.0;           // horizontal scale a log-uniform in [1/(1 + aspect), 1 + aspect]
};

// True when every option is zero / false: augment() then returns its input unchanged.
bool is_identity(const AugmentOptions& options);

// One draw of the random parameters (what augment() applies). Drawing consumes exactly three
// Philox blocks of `gen` (uniform numbers in a fixed order: zoom, shear, rotation, tx, ty, flip,
// brightness, contrast, aspect), whatever the options, so streams stay aligned across option
// changes.
struct AugmentParams {
  double zoom = 1.0;          // f
  double shear = 0.0;         // radians
  double rotation = 0.0;      // radians
  double translate_x = 0.0;   // fraction of the width
  double translate_y = 0.0;   // fraction of the height
  bool flip = false;
  double brightness = 0.0;    // added
  double contrast = 1.0;      // factor
  double aspect = 1.0;        // a: the horizontal sampling scale relative to the vertical
};
AugmentParams draw_augment_params(const AugmentOptions& options, Generator& gen);

// Applies fixed parameters (deterministic, no randomness); used by augment().
Image apply_augment(const Image& image, const AugmentParams& params);

// draw_augment_params + apply_augment; an identity `options` returns a copy of `image` unchanged
// (not clamped, no generator numbers consumed).
Image augment(const Image& image, const AugmentOptions& options, Generator& gen);

}  // namespace nn::data
