// Module: registration, traversal with dotted names, mode switches, in-place device/dtype moves,
// state_dict / load_state_dict with all-or-nothing validation, and tree printing.
#include "nn/module.h"

#include <algorithm>
#include <ostream>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "nn/autograd.h"

namespace nn {

namespace {

// Active EvalModeGuard scopes on this thread.
thread_local int eval_mode_scopes = 0;

std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// Re-points `t` at a copy of its data on `device` with `dtype`. The TensorImpl stays the same
// object, so every handle on it (a layer's member, the optimizer's list, the autograd leaf
// accumulator) sees the moved tensor; that is what "in place" means for a module move.
void relocate(const Tensor& t, Device device, DType dtype) {
  TensorImpl* impl = t.impl();
  if (t.device() == device && t.dtype() == dtype) return;
  Tensor moved = t.detach().to(device).to(dtype).contiguous();
  impl->storage = moved.storage();
  impl->strides = moved.strides();
  impl->offset = moved.offset();
  impl->dtype = moved.dtype();
  if (impl->grad) {
    Tensor grad(impl->grad);
    impl->grad = grad.to(device).to(dtype).contiguous().impl_ptr();
  }
}

// Floating tensors convert into floating tensors (f64/f16/bf16 checkpoints into f32 models);
// anything else must match exactly (an integer buffer loaded from floats is a wrong file).
bool dtype_convertible(DType from, DType to) {
  return from == to || (is_floating(from) && is_floating(to));
}

bool same_view(const Tensor& a, const Tensor& b) {
  return a.storage() == b.storage() && a.offset() == b.offset() && a.shape() == b.shape() &&
         a.strides() == b.strides() && a.dtype() == b.dtype();
}

std::string indent_lines(const std::string& text, const std::string& pad) {
  std::string out;
  for (char c : text) {
    out += c;
    if (c == '\n') out += pad;
  }
  return out;
}

}  // namespace

Tensor Module::forward(const Tensor&) {
  NN_CHECK(false, name(), " has no forward(); override Module::forward in the derived class");
}

// ---- registration ----

void Module::check_new_name(const std::string& name, const char* what) const {
  NN_CHECK(!name.empty(), this->name(), ": ", what, " name must not be empty");
  NN_CHECK(name.find('.') == std::string::npos, this->name(), ": ", what, " name '", name,
           "' must not contain '.' (dots separate the levels of a dotted name)");
  auto taken = [&name](const auto& list) {
    for (const auto& entry : list)
      if (entry.first == name) return true;
    return false;
  };
  NN_CHECK(!taken(parameters_) && !taken(buffers_) && !taken(modules_), this->name(), ": ", what,
           " name '", name, "' is already used by a parameter, buffer or submodule of this module");
}

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  check_new_name(name, "parameter");
  NN_CHECK(value.defined(), this->name(), ": parameter '", name, "' is an undefined tensor");
  NN_CHECK(is_floating(value.dtype()), this->name(), ": parameter '", name,
           "' must be floating point, got ", dtype_name(value.dtype()));
  NN_CHECK(value.is_leaf(), this->name(), ": parameter '", name,
           "' is the result of an op; register value.detach() instead");
  value.requires_grad_(true);
  parameters_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  check_new_name(name, "buffer");
  NN_CHECK(value.defined(), this->name(), ": buffer '", name, "' is an undefined tensor");
  buffers_.emplace_back(name, value);
  return value;
}

void Module::add_module(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name, "submodule");
  NN_CHECK(module != nullptr, this->name(), ": submodule '", name, "' is null");
  NN_CHECK(module.get() != this, this->name(), ": a module cannot be its own submodule");
  modules_.emplace_back(name, std::move(module));
}

void Module::swap_module(const std::string& name, std::shared_ptr<Module> module) {
  NN_CHECK(module != nullptr, this->name(), ": replacement for submodule '", name, "' is null");
  NN_CHECK(module.get() != this, this->name(), ": a module cannot be its own submodule");
  for (auto& entry : modules_) {
    if (entry.first == name) {
      entry.second = std::move(module);
      return;
    }
  }
  NN_CHECK(false, this->name(), ": no submodule named '", name, "' to replace");
}

// ---- traversal ----

void Module::collect_tensors(TensorList Module::*list, const std::string& prefix, bool recurse,
                             TensorList& out) const {
  for (const auto& [name, t] : this->*list) out.emplace_back(join_name(prefix, name), t);
  if (!recurse) return;
  for (const auto& [name, m] : modules_) m->collect_tensors(list, join_name(prefix, name), true, out);
}

static std::vector<std::pair<std::string, Tensor>> without_repeats(
    std::vector<std::pair<std::string, Tensor>> all) {
  std::unordered_set<const TensorImpl*> seen;
  std::vector<std::pair<std::string, Tensor>> out;
  out.reserve(all.size());
  for (auto& entry : all)
    if (seen.insert(entry.second.impl()).second) out.push_back(std::move(entry));
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(bool recurse) const {
  TensorList all;
  collect_tensors(&Module::parameters_, "", recurse, all);
  return without_repeats(std::move(all));
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& entry : named_parameters(recurse)) out.push_back(entry.second);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(bool recurse) const {
  TensorList all;
  collect_tensors(&Module::buffers_, "", recurse, all);
  return without_repeats(std::move(all));
}

std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& entry : named_buffers(recurse)) out.push_back(entry.second);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const {
  return modules_;
}

std::vector<std::shared_ptr<Module>> Module::children() const {
  std::vector<std::shared_ptr<Module>> out;
  for (const auto& entry : modules_) out.push_back(entry.second);
  return out;
}

void Module::collect_modules(const std::string& prefix, std::vector<std::pair<std::string, Module*>>& out) {
  out.emplace_back(prefix, this);
  for (const auto& [name, m] : modules_) m->collect_modules(join_name(prefix, name), out);
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out;
  collect_modules("", out);
  return out;
}

void Module::apply(const std::function<void(Module&)>& fn) {
  for (const auto& entry : modules_) entry.second->apply(fn);
  fn(*this);
}

// ---- mode and placement ----

bool Module::is_training() const { return training_ && eval_mode_scopes == 0; }

EvalModeGuard::EvalModeGuard() { ++eval_mode_scopes; }
EvalModeGuard::~EvalModeGuard() { --eval_mode_scopes; }

void Module::train(bool on) {
  training_ = on;
  for (const auto& entry : modules_) entry.second->train(on);
}

void Module::to(Device device) {
  for (const Tensor& t : parameters()) relocate(t, device, t.dtype());
  for (const Tensor& t : buffers()) relocate(t, device, t.dtype());
}

void Module::to(DType dtype) {
  NN_CHECK(is_floating(dtype), name(), ".to(", dtype_name(dtype),
           "): modules convert to floating dtypes only");
  for (const Tensor& t : parameters()) relocate(t, t.device(), dtype);
  for (const Tensor& t : buffers())
    if (is_floating(t.dtype())) relocate(t, t.device(), dtype);
}

void Module::zero_grad(bool set_to_none) {
  for (const Tensor& p : parameters()) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (set_to_none) p.set_grad(Tensor());
    else g.zero_();
  }
}

void Module::set_requires_grad(bool on) {
  for (Tensor p : parameters()) p.requires_grad_(on);
}

int64_t Module::num_parameters(bool trainable_only) const {
  int64_t n = 0;
  for (const Tensor& p : parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

// ---- checkpoints ----

void Module::collect_state(const std::string& prefix, StateDict& out) const {
  for (const auto& [name, t] : parameters_) out.emplace_back(join_name(prefix, name), t.detach());
  for (const auto& [name, t] : buffers_) out.emplace_back(join_name(prefix, name), t.detach());
  for (const auto& [name, m] : modules_) m->collect_state(join_name(prefix, name), out);
}

StateDict Module::state_dict() const {
  StateDict out;
  collect_state("", out);
  return out;
}

LoadStateDictResult Module::load_state_dict(const StateDict& state, bool strict) {
  const StateDict own = state_dict();
  std::unordered_map<std::string, const Tensor*> given;
  std::vector<std::string> problems;
  std::set<std::string> duplicates;
  for (const auto& [key, t] : state)
    if (!given.emplace(key, &t).second && duplicates.insert(key).second)
      problems.push_back("duplicate key '" + key + "'");

  LoadStateDictResult result;
  std::vector<std::pair<Tensor, Tensor>> copies;  // (destination, source)
  std::unordered_set<std::string> known;
  for (const auto& [key, dst] : own) {
    known.insert(key);
    auto it = given.find(key);
    if (it == given.end()) {
      result.missing_keys.push_back(key);
      continue;
    }
    const Tensor& src = *it->second;
    if (!src.defined()) {
      problems.push_back("undefined tensor for '" + key + "'");
    } else if (src.shape() != dst.shape()) {
      problems.push_back("shape mismatch for '" + key + "': the model has " + shape_str(dst.shape()) +
                         ", the state dict " + shape_str(src.shape()));
    } else if (!dtype_convertible(src.dtype(), dst.dtype())) {
      problems.push_back("dtype mismatch for '" + key + "': the model has " + dtype_name(dst.dtype()) +
                         ", the state dict " + dtype_name(src.dtype()) + " (not convertible)");
    } else {
      copies.emplace_back(dst, src);
    }
  }
  std::unordered_set<std::string> reported;
  for (const auto& entry : state)
    if (!known.count(entry.first) && reported.insert(entry.first).second)
      result.unexpected_keys.push_back(entry.first);

  if (strict) {
    for (const auto& key : result.missing_keys) problems.push_back("missing key '" + key + "'");
    for (const auto& key : result.unexpected_keys) problems.push_back("unexpected key '" + key + "'");
  }
  if (!problems.empty()) {
    std::ostringstream msg;
    msg << name() << ".load_state_dict: " << problems.size()
        << (problems.size() == 1 ? " problem" : " problems") << ", nothing was loaded:";
    for (const auto& p : problems) msg << "\n  " << p;
    NN_CHECK(false, msg.str());
  }

  // A source that aliases some other destination (e.g. this module's own tensors under other
  // names) is copied out first, so the order of the writes cannot change what is read.
  std::unordered_set<const Storage*> destinations;
  for (const auto& c : copies) destinations.insert(c.first.storage().get());
  NoGradGuard no_grad;
  for (auto& [dst, src] : copies)
    if (destinations.count(src.storage().get()) && !same_view(dst, src)) src = src.clone();
  for (auto& [dst, src] : copies)
    if (!same_view(dst, src)) dst.copy_(src);
  return result;
}

LoadStateDictResult Module::load_state_dict(const std::map<std::string, Tensor>& state, bool strict) {
  return load_state_dict(StateDict(state.begin(), state.end()), strict);
}

// ---- printing ----

std::string Module::str() const { return name() + "(" + extra_repr() + ")"; }

std::string Module::to_string() const {
  if (modules_.empty()) return str();
  std::string out = name() + "(\n";
  std::string extra = extra_repr();
  if (!extra.empty()) out += "  " + indent_lines(extra, "  ") + "\n";
  for (const auto& [name, m] : modules_)
    out += "  (" + name + "): " + indent_lines(m->to_string(), "  ") + "\n";
  return out + ")";
}

std::ostream& operator<<(std::ostream& out, const Module& module) { return out << module.to_string(); }

}  // namespace nn
