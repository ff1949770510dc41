// Optimizers: the shared parameter/state bookkeeping and state_dict round trip, SGD and Adam/AdamW
// steps (fused kernels from the kernel table, one call per parameter), and gradient clipping.
#include <algorithm>
#include <cmath>
#include <sstream>
#include <unordered_set>

#include "kernel_table.h"
#include "nn/autograd.h"
#include "nn/ops.h"
#include "nn/optim.h"

namespace nn::optim {

namespace {

Tensor scalar_state(double value) { return scalar_tensor(value, DType::f64); }

// The parameter must be dense because the update kernels write it as a flat array.
void check_dense_param(const Tensor& p, size_t index) {
  NN_CHECK(p.is_contiguous(), "optimizer: parameter ", index, " of shape ", shape_str(p.shape()),
           " is not contiguous; optimize a dense tensor (e.g. a module parameter), not a view");
}

// A fresh buffer shaped and placed like `param`, holding `src` (any float dtype/device).
Tensor copy_like(const Tensor& param, const Tensor& src) {
  Tensor out = empty(param.shape(), param.dtype(), param.device());
  out.copy_(src.detach());
  return out;
}

bool is_whole_number(double v) { return std::isfinite(v) && v >= 0 && v == std::floor(v); }

}  // namespace

// ---- Optimizer ----

Optimizer::Optimizer(std::vector<Tensor> params, double lr) : params_(std::move(params)), lr_(lr) {
  NN_CHECK(!params_.empty(), "optimizer: got an empty parameter list");
  NN_CHECK(std::isfinite(lr) && lr >= 0, "optimizer: learning rate must be finite and >= 0, got ", lr);
  std::unordered_set<const TensorImpl*> seen;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    NN_CHECK(p.defined(), "optimizer: parameter ", i, " is undefined");
    NN_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64, "optimizer: parameter ", i,
             " has dtype ", dtype_name(p.dtype()), "; optimizers update f32 or f64 tensors");
    NN_CHECK(p.is_leaf(), "optimizer: parameter ", i, " is the result of an op; optimize leaf tensors");
    NN_CHECK(seen.insert(p.impl()).second, "optimizer: parameter ", i,
             " appears twice in the list; each tensor may be stepped only once per step()");
  }
  state_.resize(params_.size());
}

void Optimizer::set_lr(double lr) {
  NN_CHECK(std::isfinite(lr) && lr >= 0, "optimizer: learning rate must be finite and >= 0, got ", lr);
  lr_ = lr;
}

int64_t Optimizer::step_count(size_t index) const {
  NN_CHECK(index < state_.size(), "optimizer: parameter index ", index, " out of range for ",
           state_.size(), " parameters");
  return state_[index].step;
}

void Optimizer::zero_grad(bool set_to_none) {
  for (const Tensor& p : params_) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (set_to_none) p.set_grad(Tensor());
    else g.zero_();
  }
}

void Optimizer::step() {
  NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor grad = dense_grad(i);
    if (!grad.defined()) continue;
    Tensor& param = params_[i];
    check_dense_param(param, i);
    ParamState& s = state_[i];
    ++s.step;
    update(param, grad, s);
    // The kernels write through raw pointers; the version counter must still see the write.
    param.storage()->bump_version();
  }
}

Tensor Optimizer::dense_grad(size_t index) const {
  const Tensor& p = params_[index];
  Tensor g = p.grad();
  if (!g.defined()) return g;
  NN_CHECK(g.shape() == p.shape(), "optimizer: gradient of parameter ", index, " has shape ",
           shape_str(g.shape()), ", the parameter ", shape_str(p.shape()));
  NN_CHECK(g.dtype() == p.dtype(), "optimizer: gradient of parameter ", index, " has dtype ",
           dtype_name(g.dtype()), ", the parameter ", dtype_name(p.dtype()));
  NN_CHECK(g.device() == p.device(), "optimizer: gradient of parameter ", index, " is on ", g.device(),
           ", the parameter on ", p.device());
  return g.contiguous();
}

OptimizerState Optimizer::state_dict() const {
  OptimizerState out;
  out["param_groups.lr"] = scalar_state(lr_);
  out["param_groups.num_params"] = scalar_state(static_cast<double>(params_.size()));
  for (const auto& [name, value] : hyperparameters()) out["param_groups." + name] = scalar_state(value);
  for (size_t i = 0; i < state_.size(); ++i) {
    const ParamState& s = state_[i];
    if (s.step == 0 && s.buffers.empty()) continue;  // never stepped: nothing to resume
    std::string prefix = "state." + std::to_string(i) + ".";
    out[prefix + "step"] = scalar_state(static_cast<double>(s.step));
    for (const auto& [name, buf] : s.buffers) out[prefix + name] = buf.detach();
  }
  return out;
}

void Optimizer::load_state_dict(const OptimizerState& state) {
  std::vector<std::string> problems;
  auto scalar_of = [&](const std::string& key, double& value) {
    auto it = state.find(key);
    if (it == state.end()) {
      problems.push_back("missing key '" + key + "'");
      return false;
    }
    if (!it->second.defined() || it->second.numel() != 1) {
      problems.push_back("'" + key + "' must be a one-element tensor");
      return false;
    }
    value = it->second.item<double>();
    return true;
  };

  double lr = 0, num_params = 0;
  if (scalar_of("param_groups.lr", lr) && !(std::isfinite(lr) && lr >= 0))
    problems.push_back("'param_groups.lr' is " + std::to_string(lr) + ", not a finite value >= 0");
  if (scalar_of("param_groups.num_params", num_params) && num_params != static_cast<double>(params_.size()))
    problems.push_back("the state is for " + std::to_string(static_cast<int64_t>(num_params)) +
                       " parameters, this optimizer has " + std::to_string(params_.size()));
  std::vector<std::pair<std::string, double>> hypers = hyperparameters();
  std::unordered_set<std::string> known{"param_groups.lr", "param_groups.num_params"};
  for (auto& [name, value] : hypers) {
    known.insert("param_groups." + name);
    scalar_of("param_groups." + name, value);
  }

  // Per-parameter state: "state.<index>.<step or buffer name>".
  const std::vector<std::string> buffer_list = buffer_names();
  std::vector<ParamState> new_state(params_.size());
  std::vector<std::unordered_set<std::string>> seen_buffers(params_.size());
  for (const auto& [key, t] : state) {
    if (known.count(key)) continue;
    size_t dot = key.find('.', 6);
    bool is_state = key.rfind("state.", 0) == 0 && dot != std::string::npos && dot > 6;
    std::string index_text = is_state ? key.substr(6, dot - 6) : "";
    std::string field = is_state ? key.substr(dot + 1) : "";
    bool digits = !index_text.empty() && index_text.size() < 10 &&
                  index_text.find_first_not_of("0123456789") == std::string::npos;
    size_t index = digits ? std::stoul(index_text) : 0;
    bool is_buffer = std::find(buffer_list.begin(), buffer_list.end(), field) != buffer_list.end();
    if (!is_state || !digits || index >= params_.size() || (field != "step" && !is_buffer)) {
      problems.push_back("unexpected key '" + key + "'");
      continue;
    }
    const Tensor& p = params_[index];
    if (!t.defined() || !is_floating(t.dtype())) {
      problems.push_back("'" + key + "' must be a floating-point tensor");
    } else if (field == "step") {
      double step = t.numel() == 1 ? t.item<double>() : -1;
      if (!is_whole_number(step)) problems.push_back("'" + key + "' must hold a whole number >= 0");
      else new_state[index].step = static_cast<int64_t>(step);
    } else if (t.shape() != p.shape()) {
      problems.push_back("'" + key + "' has shape " + shape_str(t.shape()) + ", parameter " +
                         std::to_string(index) + " has shape " + shape_str(p.shape()));
    } else {
      seen_buffers[index].insert(field);
      new_state[index].buffers[field] = t;  // copied below, once everything checked out
    }
  }
  // A parameter's buffers come as a set (Adam needs both moments), or not at all.
  for (size_t i = 0; i < params_.size(); ++i)
    if (!seen_buffers[i].empty() && seen_buffers[i].size() != buffer_list.size())
      problems.push_back("parameter " + std::to_string(i) + " has only some of its state buffers");

  if (problems.empty()) {
    // Range checks on the loaded hyperparameters: apply them, check, and put the old ones back
    // when they do not hold.
    std::vector<std::pair<std::string, double>> previous = hyperparameters();
    for (const auto& [name, value] : hypers) set_hyperparameter(name, value);
    try {
      check_options();
    } catch (const Error& e) {
      for (const auto& [name, value] : previous) set_hyperparameter(name, value);
      problems.push_back(std::string("hyperparameters out of range: ") + e.what());
    }
  }
  if (!problems.empty()) {
    std::ostringstream msg;
    msg << "optimizer load_state_dict: " << problems.size()
        << (problems.size() == 1 ? " problem" : " problems") << ", nothing was loaded:";
    for (const auto& p : problems) msg << "\n  " << p;
    NN_CHECK(false, msg.str());
  }

  NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i)
    for (auto& [name, buf] : new_state[i].buffers) buf = copy_like(params_[i], buf);
  lr_ = lr;
  state_ = std::move(new_state);
}

// ---- SGD ----

SGD::SGD(std::vector<Tensor> params, double lr, const SgdOptions& options)
    : Optimizer(std::move(params), lr), options_(options) {
  check_options();
}

void SGD::check_options() const {
  const SgdOptions& o = options_;
  NN_CHECK(std::isfinite(o.momentum) && o.momentum >= 0, "SGD: momentum must be >= 0, got ", o.momentum);
  NN_CHECK(std::isfinite(o.dampening), "SGD: dampening must be finite, got ", o.dampening);
  NN_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0, "SGD: weight_decay must be >= 0, got ",
           o.weight_decay);
  NN_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
           "SGD: Nesterov momentum needs momentum > 0 and dampening == 0");
}

std::vector<std::pair<std::string, double>> SGD::hyperparameters() const {
  return {{"momentum", options_.momentum},
          {"dampening", options_.dampening},
          {"weight_decay", options_.weight_decay},
          {"nesterov", options_.nesterov ? 1.0 : 0.0}};
}

void SGD::set_hyperparameter(const std::string& name, double value) {
  if (name == "momentum") options_.momentum = value;
  else if (name == "dampening") options_.dampening = value;
  else if (name == "weight_decay") options_.weight_decay = value;
  else if (name == "nesterov") options_.nesterov = value != 0.0;
  else NN_ASSERT(false, "SGD has no hyperparameter ", name);
}

std::vector<std::string> SGD::buffer_names() const { return {"momentum_buffer"}; }

void SGD::update(Tensor& param, const Tensor& grad, ParamState& state) {
  SgdStepParams sp{lr_, options_.momentum, options_.dampening, options_.weight_decay, options_.nesterov,
                   false};
  Tensor buf;
  if (options_.momentum != 0.0) {
    auto it = state.buffers.find("momentum_buffer");
    sp.first_step = it == state.buffers.end();
    buf = sp.first_step ? empty_like(param) : it->second;
  }
  if (param.numel() > 0) NN_DISPATCH(sgd_step, param.device())(param, grad, buf, sp);
  if (buf.defined()) {
    buf.storage()->bump_version();
    state.buffers["momentum_buffer"] = buf;
  }
}

// ---- Adam / AdamW ----

Adam::Adam(std::vector<Tensor> params, double lr, const AdamOptions& options)
    : Adam(std::move(params), lr, options, false) {}

Adam::Adam(std::vector<Tensor> params, double lr, const AdamOptions& options, bool decoupled)
    : Optimizer(std::move(params), lr), options_(options), decoupled_(decoupled) {
  check_options();
}

void Adam::check_options() const {
  const AdamOptions& o = options_;
  NN_CHECK(o.beta1 >= 0 && o.beta1 < 1, "Adam: beta1 must be in [0, 1), got ", o.beta1);
  NN_CHECK(o.beta2 >= 0 && o.beta2 < 1, "Adam: beta2 must be in [0, 1), got ", o.beta2);
  NN_CHECK(std::isfinite(o.eps) && o.eps >= 0, "Adam: eps must be >= 0, got ", o.eps);
  NN_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0, "Adam: weight_decay must be >= 0, got ",
           o.weight_decay);
}

std::vector<std::pair<std::string, double>> Adam::hyperparameters() const {
  return {{"beta1", options_.beta1},
          {"beta2", options_.beta2},
          {"eps", options_.eps},
          {"weight_decay", options_.weight_decay},
          {"decoupled_weight_decay", decoupled_ ? 1.0 : 0.0}};
}

void Adam::set_hyperparameter(const std::string& name, double value) {
  if (name == "beta1") options_.beta1 = value;
  else if (name == "beta2") options_.beta2 = value;
  else if (name == "eps") options_.eps = value;
  else if (name == "weight_decay") options_.weight_decay = value;
  else if (name == "decoupled_weight_decay") decoupled_ = value != 0.0;
  else NN_ASSERT(false, "Adam has no hyperparameter ", name);
}

std::vector<std::string> Adam::buffer_names() const { return {"exp_avg", "exp_avg_sq"}; }

void Adam::update(Tensor& param, const Tensor& grad, ParamState& state) {
  AdamStepParams ap{lr_, options_.beta1, options_.beta2, options_.eps, options_.weight_decay, decoupled_,
                    state.step};
  auto m_it = state.buffers.find("exp_avg");
  auto v_it = state.buffers.find("exp_avg_sq");
  Tensor exp_avg = m_it != state.buffers.end() ? m_it->second : zeros_like(param);
  Tensor exp_avg_sq = v_it != state.buffers.end() ? v_it->second : zeros_like(param);
  if (param.numel() > 0) NN_DISPATCH(adam_step, param.device())(param, grad, exp_avg, exp_avg_sq, ap);
  exp_avg.storage()->bump_version();
  exp_avg_sq.storage()->bump_version();
  state.buffers["exp_avg"] = exp_avg;
  state.buffers["exp_avg_sq"] = exp_avg_sq;
}

// ---- gradient clipping ----

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type) {
  NN_CHECK(max_norm >= 0, "clip_grad_norm_: max_norm must be >= 0, got ", max_norm);
  NN_CHECK(norm_type > 0, "clip_grad_norm_: norm_type must be > 0 (or INFINITY), got ", norm_type);
  NoGradGuard no_grad;
  std::vector<Tensor> grads;
  for (const Tensor& p : params) {
    NN_CHECK(p.defined(), "clip_grad_norm_: got an undefined parameter");
    Tensor g = p.grad();
    if (g.defined() && g.numel() > 0) grads.push_back(g);
  }
  if (grads.empty()) return 0.0;

  // Per-tensor reductions on the tensor's device, combined on the host in double.
  double total = 0.0;
  if (std::isinf(norm_type)) {
    for (const Tensor& g : grads) {
      double m = max(abs(g)).item<double>();  // NaN when g holds one (the max kernel keeps NaN)
      total = std::isnan(m) || std::isnan(total) ? NAN : std::max(total, m);
    }
  } else {
    double acc = 0.0;
    for (const Tensor& g : grads) {
      if (norm_type == 2.0) acc += sum(g * g).item<double>();
      else if (norm_type == 1.0) acc += sum(abs(g)).item<double>();
      else acc += sum(pow(abs(g), norm_type)).item<double>();
    }
    total = std::pow(acc, 1.0 / norm_type);
  }
  if (!std::isfinite(total)) return total;
  const double clip_coef = max_norm / (total + 1e-6);
  if (clip_coef < 1.0)
    for (Tensor& g : grads) g.mul_(clip_coef);
  return total;
}

}  // namespace nn::optim
