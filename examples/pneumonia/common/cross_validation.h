// The evaluation protocol of docs/evaluation_protocol.md as pneumonia-train runs it (--folds K):
// K models, each trained on K - 1 patient-grouped folds (trainer.h), each scoring its held-out fold
// clean and under the acquisition shifts below; from the pooled out-of-fold predictions a
// temperature (calibration) and the decision threshold; the K models saved as one ensemble
// (RUN/model.safetensors), the protocol's table in RUN/protocol.json and RUN/summary.json, the
// pooled ROC curve, the reliability diagram and the mean training curves as PNGs. Each fold trains
// in RUN/fold-<k>/ (its own checkpoint, metrics.jsonl and model), so --resume continues the fold
// that was interrupted and skips the finished ones.
#pragma once

#include <nlohmann/json.hpp>
#include <nn/data/image.h>

#include <array>
#include <functional>
#include <string>
#include <vector>

#include "trainer.h"

namespace pneumonia {

// One condition under which the held-out X-rays are scored: a deterministic change of the decoded
// grayscale image (before the model's own resize); `label` only for counterfactual conditions.
struct AcquisitionShift {
  std::string name;         // "clean", "gamma-0.6", ...
  std::string description;  // what it imitates
  std::function<nn::data::Image(const nn::data::Image& gray, int64_t label)> apply;
};

// The mean gray-level distribution (nn::data::intensity_cdf) of each class's images.
struct ClassIntensities {
  std::array<std::vector<double>, 2> cdf;
};
ClassIntensities class_intensities(const XrayData& data);

// The protocol's conditions, "clean" first (docs/evaluation_protocol.md); with class intensities,
// the counterfactual "processing-swap" last.
std::vector<AcquisitionShift> acquisition_shifts(const ClassIntensities& classes = {});

// Runs the protocol and writes the ensemble (config.folds >= 2). Returns the summary.
nlohmann::json cross_validate(const TrainConfig& config);

// Scores the fold models of a finished cross-validated run (RUN/fold-<k>/model.safetensors, the
// settings from RUN/summary.json; the data from `data` when given, else the run's) under the
// current protocol, and writes protocol.json, oof.safetensors, the charts and summary.json into
// `out` (created). For comparing runs made before the protocol changed. Returns the protocol.
// With `tta`, every held-out image is scored as the mean logit of itself and test_time_views().
nlohmann::json rescore(const std::string& run, const std::string& out, const std::string& data = "", int threads = 0,
                       bool tta = false);

// Test-time augmentation's four resamplings of an image (zoom 0.9 and 1.1, aspect 1.15 and 1/1.15),
// scored with the image itself by pneumonia-protocol --tta.
std::vector<nn::data::AugmentParams> test_time_views();

}  // namespace pneumonia
