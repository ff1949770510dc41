// Synthetic paediatric chest X-rays, for demos and tests that must run without the real data
// (Kermany et al.). The images are SYNTHETIC: drawn from a hand-written anatomical model, they
// only look like AP chest radiographs and say nothing about real patients or real performance.
//
// Each image is rendered procedurally in normalised body coordinates, so any size gives the
// same picture: a soft-tissue torso (shoulders, neck, brighter centre, falloff at the edges), two
// dark lung fields (the image-right one, the patient's left, smaller because of the heart),
// the mediastinum with trachea, spine and heart shadow, hila and vascular markings, clavicles,
// curved posterior and fainter anterior ribs, the diaphragm domes (with a gastric bubble at
// times), sometimes a side marker ("L" or "R") in a corner. Every image varies: body position,
// size, width and rotation, inspiration depth, heart size, exposure, contrast, gamma,
// unsharpness (blur) and detector noise, and a slow uneven-exposure field.
//
// pneumonia = true adds opacities inside the lungs: lobar consolidation (one lobe-sized region,
// a second one in about 45%, irregular blurry edges, air bronchograms in about half of the strong
// ones), patchy/diffuse bronchopneumonia (multifocal, perihilar, mostly bilateral, over an
// interstitial haze, with thickened bronchovascular markings), or both, and a small pleural
// effusion now and then. The strength is mostly moderate to dense, mild (on a par with the
// exposure variation of normal films) in a minority: strong enough that the demo's small VGG
// learns it from scratch in minutes, with some overlap between the classes left.
//
// Deterministic: the image depends only on (options.seed, index, pneumonia, options.size); the
// random numbers come from Philox4x32 (nn/generator.h) and integer hashing, with no standard
// library distribution, so every platform draws the same image.
#pragma once

#include <cstdint>
#include <string>

#include <nn/data/image.h>

namespace pneumonia {

struct SyntheticXrayOptions {
  int64_t size = 128;  // side of the square image, in pixels (16 to 4096)
  uint64_t seed = 0;
};

// One grayscale (1-channel) size x size image with values in [0, 1]. Errors (nn::Error) for a
// size outside 16..4096.
nn::data::Image synthetic_xray(bool pneumonia, uint64_t index, const SyntheticXrayOptions& options);

// Writes root/NORMAL/normal_NNNN.png (synthetic_xray(false, i), i = 0 .. normal - 1) and
// root/PNEUMONIA/pneumonia_NNNN.png (synthetic_xray(true, i)), NNNN = i with at least 4 digits,
// and returns the number of files written. Creates the folders. A root that exists and is not an
// empty folder is refused (nn::Error) unless overwrite is true; then the files of this naming
// pattern already in NORMAL/ and PNEUMONIA/ are removed first (so a smaller set does not leave
// stale images behind), and nothing else is touched. Images are rendered on
// nn::get_num_threads() threads.
int64_t write_synthetic_dataset(const std::string& root, int64_t normal, int64_t pneumonia,
                                const SyntheticXrayOptions& options, bool overwrite = false);

}  // namespace pneumonia
