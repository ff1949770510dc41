// The model card of model_card.h.
#include "model_card.h"

#include <nn/error.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

namespace pneumonia {

namespace {

std::string fixed(double v, int digits = 3) {
  if (!std::isfinite(v)) return "n/a";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string with_interval(double v, const nn::metrics::Interval& ci) {
  if (!std::isfinite(v)) return "n/a";
  if (!std::isfinite(ci.low) || !std::isfinite(ci.high)) return fixed(v);
  return fixed(v) + " (" + fixed(ci.low) + "-" + fixed(ci.high) + ")";
}

std::string percent(int64_t k, int64_t n) {
  if (n <= 0) return "n/a";
  return fixed(100.0 * static_cast<double>(k) / static_cast<double>(n), 1) + "%";
}

std::string meta(const PneumoniaModel& model, const std::string& key, const std::string& otherwise = "not recorded") {
  auto it = model.metadata.find(key);
  return it == model.metadata.end() || it->second.empty() ? otherwise : it->second;
}

// A metadata number (JSON text) with 4 decimals, or the text as it is.
std::string number_of(const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  return end != text.c_str() && *end == '\0' ? fixed(v, 4) : text;
}

}  // namespace

nn::metrics::Interval wilson_interval(int64_t k, int64_t n) {
  if (n <= 0) return {NAN, NAN};
  NN_CHECK(k >= 0 && k <= n, "wilson_interval: ", k, " of ", n);
  const double z = 1.959963984540054, z2 = z * z;
  const double nn_ = static_cast<double>(n), p = static_cast<double>(k) / nn_;
  const double centre = (p + z2 / (2 * nn_)) / (1 + z2 / nn_);
  const double half = z * std::sqrt(p * (1 - p) / nn_ + z2 / (4 * nn_ * nn_)) / (1 + z2 / nn_);
  return {std::max(0.0, centre - half), std::min(1.0, centre + half)};
}

std::string model_card_markdown(const std::string& model_path, const PneumoniaModel& model,
                                const CardEvaluation& e) {
  const ModelSpec& s = model.spec;
  const nn::metrics::Confusion& c = e.metrics.confusion;
  const std::string name = std::filesystem::path(model_path).filename().string();
  std::ostringstream o;
  o << "# Model card: " << name << "\n\n"
    << "Written by `pneumonia-predict --eval " << e.folder << " --card`. Every number below was computed "
    << "from the model file and this evaluation.\n\n";

  o << "## Model\n\n"
    << "- Network: VGG" << s.depth << (s.batch_norm ? " with batch norm" : "") << ", width " << s.width << ", "
    << s.input_size << " x " << s.input_size << " grayscale input (replicated to 3 channels, " << s.preprocessing
    << " preprocessing), head `" << s.head << "`, trained in `" << s.mode << "` mode.\n"
    << "- Members: " << s.members
    << (s.members > 1 ? " (a cross-validated ensemble: the fold models' logits are averaged)" : "") << ".\n"
    << "- Output: the probability of " << s.classes[1] << " = sigmoid(logit / " << fixed(s.temperature, 3)
    << (s.calibration_bias == 0 ? ") (temperature scaling); "
                                : (s.calibration_bias > 0 ? " + " : " - ") + fixed(std::abs(s.calibration_bias), 3) +
                                      ") (Platt scaling); ")
    << s.classes[1] << " when it is at least the threshold " << fixed(e.threshold, 3)
    << (std::abs(e.threshold - s.threshold) > 1e-12 ? " (given on the command line; the model's own is " + fixed(s.threshold, 3) + ")"
                                                    : " (chosen in training by the rule `" + meta(model, "threshold_rule") + "`)")
    << ".\n"
    << "- Trained on: `" << meta(model, "trained_on") << "`.";
  if (model.metadata.count("protocol_clean_auc"))
    o << " Cross-validated by patient in training (docs/evaluation_protocol.md): out-of-fold AUC "
      << number_of(meta(model, "protocol_clean_auc")) << " clean, " << number_of(meta(model, "protocol_mean_auc"))
      << " averaged over the acquisition shifts (images of the training folder: it flatters).";
  else if (model.metadata.count("val_auc"))
    o << " Validation AUC in training: " << number_of(meta(model, "val_auc"))
      << " (a split of the training folder: it flatters).";
  o << "\n\n";

  const int64_t total = e.images[0] + e.images[1];
  const int64_t refused = e.refused[0] + e.refused[1];
  o << "## Evaluation data\n\n"
    << "- Folder: `" << e.folder << "`: " << total << " images answered (" << e.images[0] << " " << s.classes[0]
    << ", " << e.images[1] << " " << s.classes[1] << ")";
  if (e.unreadable > 0) o << "; " << e.unreadable << " unreadable files left out";
  o << ".\n"
    << "- Refused by the out-of-distribution gate: " << refused << " (" << percent(refused, total) << "): "
    << e.refused[0] << " " << s.classes[0] << " (" << percent(e.refused[0], e.images[0]) << "), " << e.refused[1]
    << " " << s.classes[1] << " (" << percent(e.refused[1], e.images[1]) << ")"
    << (e.gate ? "" : " (the gate was switched off: --no-gate)") << ". The metrics below are of the "
    << e.metrics.n << " images it accepted.\n\n";

  o << "## Metrics\n\n"
    << "At the threshold " << fixed(e.threshold, 3) << "; 95% intervals: Wilson score for the proportions, a "
    << e.bootstrap << "-round percentile bootstrap for the AUC.\n\n"
    << "| Metric | Value (95% interval) | Counts |\n|---|---|---|\n"
    << "| Sensitivity (recall of " << s.classes[1] << ") | "
    << with_interval(e.metrics.sensitivity, wilson_interval(c.tp, c.tp + c.fn)) << " | " << c.tp << " / " << c.tp + c.fn << " |\n"
    << "| Specificity | " << with_interval(e.metrics.specificity, wilson_interval(c.tn, c.tn + c.fp)) << " | " << c.tn
    << " / " << c.tn + c.fp << " |\n"
    << "| PPV (precision) | " << with_interval(e.metrics.ppv, wilson_interval(c.tp, c.tp + c.fp)) << " | " << c.tp
    << " / " << c.tp + c.fp << " |\n"
    << "| NPV | " << with_interval(e.metrics.npv, wilson_interval(c.tn, c.tn + c.fn)) << " | " << c.tn << " / "
    << c.tn + c.fn << " |\n"
    << "| Accuracy | " << with_interval(e.metrics.accuracy, wilson_interval(c.tp + c.tn, e.metrics.n)) << " | "
    << c.tp + c.tn << " / " << e.metrics.n << " |\n"
    << "| F1 | " << fixed(e.metrics.f1) << " | |\n"
    << "| ROC AUC | " << with_interval(e.metrics.auc, e.auc_interval) << " | |\n\n"
    << "Confusion matrix (rows: true class, columns: predicted):\n\n"
    << "| | " << s.classes[0] << " | " << s.classes[1] << " |\n|---|---|---|\n"
    << "| " << s.classes[0] << " | " << c.tn << " | " << c.fp << " |\n"
    << "| " << s.classes[1] << " | " << c.fn << " | " << c.tp << " |\n\n"
    << "The prevalence here is " << percent(c.tp + c.fn, e.metrics.n) << "; PPV and NPV change with it.\n\n";

  o << "## Calibration\n\n";
  if (e.probabilities.empty()) {
    o << "No accepted images.\n\n";
  } else {
    const nn::metrics::Reliability r = nn::metrics::reliability(e.probabilities, e.labels, 10);
    o << "Expected calibration error (10 equal-width bins): " << fixed(r.ece, 4)
      << ". Per bin, the mean predicted probability of " << s.classes[1] << " and the fraction that were:\n\n"
      << "| Bin | Images | Mean probability | Fraction " << s.classes[1] << " |\n|---|---|---|---|\n";
    for (size_t b = 0; b < r.count.size(); ++b) {
      if (r.count[b] == 0) continue;
      o << "| " << fixed(static_cast<double>(b) / 10, 1) << "-" << fixed(static_cast<double>(b + 1) / 10, 1) << " | "
        << r.count[b] << " | " << fixed(r.confidence[b]) << " | " << fixed(r.fraction[b]) << " |\n";
    }
    o << "\n";
  }

  o << "## Out-of-distribution gate\n\n"
    << "Before any diagnosis, an image must pass input checks (colour at most " << fixed(model.gate.input.max_colour, 3)
    << ", gray-level range at least " << fixed(model.gate.input.min_dynamic_range, 3) << ", contrast at least "
    << fixed(model.gate.input.min_contrast, 3) << ", aspect ratio " << fixed(model.gate.input.min_aspect, 2) << "-"
    << fixed(model.gate.input.max_aspect, 2) << ")";
  if (model.gate.has_features())
    o << " and a feature check: the Mahalanobis distance of the pooled `" << model.gate.layer
      << "` features to the training classes, refused above each member's " << fixed(model.gate.quantile, 3)
      << " quantile of its held-out X-rays' distances";
  else
    o << " (this model file has no feature check: it was written before the gate existed)";
  o << ". A refused image gets no probability and no heatmap. How the gate was measured on images "
       "that are not chest X-rays: docs/ood_gate.md.\n\n";

  o << "## Intended use\n\n"
    << "A second reader for frontal (PA/AP) chest X-rays of the kind it was trained on (for the "
       "data pneumonia-train was built for, Kermany et al. 2018: children aged 1-5 at one hospital in "
       "Guangzhou), flagging images for a clinician's attention. It does not replace a radiologist's reading, it is not a "
       "certified medical device, and its output must not decide a treatment by itself.\n\n";

  o << "## Limitations\n\n"
    << "- The population of its training data only (for Kermany et al.'s: one hospital's young "
       "children): adults, other hospitals, other X-ray machines and other "
       "processing are outside what it was trained on; its numbers there are unknown until measured "
       "on such data. The evaluation above holds for `" << e.folder << "` only.\n"
    << "- The training images were squashed to a square from originals of different shapes; the "
       "protocol's aspect-ratio shifts (docs/recipes.md) show how much an image's proportions move "
       "the output.\n"
    << "- Two classes only: " << s.classes[0] << " and " << s.classes[1] << " (bacterial and viral pooled). "
       "Other findings (effusion, tuberculosis, tubes, fractures) are not recognised and may be "
       "called either.\n"
    << "- The gate refuses what looks unlike its training X-rays; it cannot promise to refuse every "
       "image that is not a chest X-ray, and it refuses some real ones ("
    << percent(refused, total) << " here).\n"
    << "- Grad-CAM heatmaps show where the network's evidence lies, not where the disease is.\n";
  return o.str();
}

}  // namespace pneumonia
