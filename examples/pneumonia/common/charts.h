// Charts for the pneumonia programs, drawn with PLplot's pngcairo device: the training curves
// (loss and accuracy per epoch, as in the Keras tutorial), the ROC curve and the reliability
// diagram.
//
// Both functions write the PNG atomically (a temporary file in the same directory, then a
// rename), so a failure never leaves a half-written chart, and throw nn::Error when the chart
// cannot be written (missing or unwritable directory, pngcairo device not installed, ...).
// NaN values are skipped (lines break around them). PLplot keeps global state, so calls are
// serialised by a mutex; they are safe to make from several threads.
#pragma once

#include <string>
#include <vector>

namespace pneumonia {

// One entry per epoch: index = epoch - 1. Series may be shorter than others or empty (an empty
// series, or one without a finite value, is left out of the legend); at least one must have an
// entry.
struct EpochCurves {
  std::vector<double> train_loss, val_loss, train_accuracy, val_accuracy;
};

// Two panels side by side (loss; accuracy), training vs validation as lines with markers, x =
// epoch with integer ticks, axis labels, panel titles and legends; `title` (optional) above both.
// PNG 1200x500.
void plot_training_curves(const std::string& png_path, const EpochCurves& curves,
                          const std::string& title = "");

// The ROC curve (fpr, tpr: equal sizes, e.g. nn::metrics::roc_curve) with the chance diagonal and
// the AUC in the title and the legend (auc NaN: "n/a"); the operating point (op_fpr, op_tpr) is
// marked when both are in [0, 1] (a negative value means "no operating point"). PNG 600x600.
void plot_roc(const std::string& png_path, const std::vector<double>& fpr,
              const std::vector<double>& tpr, double auc, double op_fpr = -1, double op_tpr = -1);

// The reliability diagram of probabilities before and after calibration (nn::metrics::reliability
// bins: mean predicted probability against the fraction of positives; empty bins (NaN) are
// skipped), with the diagonal and each curve's expected calibration error. PNG 600x600.
void plot_reliability(const std::string& png_path, const std::vector<double>& confidence_before,
                      const std::vector<double>& fraction_before, double ece_before,
                      const std::vector<double>& confidence_after, const std::vector<double>& fraction_after,
                      double ece_after);

}  // namespace pneumonia
