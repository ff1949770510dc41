// Binary classification metrics for clinical evaluation: the confusion matrix at a threshold,
// sensitivity / specificity / PPV / NPV / F1, ROC AUC (Mann-Whitney, ties counted 1/2), the ROC
// curve, a percentile-bootstrap confidence interval of the AUC and threshold selection.
//
// The positive class is label 1 (e.g. a disease present). `scores` are probabilities (or any score that grows
// with the belief in the positive class); a case is predicted positive when score >= threshold.
// Inputs are validated (equal sizes, labels 0/1, finite scores); violations throw nn::Error.
// A quantity that is 0/0 (e.g. sensitivity without positives) is NaN, never an error.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nn::metrics {

struct Confusion {
  int64_t tp = 0, fp = 0, tn = 0, fn = 0;
};

struct BinaryMetrics {
  int64_t n = 0;
  Confusion confusion;
  // NaN when undefined (0/0).
  double accuracy = 0, sensitivity = 0 /*recall, TPR*/, specificity = 0 /*TNR*/,
         ppv = 0 /*precision*/, npv = 0, f1 = 0;
  double auc = 0;  // ROC AUC of the scores; NaN when only one class is present
  double threshold = 0.5;
};

// Confusion matrix and metrics at `threshold` (positive when score >= threshold), plus the AUC.
// Empty inputs give n = 0 and NaN metrics.
BinaryMetrics binary_metrics(const std::vector<double>& scores, const std::vector<int64_t>& labels,
                             double threshold = 0.5);

// ROC AUC = P(score of a random positive > score of a random negative) + 1/2 P(equal), i.e. the
// Mann-Whitney U statistic / (P * N). O(n log n). NaN when a class is missing.
double roc_auc(const std::vector<double>& scores, const std::vector<int64_t>& labels);

// One point per distinct score, in decreasing threshold order, after a first point (0, 0) whose
// threshold is +infinity; the last point (the lowest score) is (1, 1). Like scikit-learn's
// roc_curve(drop_intermediate=False). fpr (tpr) is NaN everywhere when there are no negatives
// (positives). Empty inputs are an error.
struct RocCurve {
  std::vector<double> fpr, tpr, thresholds;
};
RocCurve roc_curve(const std::vector<double>& scores, const std::vector<int64_t>& labels);

struct Interval {
  double low, high;
};
// Percentile bootstrap of the AUC: `rounds` resamples of the (score, label) pairs with replacement
// (std::mt19937_64 seeded with `seed`, so the interval is a function of the inputs and the seed),
// resamples that contain a single class are skipped, and the interval is the [(1-level)/2,
// (1+level)/2] quantiles (linear interpolation, numpy's default) of the resampled AUCs.
// {NaN, NaN} when the data have a single class (or every resample had one).
Interval bootstrap_auc_interval(const std::vector<double>& scores, const std::vector<int64_t>& labels,
                                int rounds = 1000, uint64_t seed = 0, double level = 0.95);

// The operating threshold, always one of the scores (so "score >= threshold" reproduces the ROC
// point). With min_sensitivity == 0: the threshold maximising Youden's J = sensitivity +
// specificity - 1 (ties within 1e-12 -> the one closest to 0.5); needs both classes. With
// min_sensitivity in (0, 1]: the largest threshold whose sensitivity >= min_sensitivity; needs
// positives.
double choose_threshold(const std::vector<double>& scores, const std::vector<int64_t>& labels,
                        double min_sensitivity = 0.0);

// The threshold in the middle of the best cut between the classes. Among the cuts between
// consecutive distinct scores (at least one case predicted positive), those maximising balanced
// accuracy (sensitivity + specificity) / 2 - the same cuts as Youden's J - form runs of adjacent
// cuts; the threshold is the midpoint of the widest run's score interval (from the lowest score
// predicted positive to the highest predicted negative; ties between runs of equal width: the
// midpoint closest to 0.5), so a perfectly separable set gets the middle of the gap between the
// classes rather than its edge, and "score >= threshold" still reproduces the chosen ROC point.
// probabilities = true: scores must lie in [0, 1] and the midpoint is taken in logit space (logits
// clamped to [-40, 40], so 0 and 1 stay finite), i.e. the middle of the gap in the model's logits; false:
// in score space. When the best cut predicts every case positive, the lowest score. Needs both
// classes.
double balanced_threshold(const std::vector<double>& scores, const std::vector<int64_t>& labels,
                          bool probabilities = true);

// How a caller picks its operating threshold on validation scores.
struct ThresholdRule {
  enum Kind { youden, balanced, sensitivity };
  Kind kind = balanced;
  double min_sensitivity = 0.0;  // sensitivity only: in (0, 1]
};
// "youden", "balanced" or "sensitivity:X" with X in (0, 1] (e.g. "sensitivity:0.95"); throws
// nn::Error naming the accepted forms otherwise.
ThresholdRule parse_threshold_rule(const std::string& text);
// The inverse of parse_threshold_rule ("sensitivity:0.95").
std::string to_string(const ThresholdRule& rule);
// youden: choose_threshold(scores, labels); balanced: balanced_threshold(scores, labels,
// probabilities); sensitivity: choose_threshold(scores, labels, min_sensitivity).
double choose_threshold(const std::vector<double>& scores, const std::vector<int64_t>& labels,
                        const ThresholdRule& rule, bool probabilities = true);

// ---- calibration ----

// Temperature scaling (Guo et al. 2017): the T > 0 that minimises the mean binary cross-entropy of
// p = sigmoid(logit / T) against the labels, searched (golden section on log T) in [0.05, 20]; the
// ranking, hence the AUC, does not change. Needs both classes; logits must be finite.
double fit_temperature(const std::vector<double>& logits, const std::vector<int64_t>& labels);

// A logit's calibrated probability: sigmoid(logit / temperature + bias).
struct LogitCalibration {
  double temperature = 1.0, bias = 0.0;
  double probability(double logit) const;
};
// Platt scaling (Platt 1999): the temperature and bias that minimise the mean binary cross-entropy
// against Platt's targets ((P + 1) / (P + 2) for the P positives, 1 / (N + 2) for the N negatives,
// which keep separable data finite), by Newton's method with step halving; the temperature is
// kept in [0.05, 20] as fit_temperature's. The bias corrects what temperature scaling cannot: a
// shift of every logit, such as the one a class-weighted loss trains into a model (a positive
// weight w moves the logits by about log w). The ranking (AUC) does not change. Needs both
// classes; logits must be finite.
LogitCalibration fit_platt_scaling(const std::vector<double>& logits, const std::vector<int64_t>& labels);

// How well probabilities of the positive class match the frequency of positives: `bins` equal-width
// bins of p in [0, 1] (p = 1 in the last); per bin the mean p (confidence), the fraction of
// positives, and the count; the expected calibration error ECE = sum over bins of n_b / N *
// |fraction_b - confidence_b| (empty bins count 0, their confidence and fraction are NaN).
struct Reliability {
  std::vector<double> confidence, fraction;
  std::vector<int64_t> count;
  double ece = 0;
};
Reliability reliability(const std::vector<double>& probabilities, const std::vector<int64_t>& labels, int bins = 15);

// {"n","accuracy","sensitivity","specificity","ppv","npv","f1","auc","threshold",
//  "confusion":{"tp","fp","tn","fn"}} in that order, compact; NaN -> null.
std::string to_json(const BinaryMetrics& m);

}  // namespace nn::metrics
