// nn::metrics: confusion matrices and clinical metrics computed by hand, AUC against a brute-force
// pair count, the ROC curve against a brute-force threshold sweep, the bootstrap interval,
// threshold choice, NaN handling, JSON. MetricsGolden compares with scikit-learn when the system
// Python has it (skipped otherwise).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/error.h"
#include "nn/metrics.h"

namespace {

using nn::metrics::binary_metrics;
using nn::metrics::bootstrap_auc_interval;
using nn::metrics::choose_threshold;
using nn::metrics::roc_auc;
using nn::metrics::roc_curve;

// The definition, O(n^2): P(pos > neg) + 1/2 P(pos == neg), in long double.
double brute_force_auc(const std::vector<double>& s, const std::vector<int64_t>& y) {
  long double wins = 0;
  int64_t pairs = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (y[i] != 1) continue;
    for (size_t j = 0; j < s.size(); ++j) {
      if (y[j] != 0) continue;
      ++pairs;
      if (s[i] > s[j]) wins += 1;
      else if (s[i] == s[j]) wins += 0.5L;
    }
  }
  return pairs == 0 ? std::numeric_limits<double>::quiet_NaN() : static_cast<double>(wins / pairs);
}

// Scores with many ties (rounded to `decimals`), labels correlated with them.
void random_data(size_t n, uint64_t seed, int decimals, std::vector<double>& s, std::vector<int64_t>& y) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::bernoulli_distribution coin(0.4);
  s.clear();
  y.clear();
  double scale = std::pow(10.0, decimals);
  for (size_t i = 0; i < n; ++i) {
    int64_t label = coin(rng) ? 1 : 0;
    double logit = noise(rng) + (label ? 1.2 : 0.0);
    double p = 1.0 / (1.0 + std::exp(-logit));
    s.push_back(std::round(p * scale) / scale);
    y.push_back(label);
  }
}

const std::vector<double> kScores{0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1};
const std::vector<int64_t> kLabels{1, 1, 0, 1, 0, 1, 0, 0};

TEST(Metrics, HandComputedConfusionAndRates) {
  auto m = binary_metrics(kScores, kLabels);
  EXPECT_EQ(m.n, 8);
  EXPECT_EQ(m.confusion.tp, 3);
  EXPECT_EQ(m.confusion.fp, 1);
  EXPECT_EQ(m.confusion.tn, 3);
  EXPECT_EQ(m.confusion.fn, 1);
  EXPECT_DOUBLE_EQ(m.accuracy, 0.75);
  EXPECT_DOUBLE_EQ(m.sensitivity, 0.75);
  EXPECT_DOUBLE_EQ(m.specificity, 0.75);
  EXPECT_DOUBLE_EQ(m.ppv, 0.75);
  EXPECT_DOUBLE_EQ(m.npv, 0.75);
  EXPECT_DOUBLE_EQ(m.f1, 0.75);
  // Positives 0.9, 0.8, 0.6, 0.3 against negatives 0.7, 0.4, 0.2, 0.1: 4 + 4 + 3 + 2 = 13 of 16.
  EXPECT_DOUBLE_EQ(m.auc, 13.0 / 16.0);
  EXPECT_DOUBLE_EQ(m.threshold, 0.5);

  // A score equal to the threshold is positive: at 0.7, 0.7 (a negative) is a false positive.
  auto at = binary_metrics(kScores, kLabels, 0.7);
  EXPECT_EQ(at.confusion.tp, 2);
  EXPECT_EQ(at.confusion.fp, 1);
  EXPECT_EQ(at.confusion.tn, 3);
  EXPECT_EQ(at.confusion.fn, 2);
  EXPECT_DOUBLE_EQ(at.sensitivity, 0.5);
  EXPECT_DOUBLE_EQ(at.specificity, 0.75);
  EXPECT_DOUBLE_EQ(at.ppv, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(at.npv, 3.0 / 5.0);
  EXPECT_DOUBLE_EQ(at.f1, 4.0 / 7.0);  // 2 tp / (2 tp + fp + fn)
  EXPECT_DOUBLE_EQ(at.accuracy, 5.0 / 8.0);
  EXPECT_DOUBLE_EQ(at.auc, m.auc);  // the AUC does not depend on the threshold
}

TEST(Metrics, AucWithTies) {
  EXPECT_DOUBLE_EQ(roc_auc({0.5, 0.5, 0.5, 0.5}, {1, 0, 1, 0}), 0.5);
  EXPECT_DOUBLE_EQ(roc_auc({1, 1, 0}, {1, 0, 0}), 0.75);  // one tie (1/2) and one win
  EXPECT_DOUBLE_EQ(roc_auc({0.1, 0.9}, {1, 0}), 0.0);
  EXPECT_DOUBLE_EQ(roc_auc({0.1, 0.9}, {0, 1}), 1.0);
  // Any monotone transform of the scores gives the same AUC (logits vs probabilities).
  std::vector<double> logits;
  for (double p : kScores) logits.push_back(std::log(p / (1 - p)));
  EXPECT_DOUBLE_EQ(roc_auc(logits, kLabels), roc_auc(kScores, kLabels));
}

TEST(Metrics, AucMatchesBruteForcePairCountOnRandomDataWithTies) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    for (int decimals : {1, 2, 6}) {
      std::vector<double> s;
      std::vector<int64_t> y;
      random_data(600, seed, decimals, s, y);
      double expected = brute_force_auc(s, y);
      EXPECT_NEAR(roc_auc(s, y), expected, 1e-12) << "seed " << seed << " decimals " << decimals;
      EXPECT_NEAR(binary_metrics(s, y).auc, expected, 1e-12);
    }
  }
}

// A threshold sweep written from the definition: for each distinct score t (decreasing), the
// rates of "score >= t".
nn::metrics::RocCurve brute_force_roc(const std::vector<double>& s, const std::vector<int64_t>& y) {
  std::set<double, std::greater<double>> distinct(s.begin(), s.end());
  double pos = 0, neg = 0;
  for (int64_t l : y) (l ? pos : neg) += 1;
  nn::metrics::RocCurve r;
  r.fpr.push_back(0);
  r.tpr.push_back(0);
  r.thresholds.push_back(std::numeric_limits<double>::infinity());
  for (double t : distinct) {
    double tp = 0, fp = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] >= t) (y[i] ? tp : fp) += 1;
    }
    r.fpr.push_back(fp / neg);
    r.tpr.push_back(tp / pos);
    r.thresholds.push_back(t);
  }
  return r;
}

TEST(Metrics, RocCurveMatchesThresholdSweep) {
  std::vector<double> s;
  std::vector<int64_t> y;
  random_data(300, 11, 2, s, y);
  auto roc = roc_curve(s, y);
  auto ref = brute_force_roc(s, y);
  ASSERT_EQ(roc.fpr.size(), ref.fpr.size());
  ASSERT_EQ(roc.tpr.size(), roc.fpr.size());
  ASSERT_EQ(roc.thresholds.size(), roc.fpr.size());
  for (size_t i = 0; i < roc.fpr.size(); ++i) {
    EXPECT_DOUBLE_EQ(roc.fpr[i], ref.fpr[i]) << i;
    EXPECT_DOUBLE_EQ(roc.tpr[i], ref.tpr[i]) << i;
    EXPECT_EQ(roc.thresholds[i], ref.thresholds[i]) << i;
  }
}

TEST(Metrics, RocCurveEndpointsMonotonicityAndArea) {
  std::vector<double> s;
  std::vector<int64_t> y;
  random_data(400, 5, 2, s, y);
  auto roc = roc_curve(s, y);
  std::set<double> distinct(s.begin(), s.end());
  ASSERT_EQ(roc.fpr.size(), distinct.size() + 1);  // one point per distinct score, plus (0, 0)
  EXPECT_EQ(roc.fpr.front(), 0.0);
  EXPECT_EQ(roc.tpr.front(), 0.0);
  EXPECT_TRUE(std::isinf(roc.thresholds.front()));
  EXPECT_EQ(roc.fpr.back(), 1.0);
  EXPECT_EQ(roc.tpr.back(), 1.0);
  EXPECT_EQ(roc.thresholds.back(), *distinct.begin());
  double area = 0;
  for (size_t i = 1; i < roc.fpr.size(); ++i) {
    EXPECT_GE(roc.fpr[i], roc.fpr[i - 1]);
    EXPECT_GE(roc.tpr[i], roc.tpr[i - 1]);
    EXPECT_LT(roc.thresholds[i], roc.thresholds[i - 1]);
    area += (roc.fpr[i] - roc.fpr[i - 1]) * (roc.tpr[i] + roc.tpr[i - 1]) / 2;
  }
  // The trapezoidal area under the full curve is the Mann-Whitney AUC (ties give the diagonals).
  EXPECT_NEAR(area, roc_auc(s, y), 1e-12);

  // Hand example: thresholds inf, 0.9, ..., 0.1.
  auto small = roc_curve(kScores, kLabels);
  std::vector<double> fpr{0, 0, 0, 0.25, 0.25, 0.5, 0.5, 0.75, 1};
  std::vector<double> tpr{0, 0.25, 0.5, 0.5, 0.75, 0.75, 1, 1, 1};
  EXPECT_EQ(small.fpr, fpr);
  EXPECT_EQ(small.tpr, tpr);
}

TEST(Metrics, RocCurveWithOneClassIsNaNForTheMissingRate) {
  auto roc = roc_curve({0.2, 0.7}, {1, 1});
  ASSERT_EQ(roc.fpr.size(), 3u);
  for (double f : roc.fpr) EXPECT_TRUE(std::isnan(f));
  EXPECT_EQ(roc.tpr, (std::vector<double>{0, 0.5, 1}));
  EXPECT_THROW(roc_curve({}, {}), nn::Error);
}

TEST(Metrics, BootstrapIntervalContainsTheAucAndIsDeterministic) {
  std::vector<double> s;
  std::vector<int64_t> y;
  random_data(200, 21, 3, s, y);
  double auc = roc_auc(s, y);
  auto a = bootstrap_auc_interval(s, y, 500, 42);
  EXPECT_LT(a.low, auc);
  EXPECT_GT(a.high, auc);
  EXPECT_GT(a.low, 0.5);  // the scores are informative
  EXPECT_LT(a.high, 1.0);
  auto b = bootstrap_auc_interval(s, y, 500, 42);
  EXPECT_EQ(a.low, b.low);
  EXPECT_EQ(a.high, b.high);
  auto c = bootstrap_auc_interval(s, y, 500, 43);
  EXPECT_TRUE(c.low != a.low || c.high != a.high);
  // A lower level gives a nested, narrower interval from the same resamples.
  auto narrow = bootstrap_auc_interval(s, y, 500, 42, 0.5);
  EXPECT_GE(narrow.low, a.low);
  EXPECT_LE(narrow.high, a.high);
  EXPECT_LT(narrow.high - narrow.low, a.high - a.low);
}

TEST(Metrics, BootstrapIntervalNarrowsWithMoreSamples) {
  std::vector<double> s_small, s_large;
  std::vector<int64_t> y_small, y_large;
  random_data(100, 8, 3, s_small, y_small);
  random_data(3000, 8, 3, s_large, y_large);
  auto small = bootstrap_auc_interval(s_small, y_small, 400, 1);
  auto large = bootstrap_auc_interval(s_large, y_large, 400, 1);
  // The standard error shrinks like 1/sqrt(n): 30x the data, about 1/5.5 of the width.
  EXPECT_LT(large.high - large.low, 0.4 * (small.high - small.low));
  EXPECT_LT(large.low, roc_auc(s_large, y_large));
  EXPECT_GT(large.high, roc_auc(s_large, y_large));
}

TEST(Metrics, BootstrapEdgeCases) {
  auto one_class = bootstrap_auc_interval({0.1, 0.2, 0.3}, {0, 0, 0});
  EXPECT_TRUE(std::isnan(one_class.low) && std::isnan(one_class.high));
  auto empty = bootstrap_auc_interval({}, {});
  EXPECT_TRUE(std::isnan(empty.low) && std::isnan(empty.high));
  // Two cases, one per class: half the resamples have a single class and are skipped; the others
  // have AUC 1 (the positive scores higher).
  auto tiny = bootstrap_auc_interval({0.2, 0.8}, {0, 1}, 200, 3);
  EXPECT_EQ(tiny.low, 1.0);
  EXPECT_EQ(tiny.high, 1.0);
  EXPECT_THROW(bootstrap_auc_interval(kScores, kLabels, 0), nn::Error);
  EXPECT_THROW(bootstrap_auc_interval(kScores, kLabels, 100, 0, 1.0), nn::Error);
  EXPECT_THROW(bootstrap_auc_interval(kScores, kLabels, 100, 0, 0.0), nn::Error);
}

TEST(Metrics, ChooseThresholdYoudenAndMinimumSensitivity) {
  // Negatives 0.1 0.2 0.3 0.45, positives 0.38 0.6 0.7 0.8. Youden's J per threshold:
  // 0.8: .25, 0.7: .5, 0.6: .75, 0.45: .5, 0.38: .75, 0.3: .5, 0.2: .25, 0.1: 0.
  // The tie between 0.6 and 0.38 goes to 0.6, closer to 0.5.
  std::vector<double> s{0.1, 0.2, 0.3, 0.45, 0.38, 0.6, 0.7, 0.8};
  std::vector<int64_t> y{0, 0, 0, 0, 1, 1, 1, 1};
  double t = choose_threshold(s, y);
  EXPECT_EQ(t, 0.6);
  auto m = binary_metrics(s, y, t);
  EXPECT_DOUBLE_EQ(m.sensitivity, 0.75);
  EXPECT_DOUBLE_EQ(m.specificity, 1.0);
  // Largest threshold with sensitivity >= the minimum.
  EXPECT_EQ(choose_threshold(s, y, 1.0), 0.38);
  EXPECT_EQ(choose_threshold(s, y, 0.7), 0.6);
  EXPECT_EQ(choose_threshold(s, y, 0.5), 0.7);
  EXPECT_EQ(choose_threshold(s, y, 0.25), 0.8);
  EXPECT_EQ(choose_threshold(s, y, 0.2), 0.8);
  // A unique maximum wins regardless of its distance from 0.5.
  EXPECT_EQ(choose_threshold({0.91, 0.92, 0.95, 0.97}, {0, 0, 1, 1}), 0.95);
  // Needs both classes (Youden) or positives (minimum sensitivity); the minimum is in [0, 1].
  EXPECT_THROW(choose_threshold({0.1, 0.2}, {0, 0}), nn::Error);
  EXPECT_THROW(choose_threshold({0.1, 0.2}, {1, 1}), nn::Error);
  EXPECT_EQ(choose_threshold({0.1, 0.2}, {1, 1}, 0.9), 0.1);
  EXPECT_THROW(choose_threshold(s, y, 1.5), nn::Error);
  EXPECT_THROW(choose_threshold(s, y, -0.1), nn::Error);
}

// The midpoint, in logit space, of two probabilities: the probability whose odds are the
// geometric mean of their odds.
double logit_midpoint(double a, double b) {
  const double odds = std::sqrt(a / (1 - a) * (b / (1 - b)));
  return odds / (1 + odds);
}

TEST(Metrics, BalancedThresholdPutsASeparableGapsThresholdInItsMiddle) {
  using nn::metrics::balanced_threshold;
  // Separable, symmetric in logit space: gap (0.3, 0.7) -> 0.5. Youden takes the gap's edge, 0.7.
  std::vector<double> s{0.1, 0.2, 0.3, 0.7, 0.8, 0.9};
  std::vector<int64_t> y{0, 0, 0, 1, 1, 1};
  EXPECT_EQ(choose_threshold(s, y), 0.7);
  EXPECT_NEAR(balanced_threshold(s, y), 0.5, 1e-12);
  // Separable, lopsided (as a pos_weight < 1 model's probabilities): gap (0.02, 0.2). Odds
  // sqrt(0.02/0.98 * 0.2/0.8) = 1/14 -> 1/15 in logit space; 0.11 in score space.
  std::vector<double> low{0.6, 0.01, 0.2, 0.02};
  std::vector<int64_t> ly{1, 0, 1, 0};
  EXPECT_EQ(choose_threshold(low, ly), 0.2);
  EXPECT_NEAR(balanced_threshold(low, ly), 1.0 / 15.0, 1e-12);
  EXPECT_NEAR(balanced_threshold(low, ly, /*probabilities=*/false), 0.11, 1e-12);
  auto m = binary_metrics(low, ly, balanced_threshold(low, ly));
  EXPECT_EQ(m.sensitivity, 1.0);
  EXPECT_EQ(m.specificity, 1.0);
  // Scores that are not probabilities: midpoint in score space; as probabilities: refused.
  EXPECT_DOUBLE_EQ(balanced_threshold({-2, -1, 3, 5}, {0, 0, 1, 1}, false), 1.0);
  EXPECT_THROW(balanced_threshold({-2, -1, 3, 5}, {0, 0, 1, 1}), nn::Error);
  // Saturated probabilities (0 and 1 exactly) stay finite and separate the classes.
  double t = balanced_threshold({0.0, 0.0, 1.0, 1.0}, {0, 0, 1, 1});
  EXPECT_GT(t, 0.0);
  EXPECT_LE(t, 1.0);
  EXPECT_NEAR(t, 0.5, 1e-12);
  // An almost separable set: one positive just above the negatives keeps the best cut there (as
  // Youden's J does), but the threshold sits in the middle of that cut, not on the positive.
  std::vector<double> near{0.01, 0.03, 0.05, 0.083, 0.6, 0.8, 0.9, 0.95};
  std::vector<int64_t> ny{0, 0, 0, 1, 1, 1, 1, 1};
  EXPECT_EQ(choose_threshold(near, ny), 0.083);
  EXPECT_NEAR(balanced_threshold(near, ny), logit_midpoint(0.05, 0.083), 1e-12);
}

TEST(Metrics, BalancedThresholdTiesAndRuns) {
  using nn::metrics::balanced_threshold;
  // The Youden example: J = .75 at 0.6 (cut (0.45, 0.6]) and at 0.38 (cut (0.3, 0.38]); the
  // wider cut in logit space wins, and the threshold is its middle.
  std::vector<double> s{0.1, 0.2, 0.3, 0.45, 0.38, 0.6, 0.7, 0.8};
  std::vector<int64_t> y{0, 0, 0, 0, 1, 1, 1, 1};
  double t = balanced_threshold(s, y);
  EXPECT_NEAR(t, logit_midpoint(0.45, 0.6), 1e-12);
  EXPECT_NEAR(t, 0.525577, 1e-6);
  // Two equally good non-adjacent cuts: (0.4, 0.6] is wider in logits than (0.2, 0.35].
  EXPECT_NEAR(balanced_threshold({0.1, 0.2, 0.4, 0.35, 0.6, 0.7}, {0, 0, 0, 1, 1, 1}), 0.5, 1e-12);
  // Adjacent equally good cuts form one run: a tied score group (one positive and one negative at
  // 0.5) between 0.9 and 0.1 -> the middle of (0.1, 0.9], 0.5.
  EXPECT_NEAR(balanced_threshold({0.1, 0.5, 0.5, 0.9}, {0, 0, 1, 1}), 0.5, 1e-12);
  // Equally wide runs: the midpoint closest to 0.5 wins.
  // Cuts (0.1, 0.2] and (0.8, 0.9] are about as wide; each J = 0.5, the middle cut is worse.
  double wide = balanced_threshold({0.1, 0.2, 0.8, 0.9}, {0, 1, 0, 1});
  EXPECT_TRUE(std::abs(wide - logit_midpoint(0.1, 0.2)) < 1e-12 || std::abs(wide - logit_midpoint(0.8, 0.9)) < 1e-12)
      << wide;
  // Reversed scores: the best cut predicts everything positive -> the lowest score.
  EXPECT_EQ(balanced_threshold({0.9, 0.1}, {0, 1}), 0.1);
  // Needs both classes.
  EXPECT_THROW(balanced_threshold({0.1, 0.2}, {0, 0}), nn::Error);
  EXPECT_THROW(balanced_threshold({0.1, 0.2}, {1, 1}), nn::Error);
}

// On random scores with ties, the balanced threshold reaches the best Youden's J, like
// choose_threshold, and is never an edge it could move away from (it lies strictly inside its cut
// unless the cut is a single score).
TEST(Metrics, BalancedThresholdAttainsTheBestCutOnRandomData) {
  using nn::metrics::balanced_threshold;
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 2 + static_cast<int>(rng() % 60);
    std::vector<double> s(static_cast<size_t>(n));
    std::vector<int64_t> y(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      y[static_cast<size_t>(i)] = i < 1 ? 0 : i < 2 ? 1 : static_cast<int64_t>(rng() % 2);
      const double shift = y[static_cast<size_t>(i)] ? 0.15 : 0.0;
      s[static_cast<size_t>(i)] = std::min(1.0, std::round((std::uniform_real_distribution<double>(0, 0.85)(rng) + shift) * 40) / 40);
    }
    auto youden = [&](double t) {
      auto m = binary_metrics(s, y, t);
      return m.sensitivity + m.specificity - 1;
    };
    const double tb = balanced_threshold(s, y), ty = choose_threshold(s, y);
    EXPECT_NEAR(youden(tb), youden(ty), 1e-12) << "trial " << trial;
  }
}

TEST(Metrics, ThresholdRules) {
  using nn::metrics::parse_threshold_rule;
  using nn::metrics::ThresholdRule;
  EXPECT_EQ(parse_threshold_rule("youden").kind, ThresholdRule::youden);
  EXPECT_EQ(parse_threshold_rule("balanced").kind, ThresholdRule::balanced);
  ThresholdRule r = parse_threshold_rule("sensitivity:0.95");
  EXPECT_EQ(r.kind, ThresholdRule::sensitivity);
  EXPECT_EQ(r.min_sensitivity, 0.95);
  EXPECT_EQ(nn::metrics::to_string(r), "sensitivity:0.95");
  EXPECT_EQ(nn::metrics::to_string(parse_threshold_rule("sensitivity:1")), "sensitivity:1");
  EXPECT_EQ(nn::metrics::to_string(parse_threshold_rule("youden")), "youden");
  EXPECT_EQ(nn::metrics::to_string(ThresholdRule{}), "balanced") << "the default rule";
  for (const char* bad : {"", "Youden", "sensitivity", "sensitivity:", "sensitivity:0", "sensitivity:1.5",
                          "sensitivity:-0.2", "sensitivity:0.9x", "sensitivity:nan", "specificity:0.9"})
    EXPECT_THROW(parse_threshold_rule(bad), nn::Error) << bad;

  // Dispatch: the same thresholds as the underlying functions.
  std::vector<double> s{0.1, 0.2, 0.3, 0.45, 0.38, 0.6, 0.7, 0.8};
  std::vector<int64_t> y{0, 0, 0, 0, 1, 1, 1, 1};
  EXPECT_EQ(choose_threshold(s, y, parse_threshold_rule("youden")), 0.6);
  EXPECT_EQ(choose_threshold(s, y, parse_threshold_rule("balanced")), nn::metrics::balanced_threshold(s, y));
  // sensitivity:X is the highest threshold with sensitivity >= X: 3 of 4 positives at 0.6.
  EXPECT_EQ(choose_threshold(s, y, parse_threshold_rule("sensitivity:0.75")), 0.6);
  EXPECT_EQ(choose_threshold(s, y, parse_threshold_rule("sensitivity:0.76")), 0.38);
  EXPECT_EQ(choose_threshold(s, y, parse_threshold_rule("sensitivity:1")), 0.38);
  // On a separable set with a wide gap: sensitivity:0.9 keeps all but the lowest-scoring positives
  // out of ten, so it sits inside the positives, far above the gap.
  std::vector<double> sep{0.01, 0.02, 0.03, 0.04, 0.05, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95};
  std::vector<int64_t> sy{0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  EXPECT_EQ(choose_threshold(sep, sy, parse_threshold_rule("sensitivity:0.9")), 0.4);
  EXPECT_EQ(choose_threshold(sep, sy, parse_threshold_rule("youden")), 0.3);
  EXPECT_NEAR(choose_threshold(sep, sy, parse_threshold_rule("balanced")), logit_midpoint(0.05, 0.3), 1e-12);
  EXPECT_THROW(choose_threshold(s, y, ThresholdRule{ThresholdRule::sensitivity, 0.0}), nn::Error);
}

TEST(Metrics, UndefinedRatesAreNaN) {
  // No positives: sensitivity 0/0, AUC undefined; every case predicted negative: PPV 0/0.
  auto m = binary_metrics({0.1, 0.2, 0.3}, {0, 0, 0});
  EXPECT_EQ(m.confusion.tn, 3);
  EXPECT_DOUBLE_EQ(m.accuracy, 1.0);
  EXPECT_DOUBLE_EQ(m.specificity, 1.0);
  EXPECT_DOUBLE_EQ(m.npv, 1.0);
  EXPECT_TRUE(std::isnan(m.sensitivity));
  EXPECT_TRUE(std::isnan(m.ppv));
  EXPECT_TRUE(std::isnan(m.f1));
  EXPECT_TRUE(std::isnan(m.auc));
  EXPECT_TRUE(std::isnan(roc_auc({0.3, 0.4}, {1, 1})));
  auto empty = binary_metrics({}, {});
  EXPECT_EQ(empty.n, 0);
  EXPECT_TRUE(std::isnan(empty.accuracy));
  EXPECT_TRUE(std::isnan(empty.auc));
}

TEST(Metrics, RejectsInvalidInputs) {
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const nn::Error& e) {
      return std::string(e.what());
    }
    return std::string("<no error>");
  };
  EXPECT_NE(message([] { binary_metrics({0.1, 0.2}, {0}); }).find("differ in size"), std::string::npos);
  EXPECT_NE(message([] { roc_auc({0.1, 0.2}, {0, 2}); }).find("labels[1] = 2"), std::string::npos);
  EXPECT_NE(message([] { roc_auc({0.1, 0.2}, {0, -1}); }).find("labels must be 0 or 1"), std::string::npos);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_NE(message([&] { roc_curve({0.1, nan}, {0, 1}); }).find("scores[1]"), std::string::npos);
  EXPECT_NE(message([&] { choose_threshold({inf, 0.1}, {0, 1}); }).find("finite"), std::string::npos);
  EXPECT_THROW(bootstrap_auc_interval({0.1, 0.2, 0.3}, {0, 1}), nn::Error);
  EXPECT_THROW(binary_metrics(kScores, kLabels, nan), nn::Error);
}

TEST(Metrics, JsonHasEveryKeyInOrderAndNullForNaN) {
  auto m = binary_metrics(kScores, kLabels);
  auto j = nlohmann::ordered_json::parse(nn::metrics::to_json(m));
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"n", "accuracy", "sensitivity", "specificity", "ppv",
                                            "npv", "f1", "auc", "threshold", "confusion"}));
  EXPECT_EQ(j["n"].get<int64_t>(), 8);
  EXPECT_DOUBLE_EQ(j["auc"].get<double>(), 13.0 / 16.0);
  EXPECT_DOUBLE_EQ(j["threshold"].get<double>(), 0.5);
  EXPECT_EQ(j["confusion"]["tp"].get<int64_t>(), 3);
  EXPECT_EQ(j["confusion"]["fp"].get<int64_t>(), 1);
  EXPECT_EQ(j["confusion"]["tn"].get<int64_t>(), 3);
  EXPECT_EQ(j["confusion"]["fn"].get<int64_t>(), 1);
  EXPECT_EQ(j["confusion"].size(), 4u);

  auto undefined = nlohmann::json::parse(nn::metrics::to_json(binary_metrics({0.1}, {0})));
  EXPECT_TRUE(undefined["sensitivity"].is_null());
  EXPECT_TRUE(undefined["auc"].is_null());
  EXPECT_TRUE(undefined["ppv"].is_null());
  EXPECT_DOUBLE_EQ(undefined["specificity"].get<double>(), 1.0);
}

// scikit-learn's roc_auc_score and roc_curve(drop_intermediate=False) on the same data, through
// the system Python; skipped when sklearn is not installed.
TEST(MetricsGolden, MatchesScikitLearn) {
  if (std::system("/usr/bin/python3 -c 'import sklearn' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "scikit-learn is not installed for /usr/bin/python3";
  }
  std::vector<double> s;
  std::vector<int64_t> y;
  random_data(500, 77, 2, s, y);
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("nn_metrics_golden_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    std::ofstream data(dir / "data.txt");
    data.precision(17);
    for (size_t i = 0; i < s.size(); ++i) data << s[i] << ' ' << y[i] << '\n';
  }
  std::string script =
      "import json, sys\n"
      "import numpy as np\n"
      "from sklearn.metrics import roc_auc_score, roc_curve\n"
      "d = np.loadtxt(sys.argv[1])\n"
      "s, y = d[:, 0], d[:, 1].astype(int)\n"
      "fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)\n"
      "json.dump({'auc': roc_auc_score(y, s), 'fpr': fpr.tolist(), 'tpr': tpr.tolist(),\n"
      "           'thr': [float(t) if np.isfinite(t) else None for t in thr]}, open(sys.argv[2], 'w'))\n";
  {
    std::ofstream(dir / "golden.py") << script;
  }
  std::string cmd = "/usr/bin/python3 " + (dir / "golden.py").string() + " " +
                    (dir / "data.txt").string() + " " + (dir / "out.json").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  nlohmann::json golden = nlohmann::json::parse(std::ifstream(dir / "out.json"));
  fs::remove_all(dir);
  EXPECT_NEAR(roc_auc(s, y), golden["auc"].get<double>(), 1e-12);
  auto roc = roc_curve(s, y);
  ASSERT_EQ(roc.fpr.size(), golden["fpr"].size());
  for (size_t i = 0; i < roc.fpr.size(); ++i) {
    EXPECT_NEAR(roc.fpr[i], golden["fpr"][i].get<double>(), 1e-12);
    EXPECT_NEAR(roc.tpr[i], golden["tpr"][i].get<double>(), 1e-12);
    if (i > 0) {
      EXPECT_EQ(roc.thresholds[i], golden["thr"][i].get<double>());
    }
  }
}

}  // namespace

namespace {

// 20000 labels drawn with P(y = 1) = sigmoid(z), z ~ N(mean, 2), and their logits handed over as
// scale * (z - shift): a model whose calibration is known.
struct LabelledLogits {
  std::vector<double> logits;
  std::vector<int64_t> labels;
};
LabelledLogits labelled_logits(uint64_t seed, double mean, double scale, double shift) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(mean, 2.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  LabelledLogits out;
  for (int i = 0; i < 20000; ++i) {
    const double z = normal(rng);
    out.labels.push_back(uniform(rng) < 1.0 / (1.0 + std::exp(-z)) ? 1 : 0);
    out.logits.push_back(scale * (z - shift));
  }
  return out;
}

TEST(Calibration, TemperatureRecoversAKnownScaleAndMinimisesTheLoss) {
  // Logits handed over as 2.5 z: the fitted T is near 2.5 and minimises the mean cross-entropy on
  // a fine float64 grid (the reference).
  const LabelledLogits sample = labelled_logits(5, 0.0, 2.5, 0.0);
  const std::vector<double>& logits = sample.logits;
  const std::vector<int64_t>& labels = sample.labels;
  const double t = nn::metrics::fit_temperature(logits, labels);
  EXPECT_NEAR(t, 2.5, 0.1);
  auto nll = [&](double temp) {
    double s = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      const double p = 1.0 / (1.0 + std::exp(-logits[i] / temp));
      s -= labels[i] ? std::log(p) : std::log(1 - p);
    }
    return s / static_cast<double>(logits.size());
  };
  double best_t = 0, best = 1e300;
  for (double g = 1.5; g <= 3.5; g += 0.0005)
    if (nll(g) < best) best = nll(g), best_t = g;
  EXPECT_NEAR(t, best_t, 0.001);
  EXPECT_THROW(nn::metrics::fit_temperature({1.0, 2.0}, {1, 1}), nn::Error);  // one class
}

TEST(Calibration, PlattScalingRecoversAKnownScaleAndShift) {
  // Logits handed over as 1.7 (z - 0.8), i.e. scaled and shifted as a class-weighted loss shifts
  // them: the fit finds T near 1.7 and bias near 0.8, and its loss is the minimum of the
  // Platt-target cross-entropy on a float64 grid (the reference).
  const LabelledLogits sample = labelled_logits(11, 1.0, 1.7, 0.8);
  const std::vector<double>& logits = sample.logits;
  const std::vector<int64_t>& labels = sample.labels;
  const nn::metrics::LogitCalibration c = nn::metrics::fit_platt_scaling(logits, labels);
  EXPECT_NEAR(c.temperature, 1.7, 0.08);
  EXPECT_NEAR(c.bias, 0.8, 0.06);
  double positives = 0;
  for (int64_t y : labels) positives += static_cast<double>(y);
  const double negatives = static_cast<double>(labels.size()) - positives;
  const double t_pos = (positives + 1) / (positives + 2), t_neg = 1 / (negatives + 2);
  auto loss = [&](double temperature, double bias) {
    double s = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      const double p = 1.0 / (1.0 + std::exp(-(logits[i] / temperature + bias)));
      const double t = labels[i] ? t_pos : t_neg;
      s -= t * std::log(p) + (1 - t) * std::log(1 - p);
    }
    return s / static_cast<double>(logits.size());
  };
  const double fitted = loss(c.temperature, c.bias);
  for (double dt : {-0.01, 0.0, 0.01})
    for (double db : {-0.01, 0.0, 0.01}) EXPECT_LE(fitted, loss(c.temperature + dt, c.bias + db) + 1e-12);
  // Temperature scaling alone cannot remove the shift: its loss is higher.
  const double t_only = nn::metrics::fit_temperature(logits, labels);
  EXPECT_GT(loss(t_only, 0.0), fitted + 0.01);
  // The probability it gives.
  EXPECT_NEAR(c.probability(0.0), 1.0 / (1.0 + std::exp(-c.bias)), 1e-15);
  EXPECT_NEAR(c.probability(2.0), 1.0 / (1.0 + std::exp(-(2.0 / c.temperature + c.bias))), 1e-15);
}

TEST(Calibration, PlattScalingStaysFiniteOnSeparableOrBackwardData) {
  // Separable: Platt's targets keep the fit finite (an unregularised fit would run off to T -> 0).
  const std::vector<double> z = {-3.0, -2.0, -1.5, -0.5, 0.5, 1.0, 2.5, 4.0};
  const std::vector<int64_t> y = {0, 0, 0, 0, 1, 1, 1, 1};
  const nn::metrics::LogitCalibration sep = nn::metrics::fit_platt_scaling(z, y);
  EXPECT_TRUE(std::isfinite(sep.temperature) && std::isfinite(sep.bias));
  // At the minimum the gradient vanishes: sum (p - t) = 0 and sum (p - t) z = 0, t Platt's targets.
  double g_bias = 0, g_scale = 0;
  for (size_t i = 0; i < z.size(); ++i) {
    const double r = sep.probability(z[i]) - (y[i] ? 5.0 / 6.0 : 1.0 / 6.0);
    g_bias += r, g_scale += r * z[i];
  }
  EXPECT_NEAR(g_bias, 0, 1e-9);
  EXPECT_NEAR(g_scale, 0, 1e-9);
  // Ranked backwards: the temperature stops at its upper bound instead of turning negative.
  const std::vector<int64_t> backwards = {1, 1, 1, 1, 0, 0, 0, 0};
  const nn::metrics::LogitCalibration back = nn::metrics::fit_platt_scaling(z, backwards);
  EXPECT_DOUBLE_EQ(back.temperature, 20.0);
  // Every logit equal: the bias alone carries the base rate (3 of 4 positive, Platt's targets).
  const nn::metrics::LogitCalibration flat = nn::metrics::fit_platt_scaling({0.0, 0.0, 0.0, 0.0}, {1, 1, 1, 0});
  const double target = (3 * (4.0 / 5.0) + 1.0 / 3.0) / 4;
  EXPECT_NEAR(flat.probability(0.0), target, 1e-7);
  EXPECT_THROW(nn::metrics::fit_platt_scaling({1.0, 2.0}, {1, 1}), nn::Error);  // one class
  EXPECT_THROW(nn::metrics::fit_platt_scaling({1.0, NAN}, {1, 0}), nn::Error);
  EXPECT_THROW(nn::metrics::fit_platt_scaling({1.0}, {1, 0}), nn::Error);
}

TEST(Calibration, ReliabilityBinsAndExpectedCalibrationError) {
  const std::vector<double> p = {0.05, 0.05, 0.95, 0.95, 1.0};
  const std::vector<int64_t> y = {0, 1, 1, 1, 1};
  nn::metrics::Reliability r = nn::metrics::reliability(p, y, 10);
  ASSERT_EQ(r.count.size(), 10u);
  EXPECT_EQ(r.count[0], 2);
  EXPECT_EQ(r.count[9], 3);  // p = 1 falls in the last bin
  EXPECT_NEAR(r.confidence[0], 0.05, 1e-12);
  EXPECT_NEAR(r.fraction[0], 0.5, 1e-12);
  EXPECT_NEAR(r.confidence[9], (0.95 + 0.95 + 1.0) / 3, 1e-12);
  EXPECT_TRUE(std::isnan(r.confidence[4]));
  EXPECT_NEAR(r.ece, 2.0 / 5 * 0.45 + 3.0 / 5 * (1.0 - 2.9 / 3), 1e-12);
  EXPECT_THROW(nn::metrics::reliability({1.5}, {1}), nn::Error);
}

}  // namespace
