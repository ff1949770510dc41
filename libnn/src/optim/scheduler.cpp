// Learning-rate schedulers: StepLR and CosineAnnealingLR in closed form of the epoch, and
// ReduceLROnPlateau driven by a metric; each with a state_dict of doubles.
#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "nn/optim.h"

namespace nn::optim {

namespace {

// One error listing every missing and unexpected key, so a wrong file is diagnosed in one go.
void check_keys(const SchedulerState& state, const SchedulerState& expected, const char* who) {
  std::vector<std::string> problems;
  for (const auto& entry : expected)
    if (!state.count(entry.first)) problems.push_back("missing key '" + entry.first + "'");
  for (const auto& entry : state)
    if (!expected.count(entry.first)) problems.push_back("unexpected key '" + entry.first + "'");
  if (problems.empty()) return;
  std::ostringstream msg;
  msg << who << " load_state_dict: nothing was loaded:";
  for (const auto& p : problems) msg << "\n  " << p;
  NN_CHECK(false, msg.str());
}

int64_t whole_number(const SchedulerState& state, const char* key, int64_t min, const char* who) {
  double v = state.at(key);
  NN_CHECK(std::isfinite(v) && v == std::floor(v) && v >= static_cast<double>(min), who,
           " load_state_dict: '", key, "' must be a whole number >= ", min, ", got ", v);
  return static_cast<int64_t>(v);
}

}  // namespace

// ---- LRScheduler ----

LRScheduler::LRScheduler(Optimizer& optimizer) : optimizer_(optimizer), base_lr_(optimizer.lr()) {}

void LRScheduler::step() {
  ++last_epoch_;
  optimizer_.set_lr(lr_at(last_epoch_));
}

SchedulerState LRScheduler::state_dict() const {
  SchedulerState s = settings();
  s["last_epoch"] = static_cast<double>(last_epoch_);
  s["base_lr"] = base_lr_;
  return s;
}

void LRScheduler::load_state_dict(const SchedulerState& state) {
  check_keys(state, state_dict(), "scheduler");
  double base_lr = state.at("base_lr");
  NN_CHECK(std::isfinite(base_lr) && base_lr >= 0, "scheduler load_state_dict: base_lr must be >= 0, got ",
           base_lr);
  int64_t last_epoch = whole_number(state, "last_epoch", 0, "scheduler");
  load_settings(state);
  last_epoch_ = last_epoch;
  base_lr_ = base_lr;
}

// ---- StepLR ----

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRScheduler(optimizer), step_size_(step_size), gamma_(gamma) {
  NN_CHECK(step_size > 0, "StepLR: step_size must be positive, got ", step_size);
  NN_CHECK(std::isfinite(gamma) && gamma >= 0, "StepLR: gamma must be >= 0, got ", gamma);
  initialize();
}

double StepLR::lr_at(int64_t epoch) const {
  return base_lr_ * std::pow(gamma_, static_cast<double>(epoch / step_size_));
}

SchedulerState StepLR::settings() const {
  return {{"step_size", static_cast<double>(step_size_)}, {"gamma", gamma_}};
}

void StepLR::load_settings(const SchedulerState& state) {
  int64_t step_size = whole_number(state, "step_size", 1, "StepLR");
  double gamma = state.at("gamma");
  NN_CHECK(std::isfinite(gamma) && gamma >= 0, "StepLR load_state_dict: gamma must be >= 0, got ", gamma);
  step_size_ = step_size;
  gamma_ = gamma;
}

// ---- CosineAnnealingLR ----

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t t_max, double eta_min)
    : LRScheduler(optimizer), t_max_(t_max), eta_min_(eta_min) {
  NN_CHECK(t_max > 0, "CosineAnnealingLR: T_max must be positive, got ", t_max);
  NN_CHECK(std::isfinite(eta_min) && eta_min >= 0, "CosineAnnealingLR: eta_min must be >= 0, got ", eta_min);
  initialize();
}

double CosineAnnealingLR::lr_at(int64_t epoch) const {
  const double pi = 3.14159265358979323846;
  double phase = pi * static_cast<double>(epoch) / static_cast<double>(t_max_);
  return eta_min_ + (base_lr_ - eta_min_) * (1.0 + std::cos(phase)) / 2.0;
}

SchedulerState CosineAnnealingLR::settings() const {
  return {{"T_max", static_cast<double>(t_max_)}, {"eta_min", eta_min_}};
}

void CosineAnnealingLR::load_settings(const SchedulerState& state) {
  int64_t t_max = whole_number(state, "T_max", 1, "CosineAnnealingLR");
  double eta_min = state.at("eta_min");
  NN_CHECK(std::isfinite(eta_min) && eta_min >= 0, "CosineAnnealingLR load_state_dict: eta_min must be >= 0, got ",
           eta_min);
  t_max_ = t_max;
  eta_min_ = eta_min;
}

// ---- WarmupCosineLR ----

WarmupCosineLR::WarmupCosineLR(Optimizer& optimizer, int64_t warmup, int64_t total, double eta_min)
    : LRScheduler(optimizer), warmup_(warmup), total_(total), eta_min_(eta_min) {
  NN_CHECK(warmup >= 0 && total > warmup, "WarmupCosineLR: need 0 <= warmup < total, got warmup ", warmup,
           ", total ", total);
  NN_CHECK(std::isfinite(eta_min) && eta_min >= 0, "WarmupCosineLR: eta_min must be >= 0, got ", eta_min);
  initialize();
}

double WarmupCosineLR::lr_at(int64_t step) const {
  if (step < warmup_) return base_lr_ * static_cast<double>(step + 1) / static_cast<double>(warmup_);
  const double pi = 3.14159265358979323846;
  const double progress = std::min(1.0, static_cast<double>(step - warmup_) / static_cast<double>(total_ - warmup_));
  return eta_min_ + (base_lr_ - eta_min_) * (1.0 + std::cos(pi * progress)) / 2.0;
}

SchedulerState WarmupCosineLR::settings() const {
  return {{"warmup", static_cast<double>(warmup_)}, {"total", static_cast<double>(total_)}, {"eta_min", eta_min_}};
}

void WarmupCosineLR::load_settings(const SchedulerState& state) {
  const int64_t warmup = whole_number(state, "warmup", 0, "WarmupCosineLR");
  const int64_t total = whole_number(state, "total", 1, "WarmupCosineLR");
  const double eta_min = state.at("eta_min");
  NN_CHECK(total > warmup, "WarmupCosineLR load_state_dict: total (", total, ") must exceed warmup (", warmup, ")");
  NN_CHECK(std::isfinite(eta_min) && eta_min >= 0, "WarmupCosineLR load_state_dict: eta_min must be >= 0, got ",
           eta_min);
  warmup_ = warmup;
  total_ = total;
  eta_min_ = eta_min;
}

// ---- ReduceLROnPlateau ----

ReduceLROnPlateau::ReduceLROnPlateau(Optimizer& optimizer, const PlateauOptions& options)
    : optimizer_(optimizer), options_(options) {
  const PlateauOptions& o = options_;
  NN_CHECK(o.factor >= 0 && o.factor < 1, "ReduceLROnPlateau: factor must be in [0, 1), got ", o.factor);
  NN_CHECK(o.patience >= 0, "ReduceLROnPlateau: patience must be >= 0, got ", o.patience);
  NN_CHECK(o.cooldown >= 0, "ReduceLROnPlateau: cooldown must be >= 0, got ", o.cooldown);
  NN_CHECK(std::isfinite(o.threshold) && o.threshold >= 0, "ReduceLROnPlateau: threshold must be >= 0, got ",
           o.threshold);
  NN_CHECK(std::isfinite(o.min_lr) && o.min_lr >= 0, "ReduceLROnPlateau: min_lr must be >= 0, got ", o.min_lr);
  // The worst possible value, so that the first metric is always an improvement.
  best_ = o.mode == PlateauOptions::Mode::min ? std::numeric_limits<double>::infinity()
                                               : -std::numeric_limits<double>::infinity();
}

bool ReduceLROnPlateau::is_better(double metric) const {
  const bool rel = options_.threshold_mode == PlateauOptions::ThresholdMode::rel;
  const double t = options_.threshold;
  if (options_.mode == PlateauOptions::Mode::min) return metric < (rel ? best_ * (1.0 - t) : best_ - t);
  return metric > (rel ? best_ * (1.0 + t) : best_ + t);
}

void ReduceLROnPlateau::step(double metric) {
  ++last_epoch_;
  if (is_better(metric)) {
    best_ = metric;
    num_bad_epochs_ = 0;
  } else {
    ++num_bad_epochs_;
  }
  if (cooldown_counter_ > 0) {  // right after a reduction bad epochs do not count
    --cooldown_counter_;
    num_bad_epochs_ = 0;
  }
  if (num_bad_epochs_ > options_.patience) {
    double old_lr = optimizer_.lr();
    double new_lr = std::max(old_lr * options_.factor, options_.min_lr);
    if (old_lr - new_lr > options_.eps) optimizer_.set_lr(new_lr);
    cooldown_counter_ = options_.cooldown;
    num_bad_epochs_ = 0;
  }
}

SchedulerState ReduceLROnPlateau::state_dict() const {
  const PlateauOptions& o = options_;
  return {{"mode", o.mode == PlateauOptions::Mode::min ? 0.0 : 1.0},
          {"factor", o.factor},
          {"patience", static_cast<double>(o.patience)},
          {"threshold", o.threshold},
          {"threshold_mode", o.threshold_mode == PlateauOptions::ThresholdMode::rel ? 0.0 : 1.0},
          {"cooldown", static_cast<double>(o.cooldown)},
          {"min_lr", o.min_lr},
          {"eps", o.eps},
          {"best", best_},
          {"num_bad_epochs", static_cast<double>(num_bad_epochs_)},
          {"cooldown_counter", static_cast<double>(cooldown_counter_)},
          {"last_epoch", static_cast<double>(last_epoch_)}};
}

void ReduceLROnPlateau::load_state_dict(const SchedulerState& state) {
  const char* who = "ReduceLROnPlateau";
  check_keys(state, state_dict(), who);
  PlateauOptions o;
  o.mode = state.at("mode") == 0.0 ? PlateauOptions::Mode::min : PlateauOptions::Mode::max;
  o.factor = state.at("factor");
  o.patience = whole_number(state, "patience", 0, who);
  o.threshold = state.at("threshold");
  o.threshold_mode = state.at("threshold_mode") == 0.0 ? PlateauOptions::ThresholdMode::rel
                                                        : PlateauOptions::ThresholdMode::abs;
  o.cooldown = whole_number(state, "cooldown", 0, who);
  o.min_lr = state.at("min_lr");
  o.eps = state.at("eps");
  NN_CHECK(o.factor >= 0 && o.factor < 1, who, " load_state_dict: factor must be in [0, 1), got ", o.factor);
  int64_t bad = whole_number(state, "num_bad_epochs", 0, who);
  int64_t cooldown = whole_number(state, "cooldown_counter", 0, who);
  int64_t epoch = whole_number(state, "last_epoch", 0, who);
  options_ = o;
  best_ = state.at("best");
  num_bad_epochs_ = bad;
  cooldown_counter_ = cooldown;
  last_epoch_ = epoch;
}

}  // namespace nn::optim
