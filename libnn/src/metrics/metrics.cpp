// Binary classification metrics (see nn/metrics.h).
#include "nn/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <random>

#include <nlohmann/json.hpp>

#include "nn/error.h"

namespace nn::metrics {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double ratio(int64_t num, int64_t den) {
  return den == 0 ? kNaN : static_cast<double>(num) / static_cast<double>(den);
}

void validate(const char* fn, const std::vector<double>& scores, const std::vector<int64_t>& labels) {
  NN_CHECK(scores.size() == labels.size(), fn, ": scores and labels differ in size (", scores.size(),
           " scores, ", labels.size(), " labels)");
  for (size_t i = 0; i < scores.size(); ++i) {
    NN_CHECK(labels[i] == 0 || labels[i] == 1, fn, ": labels must be 0 or 1, but labels[", i,
             "] = ", labels[i]);
    NN_CHECK(std::isfinite(scores[i]), fn, ": scores must be finite, but scores[", i,
             "] = ", scores[i]);
  }
}

// Indices sorted by decreasing score (stable, so the order is deterministic).
std::vector<size_t> order_by_decreasing_score(const std::vector<double>& scores) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  return order;
}

// Cases grouped by distinct score, highest score first: the per-group counts of positives and
// negatives, computed once and re-weighted by the bootstrap.
struct ScoreGroups {
  std::vector<double> score;            // one per group, decreasing
  std::vector<size_t> group_of;         // case index -> group
  std::vector<int64_t> positives, negatives;
};

ScoreGroups group_scores(const std::vector<double>& scores, const std::vector<int64_t>& labels) {
  ScoreGroups g;
  g.group_of.resize(scores.size());
  std::vector<size_t> order = order_by_decreasing_score(scores);
  for (size_t k = 0; k < order.size(); ++k) {
    size_t i = order[k];
    if (k == 0 || scores[i] != g.score.back()) {
      g.score.push_back(scores[i]);
      g.positives.push_back(0);
      g.negatives.push_back(0);
    }
    g.group_of[i] = g.score.size() - 1;
    (labels[i] == 1 ? g.positives.back() : g.negatives.back()) += 1;
  }
  return g;
}

// AUC from per-group (weighted) counts, groups in decreasing score order: each positive beats
// every negative of a lower group and ties half of those in its own group.
template <typename Count>
double auc_from_groups(const std::vector<Count>& pos, const std::vector<Count>& neg) {
  // Twice the Mann-Whitney U, in exact integer arithmetic (fits: 2 * P * N < 2^64 for n < 4e9).
  unsigned __int128 twice_u = 0;
  unsigned __int128 negatives_below = 0, total_pos = 0, total_neg = 0;
  for (size_t k = 0; k < pos.size(); ++k) total_neg += static_cast<uint64_t>(neg[k]);
  negatives_below = total_neg;
  for (size_t k = 0; k < pos.size(); ++k) {
    auto p = static_cast<uint64_t>(pos[k]), q = static_cast<uint64_t>(neg[k]);
    negatives_below -= q;
    twice_u += static_cast<unsigned __int128>(p) * (2 * negatives_below + q);
    total_pos += p;
  }
  if (total_pos == 0 || total_neg == 0) return kNaN;
  return static_cast<double>(twice_u) / (2.0 * static_cast<double>(total_pos) *
                                         static_cast<double>(total_neg));
}

}  // namespace

double roc_auc(const std::vector<double>& scores, const std::vector<int64_t>& labels) {
  validate("roc_auc", scores, labels);
  ScoreGroups g = group_scores(scores, labels);
  return auc_from_groups(g.positives, g.negatives);
}

BinaryMetrics binary_metrics(const std::vector<double>& scores, const std::vector<int64_t>& labels,
                             double threshold) {
  validate("binary_metrics", scores, labels);
  NN_CHECK(!std::isnan(threshold), "binary_metrics: the threshold is NaN");
  BinaryMetrics m;
  m.n = static_cast<int64_t>(scores.size());
  m.threshold = threshold;
  Confusion& c = m.confusion;
  for (size_t i = 0; i < scores.size(); ++i) {
    bool predicted = scores[i] >= threshold;
    if (labels[i] == 1) {
      (predicted ? c.tp : c.fn) += 1;
    } else {
      (predicted ? c.fp : c.tn) += 1;
    }
  }
  m.accuracy = ratio(c.tp + c.tn, m.n);
  m.sensitivity = ratio(c.tp, c.tp + c.fn);
  m.specificity = ratio(c.tn, c.tn + c.fp);
  m.ppv = ratio(c.tp, c.tp + c.fp);
  m.npv = ratio(c.tn, c.tn + c.fn);
  m.f1 = ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn);
  ScoreGroups g = group_scores(scores, labels);
  m.auc = auc_from_groups(g.positives, g.negatives);
  return m;
}

RocCurve roc_curve(const std::vector<double>& scores, const std::vector<int64_t>& labels) {
  validate("roc_curve", scores, labels);
  NN_CHECK(!scores.empty(), "roc_curve: no scores");
  ScoreGroups g = group_scores(scores, labels);
  int64_t total_pos = std::accumulate(g.positives.begin(), g.positives.end(), int64_t{0});
  int64_t total_neg = std::accumulate(g.negatives.begin(), g.negatives.end(), int64_t{0});
  RocCurve roc;
  size_t points = g.score.size() + 1;
  roc.fpr.reserve(points);
  roc.tpr.reserve(points);
  roc.thresholds.reserve(points);
  roc.fpr.push_back(total_neg == 0 ? kNaN : 0.0);
  roc.tpr.push_back(total_pos == 0 ? kNaN : 0.0);
  roc.thresholds.push_back(std::numeric_limits<double>::infinity());
  int64_t tp = 0, fp = 0;
  for (size_t k = 0; k < g.score.size(); ++k) {
    tp += g.positives[k];
    fp += g.negatives[k];
    roc.fpr.push_back(ratio(fp, total_neg));
    roc.tpr.push_back(ratio(tp, total_pos));
    roc.thresholds.push_back(g.score[k]);
  }
  return roc;
}

Interval bootstrap_auc_interval(const std::vector<double>& scores, const std::vector<int64_t>& labels,
                                int rounds, uint64_t seed, double level) {
  validate("bootstrap_auc_interval", scores, labels);
  NN_CHECK(rounds > 0, "bootstrap_auc_interval: rounds must be positive, got ", rounds);
  NN_CHECK(level > 0.0 && level < 1.0, "bootstrap_auc_interval: level must be in (0, 1), got ", level);
  const Interval undefined{kNaN, kNaN};
  if (scores.empty()) return undefined;
  ScoreGroups g = group_scores(scores, labels);
  if (std::isnan(auc_from_groups(g.positives, g.negatives))) return undefined;

  const size_t n = scores.size();
  std::mt19937_64 rng(seed);
  std::vector<uint32_t> pos(g.score.size()), neg(g.score.size());
  std::vector<double> aucs;
  aucs.reserve(static_cast<size_t>(rounds));
  for (int r = 0; r < rounds; ++r) {
    std::fill(pos.begin(), pos.end(), 0u);
    std::fill(neg.begin(), neg.end(), 0u);
    for (size_t k = 0; k < n; ++k) {
      // Unbiased enough and portable (std::uniform_int_distribution differs between libraries):
      // the high 64 bits of a 64x64-bit product map the draw onto [0, n).
      auto i = static_cast<size_t>((static_cast<unsigned __int128>(rng()) * n) >> 64);
      (labels[i] == 1 ? pos : neg)[g.group_of[i]] += 1;
    }
    double auc = auc_from_groups(pos, neg);
    if (!std::isnan(auc)) aucs.push_back(auc);  // a resample with one class has no AUC
  }
  if (aucs.empty()) return undefined;
  std::sort(aucs.begin(), aucs.end());
  auto quantile = [&](double q) {
    double position = q * static_cast<double>(aucs.size() - 1);
    auto lo = static_cast<size_t>(std::floor(position));
    size_t hi = std::min(lo + 1, aucs.size() - 1);
    double frac = position - static_cast<double>(lo);
    return aucs[lo] + (aucs[hi] - aucs[lo]) * frac;
  };
  double tail = (1.0 - level) / 2.0;
  return {quantile(tail), quantile(1.0 - tail)};
}

double choose_threshold(const std::vector<double>& scores, const std::vector<int64_t>& labels,
                        double min_sensitivity) {
  validate("choose_threshold", scores, labels);
  NN_CHECK(min_sensitivity >= 0.0 && min_sensitivity <= 1.0,
           "choose_threshold: min_sensitivity must be in [0, 1], got ", min_sensitivity);
  ScoreGroups g = group_scores(scores, labels);
  int64_t total_pos = std::accumulate(g.positives.begin(), g.positives.end(), int64_t{0});
  int64_t total_neg = std::accumulate(g.negatives.begin(), g.negatives.end(), int64_t{0});
  NN_CHECK(total_pos > 0, "choose_threshold: no positive case (label 1) among ", scores.size(),
           " scores; a threshold cannot be chosen");
  int64_t tp = 0, fp = 0;
  if (min_sensitivity > 0.0) {
    // Sensitivity only grows as the threshold decreases: the first group that reaches it.
    for (size_t k = 0; k < g.score.size(); ++k) {
      tp += g.positives[k];
      if (static_cast<double>(tp) / static_cast<double>(total_pos) >= min_sensitivity) return g.score[k];
    }
    return g.score.back();  // unreachable: the lowest score has sensitivity 1
  }
  NN_CHECK(total_neg > 0, "choose_threshold: no negative case (label 0) among ", scores.size(),
           " scores; Youden's J needs both classes");
  double best_j = -std::numeric_limits<double>::infinity(), best_t = g.score.front();
  for (size_t k = 0; k < g.score.size(); ++k) {
    tp += g.positives[k];
    fp += g.negatives[k];
    double j = static_cast<double>(tp) / static_cast<double>(total_pos) -
               static_cast<double>(fp) / static_cast<double>(total_neg);
    double t = g.score[k];
    if (j > best_j + 1e-12 ||
        (j >= best_j - 1e-12 && std::abs(t - 0.5) < std::abs(best_t - 0.5))) {
      best_j = std::max(j, best_j);
      best_t = t;
    }
  }
  return best_t;
}

double balanced_threshold(const std::vector<double>& scores, const std::vector<int64_t>& labels,
                          bool probabilities) {
  validate("balanced_threshold", scores, labels);
  ScoreGroups g = group_scores(scores, labels);
  const int64_t total_pos = std::accumulate(g.positives.begin(), g.positives.end(), int64_t{0});
  const int64_t total_neg = std::accumulate(g.negatives.begin(), g.negatives.end(), int64_t{0});
  NN_CHECK(total_pos > 0 && total_neg > 0, "balanced_threshold: needs both classes, got ", total_pos,
           " positive and ", total_neg, " negative cases");
  if (probabilities)
    NN_CHECK(g.score.back() >= 0.0 && g.score.front() <= 1.0,
             "balanced_threshold: probabilities must lie in [0, 1], got scores from ", g.score.back(), " to ",
             g.score.front(), " (pass probabilities = false for other scores)");
  // Where midpoints are taken: the logit of a probability (clamped, so 0 and 1 stay finite).
  auto space = [&](double s) {
    if (!probabilities) return s;
    return std::min(40.0, std::max(-40.0, std::log(s) - std::log1p(-s)));  // 0 and 1: -40 and 40
  };
  // Cut k: groups 0..k predicted positive (threshold in (score[k + 1], score[k]]). Youden's J =
  // 2 * balanced accuracy - 1 of each cut.
  const size_t m = g.score.size();
  std::vector<double> j(m);
  int64_t tp = 0, fp = 0;
  double best = -std::numeric_limits<double>::infinity();
  for (size_t k = 0; k < m; ++k) {
    tp += g.positives[k];
    fp += g.negatives[k];
    j[k] = static_cast<double>(tp) / static_cast<double>(total_pos) -
           static_cast<double>(fp) / static_cast<double>(total_neg);
    best = std::max(best, j[k]);
  }
  auto tied = [&](size_t k) { return j[k] >= best - 1e-12; };
  // Runs of adjacent best cuts [a, b]: any threshold in (score[b + 1], score[a]] is as good; the
  // widest run (in the midpoint space) wins, and its midpoint is the threshold.
  double best_width = -1.0, best_mid = 0.0;
  size_t best_a = 0, best_b = 0;
  for (size_t a = 0; a < m; ++a) {
    if (!tied(a) || (a > 0 && tied(a - 1))) continue;
    size_t b = a;
    while (b + 1 < m && tied(b + 1)) ++b;
    // Down to the highest score predicted negative, or to the lowest score when every case is
    // predicted positive (any lower threshold is the same cut).
    const double hi = space(g.score[a]), lo = space(g.score[std::min(b + 1, m - 1)]);
    const double width = hi - lo, mid = 0.5 * (hi + lo);
    const double centre = probabilities ? 0.0 : 0.5;
    const bool wider = width > best_width * (1 + 1e-12) + 1e-300;
    const bool as_wide = !wider && width >= best_width * (1 - 1e-12);
    if (wider || (as_wide && std::abs(mid - centre) < std::abs(best_mid - centre))) {
      best_width = width;
      best_mid = mid;
      best_a = a;
      best_b = b;
    }
  }
  double t = probabilities ? 1.0 / (1.0 + std::exp(-best_mid)) : best_mid;
  // Guard the round trip through the logit: the threshold must still select cut [a, b].
  if (!(t <= g.score[best_a])) t = g.score[best_a];
  if (best_b + 1 < m && !(t > g.score[best_b + 1])) t = g.score[best_a];
  if (best_b + 1 == m && best_a == m - 1) t = g.score[m - 1];
  return t;
}

ThresholdRule parse_threshold_rule(const std::string& text) {
  ThresholdRule rule;
  const std::string prefix = "sensitivity:";
  if (text == "youden") {
    rule.kind = ThresholdRule::youden;
  } else if (text == "balanced") {
    rule.kind = ThresholdRule::balanced;
  } else if (text.rfind(prefix, 0) == 0) {
    const std::string number = text.substr(prefix.size());
    double x = std::numeric_limits<double>::quiet_NaN();
    try {
      size_t used = 0;
      x = std::stod(number, &used);
      if (used != number.size()) x = std::numeric_limits<double>::quiet_NaN();
    } catch (const std::exception&) {
    }
    NN_CHECK(x > 0.0 && x <= 1.0, "threshold rule '", text,
             "': the minimum sensitivity must be a number in (0, 1], e.g. sensitivity:0.95");
    rule.kind = ThresholdRule::sensitivity;
    rule.min_sensitivity = x;
  } else {
    NN_CHECK(false, "unknown threshold rule '", text, "' (youden, balanced or sensitivity:X with X in (0, 1])");
  }
  return rule;
}

std::string to_string(const ThresholdRule& rule) {
  switch (rule.kind) {
    case ThresholdRule::youden:
      return "youden";
    case ThresholdRule::balanced:
      return "balanced";
    case ThresholdRule::sensitivity: {
      char buf[40];
      for (int precision = 1; precision <= 17; ++precision) {  // the shortest text that reads back
        std::snprintf(buf, sizeof buf, "%.*g", precision, rule.min_sensitivity);
        if (std::strtod(buf, nullptr) == rule.min_sensitivity) break;
      }
      return std::string("sensitivity:") + buf;
    }
  }
  return "unknown";
}

double choose_threshold(const std::vector<double>& scores, const std::vector<int64_t>& labels,
                        const ThresholdRule& rule, bool probabilities) {
  switch (rule.kind) {
    case ThresholdRule::youden:
      return choose_threshold(scores, labels, 0.0);
    case ThresholdRule::balanced:
      return balanced_threshold(scores, labels, probabilities);
    case ThresholdRule::sensitivity:
      NN_CHECK(rule.min_sensitivity > 0.0 && rule.min_sensitivity <= 1.0,
               "choose_threshold: the sensitivity rule needs a minimum sensitivity in (0, 1], got ",
               rule.min_sensitivity);
      return choose_threshold(scores, labels, rule.min_sensitivity);
  }
  NN_CHECK(false, "choose_threshold: unknown threshold rule");
  return 0.0;
}

// ---- calibration ----

double fit_temperature(const std::vector<double>& logits, const std::vector<int64_t>& labels) {
  NN_CHECK(logits.size() == labels.size(), "fit_temperature: ", logits.size(), " logits but ", labels.size(), " labels");
  bool pos = false, neg = false;
  for (size_t i = 0; i < logits.size(); ++i) {
    NN_CHECK(std::isfinite(logits[i]), "fit_temperature: logit ", i, " is not finite (", logits[i], ")");
    NN_CHECK(labels[i] == 0 || labels[i] == 1, "fit_temperature: labels must be 0 or 1, got ", labels[i]);
    (labels[i] == 1 ? pos : neg) = true;
  }
  NN_CHECK(pos && neg, "fit_temperature: needs both classes");
  // Mean BCE of sigmoid(z / T): log(1 + exp(-s)) with s = z / T for positives, -z / T for negatives.
  auto nll = [&](double log_t) {
    const double inv = std::exp(-log_t);
    double total = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      const double s = (labels[i] == 1 ? 1.0 : -1.0) * logits[i] * inv;
      total += s > 0 ? std::log1p(std::exp(-s)) : -s + std::log1p(std::exp(s));
    }
    return total / static_cast<double>(logits.size());
  };
  // The loss is convex in 1 / T, so unimodal in log T: golden-section search.
  double lo = std::log(0.05), hi = std::log(20.0);
  const double g = (std::sqrt(5.0) - 1.0) / 2.0;
  double a = hi - g * (hi - lo), b = lo + g * (hi - lo), fa = nll(a), fb = nll(b);
  for (int it = 0; it < 100; ++it) {
    if (fa < fb) {
      hi = b, b = a, fb = fa;
      a = hi - g * (hi - lo), fa = nll(a);
    } else {
      lo = a, a = b, fa = fb;
      b = lo + g * (hi - lo), fb = nll(b);
    }
  }
  return std::exp((lo + hi) / 2.0);
}

double LogitCalibration::probability(double logit) const { return 1.0 / (1.0 + std::exp(-(logit / temperature + bias))); }

LogitCalibration fit_platt_scaling(const std::vector<double>& logits, const std::vector<int64_t>& labels) {
  NN_CHECK(logits.size() == labels.size(), "fit_platt_scaling: ", logits.size(), " logits but ", labels.size(), " labels");
  double positives = 0, negatives = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    NN_CHECK(std::isfinite(logits[i]), "fit_platt_scaling: logit ", i, " is not finite (", logits[i], ")");
    NN_CHECK(labels[i] == 0 || labels[i] == 1, "fit_platt_scaling: labels must be 0 or 1, got ", labels[i]);
    (labels[i] == 1 ? positives : negatives) += 1;
  }
  NN_CHECK(positives > 0 && negatives > 0, "fit_platt_scaling: needs both classes");
  const double t_pos = (positives + 1) / (positives + 2), t_neg = 1 / (negatives + 2);
  const double n = static_cast<double>(logits.size());
  // p = sigmoid(a z + b), a = 1 / temperature; the loss is convex in (a, b).
  auto loss = [&](double a, double b) {
    double total = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      const double s = a * logits[i] + b, t = labels[i] == 1 ? t_pos : t_neg;
      // -(t log p + (1 - t) log(1 - p)) = softplus(s) - t s, computed without overflow.
      total += (s > 0 ? s + std::log1p(std::exp(-s)) : std::log1p(std::exp(s))) - t * s;
    }
    return total / n;
  };
  const double a_min = 1 / 20.0, a_max = 1 / 0.05;
  double a = 1, b = 0, f = loss(a, b);
  for (int it = 0; it < 100; ++it) {
    double ga = 0, gb = 0, haa = 0, hab = 0, hbb = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      const double z = logits[i], p = 1 / (1 + std::exp(-(a * z + b))), r = p - (labels[i] == 1 ? t_pos : t_neg);
      const double w = p * (1 - p);
      ga += r * z, gb += r, haa += w * z * z, hab += w * z, hbb += w;
    }
    // Newton's step (a tiny ridge keeps the 2x2 system solvable when every logit is equal).
    haa += 1e-12 * n, hbb += 1e-12 * n;
    const double det = haa * hbb - hab * hab;
    const double da = (hbb * ga - hab * gb) / det, db = (haa * gb - hab * ga) / det;
    double step = 1, a_new = a, b_new = b, f_new = f;
    for (int halving = 0; halving < 40; ++halving, step /= 2) {
      a_new = std::clamp(a - step * da, a_min, a_max), b_new = b - step * db;
      f_new = loss(a_new, b_new);
      if (f_new <= f) break;
    }
    if (!(f_new <= f)) break;  // no step lowers the loss: at the minimum (or its boundary)
    const bool converged = std::abs(a_new - a) < 1e-10 * (1 + std::abs(a)) && std::abs(b_new - b) < 1e-10 * (1 + std::abs(b));
    a = a_new, b = b_new, f = f_new;
    if (converged) break;
  }
  return {1 / a, b};
}

Reliability reliability(const std::vector<double>& probabilities, const std::vector<int64_t>& labels, int bins) {
  NN_CHECK(probabilities.size() == labels.size(), "reliability: ", probabilities.size(), " probabilities but ",
           labels.size(), " labels");
  NN_CHECK(bins >= 1, "reliability: bins must be positive, got ", bins);
  Reliability r;
  std::vector<double> sum_p(static_cast<size_t>(bins), 0.0), positives(static_cast<size_t>(bins), 0.0);
  r.count.assign(static_cast<size_t>(bins), 0);
  for (size_t i = 0; i < probabilities.size(); ++i) {
    const double p = probabilities[i];
    NN_CHECK(p >= 0 && p <= 1, "reliability: probability ", i, " is ", p, ", not in [0, 1]");
    NN_CHECK(labels[i] == 0 || labels[i] == 1, "reliability: labels must be 0 or 1, got ", labels[i]);
    const auto b = std::min<int64_t>(bins - 1, static_cast<int64_t>(p * bins));
    sum_p[static_cast<size_t>(b)] += p;
    positives[static_cast<size_t>(b)] += static_cast<double>(labels[i]);
    ++r.count[static_cast<size_t>(b)];
  }
  const double n = static_cast<double>(probabilities.size());
  for (int b = 0; b < bins; ++b) {
    const auto c = static_cast<double>(r.count[static_cast<size_t>(b)]);
    r.confidence.push_back(c > 0 ? sum_p[static_cast<size_t>(b)] / c : NAN);
    r.fraction.push_back(c > 0 ? positives[static_cast<size_t>(b)] / c : NAN);
    if (c > 0) r.ece += c / n * std::abs(r.fraction.back() - r.confidence.back());
  }
  return r;
}

std::string to_json(const BinaryMetrics& m) {
  auto number = [](double v) { return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(); };
  nlohmann::ordered_json j;
  j["n"] = m.n;
  j["accuracy"] = number(m.accuracy);
  j["sensitivity"] = number(m.sensitivity);
  j["specificity"] = number(m.specificity);
  j["ppv"] = number(m.ppv);
  j["npv"] = number(m.npv);
  j["f1"] = number(m.f1);
  j["auc"] = number(m.auc);
  j["threshold"] = number(m.threshold);
  j["confusion"] = {{"tp", m.confusion.tp}, {"fp", m.confusion.fp}, {"tn", m.confusion.tn},
                    {"fn", m.confusion.fn}};
  return j.dump();
}

}  // namespace nn::metrics
