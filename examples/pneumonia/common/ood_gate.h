// The out-of-distribution gate: what pneumonia-predict, --eval and pneumonia-serve check before
// they diagnose an image, so that a photo, a document, another kind of medical image or a blank
// image is refused ("REJECTED" with a reason) instead of being called NORMAL or PNEUMONIA.
//
// Two stages (docs/ood_gate.md):
//   1. Input checks on the decoded image, before any network runs: colour (a chest X-ray is gray),
//      dynamic range and contrast (a blank or near-constant image), aspect ratio (a strip or a
//      panorama). The range and contrast limits come from the training images.
//   2. A feature-space detector per member of the model: the Mahalanobis distance (nn/ood.h) of
//      the global-average-pooled output of the member's `features` to the training classes. Each
//      member's limit is a quantile (default 0.995) of the distances of the X-rays it did NOT train
//      on (its validation or held-out fold), so about 0.5% of real X-rays exceed it. The model's
//      score is the mean over the members of distance / limit; above 1 the image is refused.
//
// pneumonia-train fits the gate and stores it in the model file (tensors "ood.member<k>.means",
// "ood.member<k>.precision"; metadata "ood_gate": the limits, the quantile, the layer).
#pragma once

#include <nlohmann/json.hpp>
#include <nn/data/image.h>
#include <nn/ood.h>
#include <nn/tensor.h>

#include <map>
#include <string>
#include <vector>

namespace pneumonia {

// The cheap statistics of a decoded image (any channel count, values in [0, 1]).
struct InputStats {
  double colour = 0;         // mean over the pixels of max(R, G, B) - min(R, G, B); 0 for gray
  double dynamic_range = 0;  // 99th - 1st percentile of the gray levels
  double contrast = 0;       // standard deviation of the gray levels
  double aspect = 1;         // width / height
};
InputStats input_stats(const nn::data::Image& decoded);

struct InputLimits {
  double max_colour = 0.08;  // a gray X-ray saved as colour JPEG has < 0.01
  double min_dynamic_range = 0.15, min_contrast = 0.04;  // from the training images (fit_input_limits)
  double min_aspect = 0.4, max_aspect = 2.5;  // wider than any detector's format (fixed: the
                                              // training images may have been squashed square)
  nlohmann::json to_json() const;
  static InputLimits from_json(const nlohmann::json& j);  // throws nn::Error on a bad field
};
// Limits from the training images (gray, any size): half the 0.1% quantile of their dynamic ranges
// and contrasts; the colour and aspect limits stay the defaults.
InputLimits fit_input_limits(const std::vector<const nn::data::Image*>& images);
// Why the image fails the checks ("" when it passes), in words for a user.
std::string check_input(const InputStats& stats, const InputLimits& limits);

// One member's detector and its limit on the squared distance.
struct FeatureGate {
  nn::ood::MahalanobisDetector detector;
  double limit = 0;
};

struct OodGate {
  InputLimits input;
  std::vector<FeatureGate> members;  // empty: no feature stage (a model written before the gate)
  double quantile = 0.995;           // of the held-out distances, the members' limits
  std::string layer = "features";    // the layer whose pooled output the detectors see

  bool has_features() const { return !members.empty(); }
  // The mean over the members of distance / limit, for each image; distances[k][i] is member k's
  // squared distance of image i.
  std::vector<double> scores(const std::vector<std::vector<double>>& distances) const;
  static bool refuses(double score) { return !(score <= 1.0); }  // NaN refuses too

  // The model file's part: metadata "ood_gate" and the tensors "ood.*".
  void add_to(std::map<std::string, std::string>& metadata, std::vector<std::pair<std::string, nn::Tensor>>& tensors) const;
  // From a model file's metadata and tensors (which must hold `members` detectors); a file
  // without "ood_gate" gives the default input limits and no feature stage. Throws nn::Error.
  static OodGate from_file(const std::map<std::string, std::string>& metadata,
                           const std::vector<std::pair<std::string, nn::Tensor>>& tensors, int members);
};

// The reason text of a feature-stage refusal.
std::string feature_refusal_reason(double score);

// The pooled features (N, C) of a layer output (N, C, H, W): the mean over H and W.
nn::Tensor pooled_features(const nn::Tensor& activations);

}  // namespace pneumonia
