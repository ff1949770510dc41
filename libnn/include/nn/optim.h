// Optimizers (SGD, Adam, AdamW), learning-rate schedulers (StepLR, CosineAnnealingLR,
// ReduceLROnPlateau) and gradient clipping, in namespace nn::optim. Update rules, defaults and
// scheduler epoch counting follow PyTorch, so hyperparameters carry over unchanged.
//
// An optimizer holds one parameter group: the tensors it was given, one learning rate and one set
// of hyperparameters. Its state_dict() is a flat map of tensors, ready for safetensors:
//   "param_groups.<hyperparameter>"  0-d f64 (lr, momentum, beta1, ...; flags as 0/1)
//   "param_groups.num_params"        0-d f64, checked on load
//   "state.<i>.step"                 0-d f64, steps taken by parameter i (its index in the list)
//   "state.<i>.<buffer>"             momentum_buffer (SGD), exp_avg / exp_avg_sq (Adam)
// Loading it into an optimizer over the same parameters resumes training exactly.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nn/tensor.h"

namespace nn::optim {

using OptimizerState = std::map<std::string, Tensor>;

class Optimizer {
 public:
  Optimizer(std::vector<Tensor> params, double lr);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient (parameters whose grad is undefined are
  // skipped, their state untouched). Runs without recording autograd history.
  void step();
  // Clears the parameters' gradients: undefined when set_to_none, zero-filled otherwise.
  void zero_grad(bool set_to_none = true);

  double lr() const { return lr_; }
  void set_lr(double lr);
  const std::vector<Tensor>& params() const { return params_; }
  // Steps taken by parameter `index` (0 before its first update).
  int64_t step_count(size_t index) const;

  // Hyperparameters and per-parameter state (buffers are detached aliases, not copies).
  OptimizerState state_dict() const;
  // Validates everything (keys, parameter count, buffer shapes) before changing anything, then
  // restores hyperparameters and copies of the buffers onto each parameter's device and dtype.
  void load_state_dict(const OptimizerState& state);

 protected:
  struct ParamState {
    int64_t step = 0;
    std::map<std::string, Tensor> buffers;
  };

  // Updates one dense parameter in place from its dense gradient; state.step already counts this
  // update (1 on the first).
  virtual void update(Tensor& param, const Tensor& grad, ParamState& state) = 0;

  // The hyperparameters other than lr as the state dict sees them: name and value as a double
  // (flags as 0/1); set_hyperparameter() takes one of those names back.
  virtual std::vector<std::pair<std::string, double>> hyperparameters() const = 0;
  virtual void set_hyperparameter(const std::string& name, double value) = 0;
  // Errors when the hyperparameters are out of range (run after construction and after a load).
  virtual void check_options() const = 0;
  // The buffer names a parameter's state may hold.
  virtual std::vector<std::string> buffer_names() const = 0;

  std::vector<Tensor> params_;
  std::vector<ParamState> state_;
  double lr_;

 private:
  // The gradient of params_[index] as a dense tensor matching the parameter, or undefined when it
  // has none; errors when its shape, dtype or device differ.
  Tensor dense_grad(size_t index) const;
};

struct SgdOptions {
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;  // L2 penalty added to the gradient
  bool nesterov = false;      // needs momentum > 0 and dampening == 0
};

// g = grad + wd*p; with momentum: buf = g on the first step, else momentum*buf + (1-dampening)*g,
// and g = nesterov ? g + momentum*buf : buf; then p -= lr*g.
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, double lr, const SgdOptions& options = {});
  const SgdOptions& options() const { return options_; }

 protected:
  void update(Tensor& param, const Tensor& grad, ParamState& state) override;
  std::vector<std::pair<std::string, double>> hyperparameters() const override;
  void set_hyperparameter(const std::string& name, double value) override;
  void check_options() const override;
  std::vector<std::string> buffer_names() const override;

 private:
  SgdOptions options_;
};

struct AdamOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

// Adam with bias correction: m = b1*m + (1-b1)*g, v = b2*v + (1-b2)*g^2,
// p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). Adam adds weight_decay*p to the gradient
// (L2); AdamW instead decays the weight first, p *= 1 - lr*weight_decay.
class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, double lr = 1e-3, const AdamOptions& options = {});
  const AdamOptions& options() const { return options_; }
  bool decoupled_weight_decay() const { return decoupled_; }

 protected:
  Adam(std::vector<Tensor> params, double lr, const AdamOptions& options, bool decoupled);
  void update(Tensor& param, const Tensor& grad, ParamState& state) override;
  std::vector<std::pair<std::string, double>> hyperparameters() const override;
  void set_hyperparameter(const std::string& name, double value) override;
  void check_options() const override;
  std::vector<std::string> buffer_names() const override;

 private:
  AdamOptions options_;
  bool decoupled_;
};

// AdamW's default weight decay is 0.01, as PyTorch's.
inline AdamOptions adamw_defaults() {
  AdamOptions o;
  o.weight_decay = 0.01;
  return o;
}

class AdamW : public Adam {
 public:
  AdamW(std::vector<Tensor> params, double lr = 1e-3, const AdamOptions& options = adamw_defaults())
      : Adam(std::move(params), lr, options, true) {}
};

// ---- learning-rate schedulers ----
// Scheduler state is a map of doubles (small; ready for a checkpoint's metadata). Loading it does
// not touch the optimizer's lr: the optimizer's own state dict carries that.
using SchedulerState = std::map<std::string, double>;

// Schedulers with a closed form in the epoch: construction sets epoch 0's rate, each step()
// (called once after every epoch) advances last_epoch and sets that epoch's rate.
class LRScheduler {
 public:
  explicit LRScheduler(Optimizer& optimizer);
  virtual ~LRScheduler() = default;

  void step();
  // The rate of an epoch under this schedule.
  virtual double lr_at(int64_t epoch) const = 0;
  int64_t last_epoch() const { return last_epoch_; }
  double base_lr() const { return base_lr_; }
  double last_lr() const { return optimizer_.lr(); }

  // last_epoch, base_lr and the schedule's settings.
  SchedulerState state_dict() const;
  // Needs exactly the keys state_dict() gives; checks them all before changing anything.
  void load_state_dict(const SchedulerState& state);

 protected:
  // The schedule's own settings (step_size, gamma, ...) by name.
  virtual SchedulerState settings() const = 0;
  // Checks and takes the settings from a state holding every key of settings().
  virtual void load_settings(const SchedulerState& state) = 0;
  // Derived constructors call this once their settings are in place: it sets epoch 0's rate.
  void initialize() { optimizer_.set_lr(lr_at(last_epoch_)); }

  Optimizer& optimizer_;
  double base_lr_;
  int64_t last_epoch_ = 0;
};

// lr = base_lr * gamma^floor(epoch / step_size).
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);
  double lr_at(int64_t epoch) const override;

 protected:
  SchedulerState settings() const override;
  void load_settings(const SchedulerState& state) override;

 private:
  int64_t step_size_;
  double gamma_;
};

// lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2.
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t t_max, double eta_min = 0.0);
  double lr_at(int64_t epoch) const override;

 protected:
  SchedulerState settings() const override;
  void load_settings(const SchedulerState& state) override;

 private:
  int64_t t_max_;
  double eta_min_;
};

// A linear warm-up from base_lr / warmup to base_lr over the first `warmup` steps, then a cosine
// from base_lr down to eta_min at step `total` (and eta_min after it):
//   lr(t) = base_lr * (t + 1) / warmup                                         t < warmup
//   lr(t) = eta_min + (base_lr - eta_min) * (1 + cos(pi * (t - warmup) / (total - warmup))) / 2
// Meant to be stepped after every optimizer step (its "epoch" is the step count). warmup 0: none.
class WarmupCosineLR : public LRScheduler {
 public:
  WarmupCosineLR(Optimizer& optimizer, int64_t warmup, int64_t total, double eta_min = 0.0);
  double lr_at(int64_t step) const override;

 protected:
  SchedulerState settings() const override;
  void load_settings(const SchedulerState& state) override;

 private:
  int64_t warmup_, total_;
  double eta_min_;
};

struct PlateauOptions {
  enum class Mode { min, max };             // min: lower metric is better (a loss)
  enum class ThresholdMode { rel, abs };
  Mode mode = Mode::min;
  double factor = 0.1;                      // new lr = max(lr * factor, min_lr)
  int64_t patience = 10;                    // bad epochs tolerated before reducing
  double threshold = 1e-4;                  // what counts as an improvement
  ThresholdMode threshold_mode = ThresholdMode::rel;
  int64_t cooldown = 0;                     // epochs after a reduction during which bad epochs are not counted
  double min_lr = 0.0;
  double eps = 1e-8;                        // reductions smaller than this are skipped
};

// Reduces the rate by `factor` once the metric has not improved for more than `patience` epochs.
// Improvement (rel): metric < best*(1-threshold) in min mode, > best*(1+threshold) in max mode;
// (abs): metric < best-threshold / > best+threshold. A NaN metric counts as a bad epoch.
class ReduceLROnPlateau {
 public:
  explicit ReduceLROnPlateau(Optimizer& optimizer, const PlateauOptions& options = {});

  // Call once per epoch with the monitored metric (e.g. validation loss).
  void step(double metric);
  int64_t last_epoch() const { return last_epoch_; }
  double best() const { return best_; }
  int64_t num_bad_epochs() const { return num_bad_epochs_; }
  double last_lr() const { return optimizer_.lr(); }

  SchedulerState state_dict() const;
  void load_state_dict(const SchedulerState& state);

 private:
  bool is_better(double metric) const;
  Optimizer& optimizer_;
  PlateauOptions options_;
  double best_;
  int64_t num_bad_epochs_ = 0;
  int64_t cooldown_counter_ = 0;
  int64_t last_epoch_ = 0;
};

// ---- gradient clipping ----

// Scales the gradients of `params` in place so that their joint norm (norm_type = p >= 1, or
// INFINITY for the max-abs norm) is at most max_norm: each is multiplied by
// min(1, max_norm / (total + 1e-6)). Returns the total norm before clipping. Parameters without
// a gradient are skipped. When the total is NaN or infinite the gradients are left untouched and
// the value is returned as is, so the caller can skip the step (scaling would only spread NaNs).
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0);

}  // namespace nn::optim
