// A model card (Mitchell et al., "Model Cards for Model Reporting", 2019) for a pneumonia model,
// written by `pneumonia-predict --eval DIR --card OUT.md`: what the model is and was trained on,
// its metrics on DIR with 95% intervals, its calibration there, how often its out-of-distribution
// gate refused DIR's images, its intended use and its limitations. Markdown; every number in it is
// computed from the model file and the evaluation, none is typed in.
#pragma once

#include <nn/metrics.h>

#include <cstdint>
#include <string>
#include <vector>

#include "pneumonia_model.h"

namespace pneumonia {

struct CardEvaluation {
  std::string folder;                  // the evaluated NORMAL/ + PNEUMONIA/ folder
  int64_t images[2] = {0, 0};          // answered images per true class (accepted + refused)
  int64_t refused[2] = {0, 0};         // refused by the gate, per true class
  bool gate = true;                    // false with --no-gate
  double threshold = 0.5;              // the decision threshold used
  std::vector<double> probabilities;   // of the accepted images
  std::vector<int64_t> labels;         // their true classes
  nn::metrics::BinaryMetrics metrics;  // at the threshold
  nn::metrics::Interval auc_interval{0, 0};  // bootstrap 95%
  int bootstrap = 0;                   // its rounds
  int64_t unreadable = 0;              // files that could not be decoded
};

// The Wilson score 95% interval of a proportion k / n (n > 0; NaNs when n is 0).
nn::metrics::Interval wilson_interval(int64_t k, int64_t n);

// The card as Markdown. `model_path` names the file (its base name is printed).
std::string model_card_markdown(const std::string& model_path, const PneumoniaModel& model,
                                const CardEvaluation& evaluation);

}  // namespace pneumonia
