// The cross-validated ensemble and its protocol (cross_validation.h, docs/evaluation_protocol.md).
#include "cross_validation.h"

#include <nn/data/augment.h>
#include <nn/data/degrade.h>
#include <nn/io/safetensors.h>
#include <nn/named_layers.h>
#include <nn/nn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "charts.h"
#include "chest_xray_folder.h"

namespace pneumonia {

namespace fs = std::filesystem;
using json = nlohmann::json;
using nn::data::Image;

std::vector<AcquisitionShift> acquisition_shifts(const ClassIntensities& classes) {
  std::vector<AcquisitionShift> shifts = [] {
    auto augment = [](double zoom, double translate, double contrast, double aspect = 1.0, double degrees = 0.0) {
      return [=](const Image& im, int64_t) {
        nn::data::AugmentParams p;
        p.zoom = zoom;
        p.translate_x = p.translate_y = translate;
        p.contrast = contrast;
        p.aspect = aspect;
        p.rotation = degrees * 3.14159265358979323846 / 180.0;
        return nn::data::apply_augment(im, p);
      };
    };
    std::vector<AcquisitionShift> s;
    s.push_back({"clean", "the image as stored", [](const Image& im, int64_t) { return im; }});
    s.push_back({"gamma-0.6", "an over-exposed look: v^0.6", [](const Image& im, int64_t) { return nn::data::adjust_gamma(im, 0.6); }});
    s.push_back({"gamma-1.6", "an under-exposed look: v^1.6", [](const Image& im, int64_t) { return nn::data::adjust_gamma(im, 1.6); }});
    s.push_back({"contrast-0.6", "flat, washed out: m + 0.6 (v - m)", augment(1.0, 0.0, 0.6)});
    s.push_back({"blur-1.5", "unsharp: Gaussian blur, sigma 1.5 px", [](const Image& im, int64_t) { return nn::data::gaussian_blur(im, 1.5); }});
    s.push_back({"resolution-0.4", "a coarser detector: down to 40% and back",
                 [](const Image& im, int64_t) { return nn::data::downscale_upscale(im, 0.4); }});
    s.push_back({"noise-0.04", "a noisier detector: N(0, 0.04^2)", [](const Image& im, int64_t) {
                   nn::Generator gen(20261207);
                   return nn::data::add_gaussian_noise(im, 0.04, gen);
                 }});
    s.push_back({"framing", "other collimation: zoom 1/0.88, shifted 4% right and down", augment(0.88, 0.04, 1.0)});
    s.push_back({"zoom-out", "a wider field of view: the content at 85% of its size (edges repeated)",
                 augment(1.0 / 0.85, 0.0, 1.0)});
    s.push_back({"aspect-0.8", "another original aspect ratio: the content squeezed to 80% of its width",
                 augment(1.0, 0.0, 1.0, 1.25)});
    s.push_back({"aspect-1.25", "another original aspect ratio: the content stretched to 125% of its width",
                 augment(1.0, 0.0, 1.0, 0.8)});
    s.push_back({"rotation-8", "a tilted patient: rotated 8 degrees", augment(1.0, 0.0, 1.0, 1.0, 8.0)});
    s.push_back({"jpeg-20", "stored at JPEG quality 20", [](const Image& im, int64_t) { return nn::data::jpeg_roundtrip(im, 20); }});
    return s;
  }();
  if (!classes.cdf[0].empty() && !classes.cdf[1].empty())
    shifts.push_back({"processing-swap",
                      "each image given the other class's mean gray-level histogram (a counterfactual: the class "
                      "as another collection processed it)",
                      [classes](const Image& im, int64_t label) {
                        return nn::data::match_histogram(im, classes.cdf[label == 0 ? 1 : 0]);
                      }});
  return shifts;
}

ClassIntensities class_intensities(const XrayData& data) {
  ClassIntensities out;
  int64_t count[2] = {0, 0};
  for (size_t i = 0; i < data.samples.size(); ++i) {
    const Image& im = data.cache.images[i];
    if (im.height == 0) continue;
    const int64_t label = data.labels[i] == 0 ? 0 : 1;
    const std::vector<double> cdf = nn::data::intensity_cdf(im);
    auto& acc = out.cdf[static_cast<size_t>(label)];
    if (acc.empty()) acc.assign(cdf.size(), 0.0);
    for (size_t b = 0; b < cdf.size(); ++b) acc[b] += cdf[b];
    ++count[label];
  }
  for (int l = 0; l < 2; ++l)
    for (double& v : out.cdf[static_cast<size_t>(l)]) v /= static_cast<double>(std::max<int64_t>(1, count[l]));
  for (auto& c : out.cdf)
    if (!c.empty()) c.back() = 1.0;
  return out;
}

namespace {

using run_files::seconds_since;

struct Stats {
  double mean = 0, sd = 0;
};

Stats stats_of(const std::vector<double>& v) {
  Stats s;
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(s.sd / static_cast<double>(v.size() - 1)) : 0.0;
  return s;
}

json stats_json(const std::vector<double>& v, double pooled) {
  const Stats s = stats_of(v);
  return {{"mean", s.mean}, {"sd", s.sd}, {"pooled", pooled}, {"folds", v}};
}

std::vector<double> calibrated(const std::vector<double>& logits, const nn::metrics::LogitCalibration& calibration) {
  std::vector<double> p(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) p[i] = calibration.probability(logits[i]);
  return p;
}

std::vector<nn::data::AugmentParams> test_time_views() {
  // Fixed before any result was seen: the middle of the default training augmentation's zoom
  // (+-0.2) and aspect (log-uniform up to 1.35) ranges, one step each way.
  std::vector<nn::data::AugmentParams> views(4);
  views[0].zoom = 0.9;
  views[1].zoom = 1.1;
  views[2].aspect = 1.15;
  views[3].aspect = 1.0 / 1.15;
  return views;
}

// The logits of `member` for every image of `indices`, under every shift: logits[c][k] for
// indices[k]; refused[c][k]: whether the member's gate (its input checks, then its feature
// detector) refuses the image. The images are decoded again from their files at full size, made
// grayscale, shifted, then prepared as the model's input (resize to its side).
struct ShiftScores {
  std::vector<std::vector<double>> logits;
  std::vector<std::vector<char>> refused;
};
// With `views` (test-time augmentation), a logit is the mean over the image and each view of it
// (nn::data::apply_augment on the model-sized image); the gate sees the image alone.
ShiftScores score_under_shifts(nn::models::VGG& member, const ModelSpec& spec, const OodGate& gate,
                               const XrayData& data, const std::vector<int64_t>& indices,
                               const std::vector<AcquisitionShift>& shifts,
                               const std::vector<nn::data::AugmentParams>& views = {}) {
  // A fold model written before the gate existed has no feature detector: only the input checks.
  const FeatureGate* detector = gate.members.empty() ? nullptr : &gate.members[0];
  const nn::data::Preprocessing preset = nn::data::parse_preprocessing(spec.preprocessing);
  ShiftScores out;
  out.logits.resize(shifts.size());
  out.refused.resize(shifts.size());
  nn::NoGradGuard no_grad;
  nn::EvalModeGuard eval;
  const size_t batch = 32;
  for (size_t b = 0; b < indices.size(); b += batch) {
    const size_t end = std::min(indices.size(), b + batch);
    std::vector<std::vector<nn::Tensor>> inputs(shifts.size());
    std::vector<std::vector<std::vector<nn::Tensor>>> view_inputs(shifts.size(), std::vector<std::vector<nn::Tensor>>(views.size()));
    std::vector<std::vector<char>> input_refused(shifts.size());
    for (size_t k = b; k < end; ++k) {
      const size_t i = static_cast<size_t>(indices[k]);
      const Image gray = nn::data::to_grayscale(nn::data::load_image(data.samples[i].path));
      for (size_t c = 0; c < shifts.size(); ++c) {
        Image shifted = shifts[c].apply(gray, data.labels[i]);
        input_refused[c].push_back(!check_input(input_stats(shifted), gate.input).empty());
        if (shifted.height != spec.input_size || shifted.width != spec.input_size)
          shifted = nn::data::resize(shifted, spec.input_size, spec.input_size);
        inputs[c].push_back(xray_to_input(shifted, preset).unsqueeze(0));
        for (size_t v = 0; v < views.size(); ++v)
          view_inputs[c][v].push_back(xray_to_input(nn::data::apply_augment(shifted, views[v]), preset).unsqueeze(0));
      }
    }
    for (size_t c = 0; c < shifts.size(); ++c) {
      const nn::Tensor x = nn::concat(inputs[c], 0);
      std::vector<double> d(input_refused[c].size(), 0.0);
      nn::Tensor z;
      if (detector != nullptr) {
        const nn::Tensor a = nn::forward_to(member, x, gate.layer);
        d = detector->detector.distances(pooled_features(a));
        z = nn::forward_from(member, a, gate.layer);
      } else {
        z = member(x);
      }
      std::vector<float> zs = z.reshape({-1}).to_vector<float>();
      if (!views.empty()) {
        std::vector<double> sum(zs.begin(), zs.end());
        for (size_t v = 0; v < views.size(); ++v) {
          const std::vector<float> zv = member(nn::concat(view_inputs[c][v], 0)).reshape({-1}).to_vector<float>();
          for (size_t k = 0; k < sum.size(); ++k) sum[k] += zv[k];
        }
        for (size_t k = 0; k < sum.size(); ++k) zs[k] = static_cast<float>(sum[k] / static_cast<double>(views.size() + 1));
      }
      for (float v : zs) out.logits[c].push_back(v);
      for (size_t k = 0; k < d.size(); ++k)
        out.refused[c].push_back(input_refused[c][k] || (detector != nullptr && OodGate::refuses(d[k] / detector->limit)));
    }
  }
  return out;
}

// A threshold rule, and where it is applied ("clean" or "shifts": the pooled predictions of every
// condition).
struct RuleChoice {
  std::string rule, on;
  std::string name() const { return rule + (on == "clean" ? "" : " on shifts"); }
};

}  // namespace

namespace {

// The fold models of a cross-validated run, their common spec and training histories.
struct Members {
  std::vector<std::shared_ptr<nn::models::VGG>> models;
  ModelSpec spec;
  std::vector<json> histories;
  std::vector<OodGate> gates;  // each fold model's (one feature detector each)
};

std::string fold_dir(const std::string& run, int k) { return (fs::path(run) / ("fold-" + std::to_string(k))).string(); }

// A fold's finished model (fold-k/model.safetensors) and the history kept in its summary.
void load_fold(const std::string& dir, Members& m) {
  const std::string path = (fs::path(dir) / "model.safetensors").string();
  PneumoniaModel done = load_model(path);
  NN_CHECK(done.members.size() == 1, path, ": not a fold's model");
  NN_CHECK(done.gate.members.size() <= 1, path, ": not a fold's model (its gate has several detectors)");
  m.models.push_back(done.members[0]);
  m.spec = done.spec;
  m.gates.push_back(done.gate);
  const json summary = json::parse(std::ifstream(fs::path(dir) / "summary.json"));
  m.histories.push_back(summary.contains("history") ? summary["history"] : json::array());
}

// Trains the folds (skipping finished ones when resuming).
Members train_folds(const TrainConfig& cfg, const std::shared_ptr<const XrayData>& data,
                    const std::vector<nn::data::Split>& folds) {
  Members m;
  for (int k = 0; k < cfg.folds; ++k) {
    TrainConfig fold_cfg = cfg;
    fold_cfg.out = fold_dir(cfg.out, k);
    fold_cfg.seed = cfg.seed + 1000 * static_cast<uint64_t>(k);  // each member its own initialisation and order
    fold_cfg.select = "last";  // the held-out fold picks nothing: it stays unseen
    std::printf("== fold %d/%d: %s\n", k + 1, cfg.folds, fold_cfg.out.c_str());
    std::fflush(stdout);
    if (cfg.resume && fs::exists(fs::path(fold_cfg.out) / "model.safetensors") &&
        fs::exists(fs::path(fold_cfg.out) / "summary.json")) {
      load_fold(fold_cfg.out, m);
      std::printf("fold %d already trained\n", k + 1);
      continue;
    }
    Trainer trainer(fold_cfg, data, folds[static_cast<size_t>(k)]);
    trainer.load_data();
    trainer.build_model();
    trainer.resume();
    while (trainer.next_epoch() <= trainer.config().epochs && trainer.train_epoch()) {
    }
    trainer.finish();
    nn::Generator unused(0);  // the values are overwritten by the load
    std::shared_ptr<nn::models::VGG> member = build_model(trainer.spec(), unused);
    member->load_state_dict(trainer.model().state_dict());
    member->eval();
    m.models.push_back(member);
    m.spec = trainer.spec();
    m.histories.push_back(trainer.history());
    m.gates.push_back(trainer.gate());
    // The fold's history goes into its summary for a later --resume.
    json fold_summary = json::parse(std::ifstream(fs::path(fold_cfg.out) / "summary.json"));
    fold_summary["history"] = trainer.history();
    run_files::save_json((fs::path(fold_cfg.out) / "summary.json").string(), fold_summary);
  }
  return m;
}

// Scores every fold's held-out images under the protocol's conditions with that fold's model, then
// calibrates, picks the threshold, tabulates; writes protocol.json, oof.safetensors and the charts
// into `out`. Sets m.spec's calibration (temperature and bias), threshold and members.
json evaluate_protocol(const TrainConfig& cfg, const XrayData& data, const std::vector<nn::data::Split>& folds,
                       Members& m, const std::string& out) {
  const std::vector<AcquisitionShift> shifts = acquisition_shifts(class_intensities(data));
  const std::vector<nn::data::AugmentParams> views = cfg.tta ? test_time_views() : std::vector<nn::data::AugmentParams>{};
  ModelSpec& spec = m.spec;
  // Out-of-fold logits per condition, and each sample's fold (-1 when unreadable).
  std::vector<std::vector<double>> oof(shifts.size(), std::vector<double>(data.samples.size(), NAN));
  std::vector<std::vector<char>> oof_refused(shifts.size(), std::vector<char>(data.samples.size(), 0));
  std::vector<int> fold_of(data.samples.size(), -1);
  for (int k = 0; k < cfg.folds; ++k) {
    const std::vector<int64_t> held_out = data.usable(folds[static_cast<size_t>(k)].val);
    const auto t_score = std::chrono::steady_clock::now();
    const ShiftScores scores = score_under_shifts(*m.models[static_cast<size_t>(k)], spec, m.gates[static_cast<size_t>(k)],
                                                  data, held_out, shifts, views);
    for (size_t c = 0; c < shifts.size(); ++c)
      for (size_t j = 0; j < held_out.size(); ++j) {
        oof[c][static_cast<size_t>(held_out[j])] = scores.logits[c][j];
        oof_refused[c][static_cast<size_t>(held_out[j])] = scores.refused[c][j];
      }
    for (int64_t i : held_out) fold_of[static_cast<size_t>(i)] = k;
    std::printf("fold %d: %zu held-out images scored under %zu conditions in %.1f s\n", k + 1, held_out.size(),
                shifts.size(), seconds_since(t_score));
  }
  // ---- pooled out-of-fold predictions ----
  std::vector<int64_t> scored;  // samples with an out-of-fold prediction
  for (size_t i = 0; i < fold_of.size(); ++i)
    if (fold_of[i] >= 0) scored.push_back(static_cast<int64_t>(i));
  std::vector<int64_t> labels;
  for (int64_t i : scored) labels.push_back(data.labels[static_cast<size_t>(i)]);
  auto logits_of = [&](size_t c, int fold = -1) {
    std::vector<double> z;
    for (int64_t i : scored)
      if (fold < 0 || fold_of[static_cast<size_t>(i)] == fold) z.push_back(oof[c][static_cast<size_t>(i)]);
    return z;
  };
  auto labels_of = [&](int fold) {
    std::vector<int64_t> y;
    for (int64_t i : scored)
      if (fold_of[static_cast<size_t>(i)] == fold) y.push_back(data.labels[static_cast<size_t>(i)]);
    return y;
  };

  // Calibration: Platt scaling (a temperature and a bias) on the clean out-of-fold logits.
  const nn::metrics::LogitCalibration calibration = nn::metrics::fit_platt_scaling(logits_of(0), labels);
  spec.temperature = calibration.temperature;
  spec.calibration_bias = calibration.bias;
  // Its honest error: each fold's predictions calibrated by the fit on the other folds' clean logits.
  std::vector<nn::metrics::LogitCalibration> cross_fitted;
  for (int k = 0; k < cfg.folds; ++k) {
    std::vector<double> z;
    std::vector<int64_t> y;
    for (int64_t i : scored)
      if (fold_of[static_cast<size_t>(i)] != k) {
        z.push_back(oof[0][static_cast<size_t>(i)]);
        y.push_back(data.labels[static_cast<size_t>(i)]);
      }
    cross_fitted.push_back(nn::metrics::fit_platt_scaling(z, y));
  }
  // Condition c's probabilities under those fits, in the order of `labels`.
  auto cross_calibrated = [&](size_t c) {
    std::vector<double> p;
    for (int64_t i : scored)
      p.push_back(cross_fitted[static_cast<size_t>(fold_of[static_cast<size_t>(i)])].probability(oof[c][static_cast<size_t>(i)]));
    return p;
  };

  // Threshold rules: each applied to the calibrated clean predictions or to those of every
  // condition pooled; the configured one is used, all are reported.
  std::vector<double> all_probs;
  std::vector<int64_t> all_labels;
  for (size_t c = 0; c < shifts.size(); ++c) {
    const std::vector<double> p = calibrated(logits_of(c), calibration);
    all_probs.insert(all_probs.end(), p.begin(), p.end());
    all_labels.insert(all_labels.end(), labels.begin(), labels.end());
  }
  auto threshold_for = [&](const RuleChoice& r) {
    const nn::metrics::ThresholdRule rule = nn::metrics::parse_threshold_rule(r.rule);
    return r.on == "clean" ? nn::metrics::choose_threshold(calibrated(logits_of(0), calibration), labels, rule)
                           : nn::metrics::choose_threshold(all_probs, all_labels, rule);
  };
  json candidates = json::array();
  for (const char* rule : {"sensitivity:0.95", "balanced", "youden"})
    for (const char* on : {"clean", "shifts"}) {
      const RuleChoice r{rule, on};
      const double t = threshold_for(r);
      double worst_balanced = 2, clean_sens = 0;
      json per = json::object();
      for (size_t c = 0; c < shifts.size(); ++c) {
        const nn::metrics::BinaryMetrics m = nn::metrics::binary_metrics(calibrated(logits_of(c), calibration), labels, t);
        worst_balanced = std::min(worst_balanced, (m.sensitivity + m.specificity) / 2);
        if (c == 0) clean_sens = m.sensitivity;
        per[shifts[c].name] = {{"sensitivity", m.sensitivity}, {"specificity", m.specificity}};
      }
      candidates.push_back({{"rule", r.rule}, {"on", r.on}, {"threshold", t}, {"clean_sensitivity", clean_sens},
                            {"worst_balanced_accuracy", worst_balanced}, {"conditions", per}});
    }
  const RuleChoice chosen{cfg.threshold_rule, cfg.threshold_on};
  spec.threshold = threshold_for(chosen);

  // ---- the protocol's table ----
  json conditions = json::object();
  double mean_auc = 0, mean_pooled_auc = 0, worst_balanced = 2;
  std::string worst_condition;
  std::printf("\nprotocol: %d folds by patient; pooled out-of-fold %zu images; calibration T %.3f, bias %.3f; "
              "threshold %.3f (%s)\n",
              cfg.folds, scored.size(), calibration.temperature, calibration.bias, spec.threshold, chosen.name().c_str());
  std::printf("%-16s %17s %17s %17s %7s %7s %8s\n", "condition", "AUC mean (sd)", "sensitivity", "specificity", "ECE",
              "ECE,cal", "refused");
  for (size_t c = 0; c < shifts.size(); ++c) {
    std::vector<double> aucs, sens, specs;
    for (int k = 0; k < cfg.folds; ++k) {
      const nn::metrics::BinaryMetrics m =
          nn::metrics::binary_metrics(calibrated(logits_of(c, k), calibration), labels_of(k), spec.threshold);
      aucs.push_back(m.auc);
      sens.push_back(m.sensitivity);
      specs.push_back(m.specificity);
    }
    const std::vector<double> p = calibrated(logits_of(c), calibration);
    const nn::metrics::BinaryMetrics pooled = nn::metrics::binary_metrics(p, labels, spec.threshold);
    const nn::metrics::Reliability before = nn::metrics::reliability(calibrated(logits_of(c), {}), labels);
    const nn::metrics::Reliability after = nn::metrics::reliability(p, labels);
    const nn::metrics::Reliability after_cross = nn::metrics::reliability(cross_calibrated(c), labels);
    // The gate's refusals of real X-rays (each by the fold model that did not train on it).
    int64_t refused = 0;
    for (int64_t i : scored) refused += oof_refused[c][static_cast<size_t>(i)];
    const double refused_fraction = static_cast<double>(refused) / static_cast<double>(scored.size());
    conditions[shifts[c].name] = {{"description", shifts[c].description},
                                  {"refused_by_gate", refused_fraction},
                                  {"auc", stats_json(aucs, pooled.auc)},
                                  {"sensitivity", stats_json(sens, pooled.sensitivity)},
                                  {"specificity", stats_json(specs, pooled.specificity)},
                                  {"ece_before_calibration", before.ece},
                                  {"ece", after.ece},
                                  {"ece_cross_fitted", after_cross.ece}};
    mean_auc += stats_of(aucs).mean / static_cast<double>(shifts.size());
    mean_pooled_auc += pooled.auc / static_cast<double>(shifts.size());
    const double balanced = (pooled.sensitivity + pooled.specificity) / 2;
    if (balanced < worst_balanced) worst_balanced = balanced, worst_condition = shifts[c].name;
    const Stats a = stats_of(aucs), se = stats_of(sens), sp = stats_of(specs);
    std::printf("%-16s %9.4f (%.4f) %9.4f (%.4f) %9.4f (%.4f) %7.4f %7.4f %7.2f%%\n", shifts[c].name.c_str(), a.mean,
                a.sd, se.mean, se.sd, sp.mean, sp.sd, before.ece, after_cross.ece, 100.0 * refused_fraction);
  }
  std::printf("mean AUC over the conditions %.4f (of the pooled predictions %.4f); worst balanced accuracy %.4f (%s)\n",
              mean_auc, mean_pooled_auc, worst_balanced, worst_condition.c_str());

  spec.members = cfg.folds;
  {
    // The out-of-fold logits, for analysis: (conditions, images), the labels and folds.
    std::vector<float> z;
    for (size_t c = 0; c < shifts.size(); ++c)
      for (int64_t i : scored) z.push_back(static_cast<float>(oof[c][static_cast<size_t>(i)]));
    std::vector<int64_t> fold_list;
    for (int64_t i : scored) fold_list.push_back(fold_of[static_cast<size_t>(i)]);
    std::vector<std::string> names;
    for (const auto& s : shifts) names.push_back(s.name);
    nn::io::save_safetensors((fs::path(out) / "oof.safetensors").string(),
                             {{"logits", nn::from_vector(z, {static_cast<int64_t>(shifts.size()), static_cast<int64_t>(scored.size())})},
                              {"labels", nn::from_vector(labels, {static_cast<int64_t>(labels.size())})},
                              {"folds", nn::from_vector(fold_list, {static_cast<int64_t>(fold_list.size())})}},
                             {{"conditions", json(names).dump()}});
  }

  // Charts: the mean curves over the folds, the pooled ROC, the reliability diagram.
  std::string charts_error;
  try {
    EpochCurves curves;
    size_t epochs = 0;
    for (const json& h : m.histories) epochs = std::max(epochs, h.size());
    for (size_t e = 0; e < epochs; ++e) {
      double tl = 0, vl = 0, ta = 0, va = 0, n = 0;
      for (const json& h : m.histories)
        if (e < h.size()) {
          tl += h[e]["train_loss"].get<double>(), vl += h[e]["val_loss"].get<double>();
          ta += h[e]["train_accuracy"].get<double>(), va += h[e]["val_accuracy"].get<double>(), n += 1;
        }
      curves.train_loss.push_back(tl / n);
      curves.val_loss.push_back(vl / n);
      curves.train_accuracy.push_back(ta / n);
      curves.val_accuracy.push_back(va / n);
    }
    plot_training_curves((fs::path(out) / "curves.png").string(), curves,
                         "VGG" + std::to_string(spec.depth) + (spec.batch_norm ? "-BN" : "") + ", mean of " +
                             std::to_string(cfg.folds) + " folds");
    const std::vector<double> p = calibrated(logits_of(0), calibration);
    const nn::metrics::RocCurve roc = nn::metrics::roc_curve(p, labels);
    const nn::metrics::BinaryMetrics at = nn::metrics::binary_metrics(p, labels, spec.threshold);
    plot_roc((fs::path(out) / "roc.png").string(), roc.fpr, roc.tpr, at.auc, 1.0 - at.specificity, at.sensitivity);
    const nn::metrics::Reliability before = nn::metrics::reliability(calibrated(logits_of(0), {}), labels);
    const nn::metrics::Reliability after = nn::metrics::reliability(p, labels);
    plot_reliability((fs::path(out) / "reliability.png").string(), before.confidence, before.fraction, before.ece,
                     after.confidence, after.fraction, after.ece);
  } catch (const nn::Error& e) {
    charts_error = e.what();
    std::fprintf(stderr, "pneumonia-train: warning: charts not written: %s\n", e.what());
  }

  json protocol = {{"folds", cfg.folds},
                   {"test_time_views", views.size() + 1},
                   {"images", scored.size()},
                   {"temperature", calibration.temperature},
                   {"calibration_bias", calibration.bias},
                   {"threshold", spec.threshold},
                   {"threshold_rule", chosen.rule},
                   {"threshold_on", chosen.on},
                   {"mean_auc", mean_auc},
                   {"mean_pooled_auc", mean_pooled_auc},
                   {"worst_balanced_accuracy", worst_balanced},
                   {"worst_condition", worst_condition},
                   {"conditions", conditions},
                   {"threshold_candidates", candidates}};
  if (!charts_error.empty()) protocol["charts_error"] = charts_error;
  run_files::save_json((fs::path(out) / "protocol.json").string(), protocol);
  return protocol;
}

}  // namespace

json cross_validate(const TrainConfig& config) {
  const auto t_start = std::chrono::steady_clock::now();
  TrainConfig cfg = with_defaults(config);
  if (cfg.threads > 0) nn::set_num_threads(cfg.threads);
  NN_CHECK(cfg.folds >= 2, "cross_validate: needs at least 2 folds, got ", cfg.folds);
  run_files::prepare(cfg.out);
  std::shared_ptr<const XrayData> data = XrayData::load(cfg);
  const std::vector<nn::data::Split> folds = nn::data::stratified_kfold(data->samples, cfg.folds, cfg.seed, !cfg.image_split);
  Members m = train_folds(cfg, data, folds);
  json protocol = evaluate_protocol(cfg, *data, folds, m, cfg.out);

  const std::string model_path = (fs::path(cfg.out) / "model.safetensors").string();
  std::vector<const nn::models::VGG*> raw;
  for (const auto& member : m.models) raw.push_back(member.get());
  const std::string rule = cfg.threshold_rule + (cfg.threshold_on == "clean" ? "" : " on shifts");
  // The ensemble's gate: every fold's detector and limit; the input limits the most permissive.
  OodGate gate = m.gates[0];
  gate.members.clear();
  bool every_fold_gated = true;
  for (const OodGate& g : m.gates) {
    gate.input.min_dynamic_range = std::min(gate.input.min_dynamic_range, g.input.min_dynamic_range);
    gate.input.min_contrast = std::min(gate.input.min_contrast, g.input.min_contrast);
    if (g.members.empty()) every_fold_gated = false;
    else gate.members.push_back(g.members[0]);
  }
  if (!every_fold_gated) {
    gate.members.clear();
    std::fprintf(stderr, "pneumonia-train: warning: a fold model has no feature detector (trained before the gate "
                 "existed): the ensemble's gate has only the input checks\n");
  }
  save_model(model_path, raw, m.spec, gate,
             {{"trained_on", cfg.data}, {"threshold_rule", rule},
              {"protocol_mean_auc", json(protocol["mean_auc"]).dump()},
              {"protocol_clean_auc", json(protocol["conditions"]["clean"]["auc"]["mean"]).dump()}});
  json summary = {{"config", cfg.to_json()},
                  {"model", json::parse(json(m.spec.to_metadata()).dump())},
                  {"threshold_rule", rule},
                  {"threshold", m.spec.threshold},
                  {"temperature", m.spec.temperature},
                  {"calibration_bias", m.spec.calibration_bias},
                  {"protocol", protocol},
                  {"epochs_per_fold", cfg.epochs},
                  {"total_seconds", seconds_since(t_start)},
                  {"peak_memory_mib", run_files::peak_rss_mib()},
                  {"threads", nn::get_num_threads()}};
  run_files::save_json((fs::path(cfg.out) / "summary.json").string(), summary);
  std::printf("wrote %s (an ensemble of %d), protocol.json, oof.safetensors, summary.json, curves.png, roc.png, "
              "reliability.png (total %s, peak memory %ld MiB)\n",
              model_path.c_str(), cfg.folds, run_files::format_duration(seconds_since(t_start)).c_str(),
              run_files::peak_rss_mib());
  return summary;
}

json rescore(const std::string& run, const std::string& out, const std::string& data_dir, int threads, bool tta) {
  const json saved = json::parse(std::ifstream(fs::path(run) / "summary.json"));
  NN_CHECK(saved.contains("config") && saved["config"].contains("folds"), run, "/summary.json: not a cross-validated run");
  const json& c = saved["config"];
  TrainConfig cfg;
  cfg.data = data_dir.empty() ? c["data"].get<std::string>() : data_dir;
  cfg.out = out;
  cfg.folds = c["folds"];
  cfg.seed = c["seed"];
  cfg.max_images = c["max_images"];
  cfg.image_size = c["image_size"];
  cfg.image_split = !c["patient_split"].get<bool>();
  cfg.threshold_rule = c["threshold_rule"];
  if (c.contains("threshold_on")) cfg.threshold_on = c["threshold_on"];
  cfg.threads = threads;
  cfg.tta = tta;
  if (threads > 0) nn::set_num_threads(threads);
  run_files::prepare(out);
  std::shared_ptr<const XrayData> data = XrayData::load(cfg);
  const std::vector<nn::data::Split> folds = nn::data::stratified_kfold(data->samples, cfg.folds, cfg.seed, !cfg.image_split);
  Members m;
  for (int k = 0; k < cfg.folds; ++k) load_fold(fold_dir(run, k), m);
  return evaluate_protocol(cfg, *data, folds, m, out);
}

}  // namespace pneumonia
