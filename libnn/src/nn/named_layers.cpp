// Named layers (nn/named_layers.h): running a chain of steps over a range of named layers, with
// the Conv2d + ReLU fusion and this thread's forward hooks; Module::operator() (forward + hooks).
#include "nn/named_layers.h"

#include <algorithm>
#include <memory>

#include "nn/error.h"
#include "nn/layers.h"

namespace nn {

namespace {

// This thread's hooks, in the order they were set (ForwardHooks scopes push and pop them).
thread_local std::vector<std::pair<const Module*, OutputHook>> thread_hooks;

bool has_hook(const Module* m) {
  for (const auto& [module, fn] : thread_hooks)
    if (module == m) return true;
  return false;
}

Tensor apply_hooks(const Module* m, Tensor y) {
  for (const auto& [module, fn] : thread_hooks)
    if (module == m) y = fn(y);
  return y;
}

std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// A 2x2 stride-2 max pool without padding or ceil mode (VGG's): Conv2dOptions::max_pool_2x2.
bool is_max_pool_2x2(const std::shared_ptr<Module>& m) {
  auto pool = std::dynamic_pointer_cast<MaxPool2d>(m);
  if (!pool) return false;
  const Pool2dOptions& o = pool->options();
  const bool stride_2 = (o.stride[0] == 0 || o.stride[0] == 2) && (o.stride[1] == 0 || o.stride[1] == 2);
  return o.kernel[0] == 2 && o.kernel[1] == 2 && stride_2 && o.padding[0] == 0 && o.padding[1] == 0 && !o.ceil_mode;
}

using Visitor = std::function<bool(const std::string&, Module&, const Tensor&)>;

// Which layers a run covers: it starts just after `after` ("" = at the start) and stops after
// `until` ("" = at the end), or when the visitor returns false.
struct Range {
  std::string after, until;
  bool fuse = true;
  const Visitor* visit = nullptr;
  bool started = false, finished = false;
};

// Runs the module at `path` on x within the range (see Range). A module with steps is a chain
// and is descended into; any other module is a layer, run through operator() (its hooks apply).
// The hooks of a chain are applied by its parent, once the chain has run whole.
Tensor run(Module& m, const std::string& path, const Tensor& x, Range& r) {
  const std::vector<Step> steps = m.steps();
  if (steps.empty()) {
    NN_ASSERT(r.started, "run: layer ", path, " reached before the start of the range");
    Tensor y = m(x);
    if (r.visit != nullptr && !(*r.visit)(path, m, y)) r.finished = true;
    if (path == r.until) r.finished = true;
    return y;
  }
  Tensor y = x;
  for (size_t i = 0; i < steps.size() && !r.finished; ++i) {
    const Step& step = steps[i];
    if (!step.module) {
      NN_ASSERT(static_cast<bool>(step.function), m.name(), ": step ", i, " has neither a module nor a function");
      if (r.started) y = step.function(y);
      continue;
    }
    const std::string child = join_name(path, step.name);
    if (!r.started) {
      if (child == r.after) {
        r.started = true;
      } else if (starts_with(r.after, child + ".")) {
        y = run(*step.module, child, y, r);  // the range starts inside this child
      }
      continue;
    }
    // A Conv2d directly followed by a ReLU, or by an Identity (a folded batch norm) and a ReLU: one
    // fused convolution (Conv2d::forward_relu), unless the range ends before the ReLU, a hook wants
    // the convolution's (or the Identity's) own output, or a visitor looks at every layer.
    if (r.fuse && r.visit == nullptr && i + 1 < steps.size() && child != r.until && steps[i + 1].module) {
      auto conv = std::dynamic_pointer_cast<Conv2d>(step.module);
      size_t next = i + 1;
      if (conv && std::dynamic_pointer_cast<Identity>(steps[next].module) && next + 1 < steps.size() &&
          steps[next + 1].module && !has_hook(steps[next].module.get()) &&
          join_name(path, steps[next].name) != r.until)
        ++next;  // the folded batch norm between them
      auto relu = std::dynamic_pointer_cast<ReLU>(steps[next].module);
      if (conv && relu && !has_hook(conv.get())) {
        // And a 2x2 max pool right after the ReLU: pooled in the same pass, unless the range ends
        // at the ReLU or a hook wants its output.
        const std::string relu_name = join_name(path, steps[next].name);
        if (next + 1 < steps.size() && relu_name != r.until && !has_hook(relu.get()) &&
            is_max_pool_2x2(steps[next + 1].module)) {
          y = apply_hooks(steps[next + 1].module.get(), conv->forward_relu_max_pool(y));
          if (join_name(path, steps[next + 1].name) == r.until) r.finished = true;
          i = next + 1;
          continue;
        }
        y = apply_hooks(relu.get(), conv->forward_relu(y));
        if (relu_name == r.until) r.finished = true;
        i = next;
        continue;
      }
    }
    const bool chain = !step.module->steps().empty();
    y = run(*step.module, child, y, r);
    if (chain && !r.finished) y = apply_hooks(step.module.get(), y);  // it ran whole
    if (child == r.until) r.finished = true;
  }
  return y;
}

// Every name a range can start or stop at: the chains and the layers, in forward order.
void collect_names(Module& m, const std::string& path, bool layers_only, std::vector<std::string>& out) {
  for (const Step& step : m.steps()) {
    if (!step.module) continue;
    const std::string child = join_name(path, step.name);
    const bool chain = !step.module->steps().empty();
    if (!chain || !layers_only) out.push_back(child);
    if (chain) collect_names(*step.module, child, layers_only, out);
  }
}

void check_layer(Module& model, const std::string& layer, const char* what) {
  NN_CHECK(!model.steps().empty(), what, ": a ", model.name(),
           " is not a chain of steps (Module::steps), so it has no layers to split at");
  std::vector<std::string> names;
  collect_names(model, "", false, names);
  if (std::find(names.begin(), names.end(), layer) != names.end()) return;
  std::vector<std::string> layers;
  collect_names(model, "", true, layers);
  NN_CHECK(false, what, ": the ", model.name(), " has no layer '", layer, "' (its ", layers.size(),
           " layers run from '", layers.front(), "' to '", layers.back(), "'; see nn::layer_names)");
}

}  // namespace

Tensor Module::operator()(const Tensor& input) {
  Tensor y = forward(input);
  return thread_hooks.empty() ? y : apply_hooks(this, std::move(y));
}

std::vector<std::string> layer_names(Module& model) {
  std::vector<std::string> names;
  collect_names(model, "", true, names);
  return names;
}

Tensor forward_to(Module& model, const Tensor& x, const std::string& layer) {
  check_layer(model, layer, "forward_to");
  Range r;
  r.until = layer;
  r.started = true;
  Tensor y = run(model, "", x, r);
  NN_ASSERT(r.finished, "forward_to: the run ended before '", layer, "'");
  return y;
}

Tensor forward_from(Module& model, const Tensor& h, const std::string& layer) {
  check_layer(model, layer, "forward_from");
  Range r;
  r.after = layer;
  Tensor y = run(model, "", h, r);
  NN_ASSERT(r.started, "forward_from: '", layer, "' was not reached");
  return y;
}

ForwardHooks::ForwardHooks(Module& model, const std::vector<std::pair<std::string, OutputHook>>& hooks) {
  std::vector<std::pair<std::string, Module*>> modules = model.named_modules();
  std::vector<std::pair<const Module*, OutputHook>> resolved;
  for (const auto& hook : hooks) {
    const std::string& name = hook.first;
    NN_CHECK(static_cast<bool>(hook.second), "ForwardHooks: the hook for '", name, "' is empty");
    auto it = std::find_if(modules.begin(), modules.end(), [&name](const auto& e) { return e.first == name; });
    NN_CHECK(it != modules.end(), "ForwardHooks: the ", model.name(), " has no submodule '", name, "'");
    resolved.emplace_back(it->second, hook.second);
  }
  thread_hooks.insert(thread_hooks.end(), resolved.begin(), resolved.end());
  count_ = resolved.size();
}

ForwardHooks::~ForwardHooks() { thread_hooks.resize(thread_hooks.size() - count_); }

namespace detail {

Tensor run_steps(Module& chain, const Tensor& x) {
  Range r;
  r.started = true;
  return run(chain, "", x, r);
}

Tensor run_range(Module& chain, const Tensor& x, const std::string& after, const std::string& until) {
  Range r;
  r.after = after;
  r.until = until;
  r.started = after.empty();
  return run(chain, "", x, r);
}

Tensor visit_layers(Module& model, const Tensor& x, const std::string& after, const Visitor& visit) {
  if (!after.empty()) check_layer(model, after, "visit_layers");
  Range r;
  r.after = after;
  r.started = after.empty();
  r.fuse = false;
  r.visit = &visit;
  if (model.steps().empty()) {  // one layer
    Tensor y = model(x);
    visit("", model, y);
    return y;
  }
  return run(model, "", x, r);
}

}  // namespace detail

}  // namespace nn
