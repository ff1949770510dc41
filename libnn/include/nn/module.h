// Module: the base of every layer and model. A module owns named parameters (leaf tensors that
// require grad), named buffers (state that is saved but not trained) and named submodules, and
// gives them dotted names ("features.0.weight") in registration order, as torchvision does.
//
// Parameters are never re-seated once registered: to(), load_state_dict() and the optimizers write
// into the same tensors in place, so handles held by layers, optimizers or user code stay valid.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "nn/tensor.h"

namespace nn {

// An ordered list of (dotted name, tensor): registration order, module by module (own parameters,
// own buffers, then each child), which is also the order a checkpoint file lists them in.
using StateDict = std::vector<std::pair<std::string, Tensor>>;

// What a non-strict load_state_dict() skipped.
struct LoadStateDictResult {
  std::vector<std::string> missing_keys;     // in the module, not in the state dict
  std::vector<std::string> unexpected_keys;  // in the state dict, not in the module
};

class Module;

// One step of a module whose forward is a chain (see Module::steps): a named child run on the
// previous step's output, or an unnamed function between children (a reshape such as flatten).
struct Step {
  std::string name;                                // the child's name; empty for a function
  std::shared_ptr<Module> module;                  // the child, or null for a function
  std::function<Tensor(const Tensor&)> function;   // set when module is null
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  // Copying a module would alias its parameters; build a new one and load_state_dict() instead.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The computation; the base class has none (an error naming the module type).
  virtual Tensor forward(const Tensor& input);
  // forward(), then the forward hooks this thread has set on this module (nn/named_layers.h).
  // Containers run their children through it, so a hook sees a child's output wherever it runs.
  Tensor operator()(const Tensor& input);

  // A module whose forward is a chain - the output of one step is the input of the next, and
  // forward(x) is exactly the steps applied in order - lists them here (Sequential: its children;
  // VGG: features, avgpool, flatten, classifier). That is what lets a model run up to or from a
  // named layer, have each layer's output checked, or be explained with Grad-CAM at any layer
  // (nn/named_layers.h). Empty (the default) means forward is not a chain: the module is then one
  // layer as far as those are concerned.
  virtual std::vector<Step> steps() { return {}; }

  // ---- registration: names are non-empty, contain no '.', and are unique within this module
  // across parameters, buffers and submodules ----

  // Registers a floating-point leaf tensor and makes it require grad; returns it (an alias).
  Tensor register_parameter(const std::string& name, Tensor value);
  // Registers state that is saved and moved with the module but not trained.
  Tensor register_buffer(const std::string& name, Tensor value);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    static_assert(std::is_base_of_v<Module, M>, "register_module: M must derive from nn::Module");
    add_module(name, module);
    return module;
  }
  // Swaps an existing submodule for another (e.g. a new classifier head); returns the new one.
  template <typename M>
  std::shared_ptr<M> replace_module(const std::string& name, std::shared_ptr<M> module) {
    static_assert(std::is_base_of_v<Module, M>, "replace_module: M must derive from nn::Module");
    swap_module(name, module);
    return module;
  }

  // ---- traversal (registration order) ----

  // Each parameter once, even when shared by two submodules (the optimizer must not step it twice).
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  std::vector<std::shared_ptr<Module>> children() const;
  // This module (named "") and every descendant, depth first; the pointers do not own.
  std::vector<std::pair<std::string, Module*>> named_modules();
  // Calls fn on every module, children first, then this one (e.g. custom initialisation).
  void apply(const std::function<void(Module&)>& fn);

  // ---- mode and placement ----

  // Training mode switches layers like Dropout; recursive.
  void train(bool on = true);
  void eval() { train(false); }
  // The training flag, unless an EvalModeGuard is active on this thread (then false).
  bool is_training() const;
  // Moves every parameter, buffer and gradient to `device` in place (same tensor objects, still
  // leaves that require grad).
  void to(Device device);
  // Converts every floating-point parameter, buffer and gradient to `dtype` in place.
  void to(DType dtype);

  // Clears gradients: undefined when set_to_none (frees the memory), zero-filled otherwise.
  void zero_grad(bool set_to_none = true);
  // Freezes (false) or unfreezes (true) every parameter of this module and its descendants.
  void set_requires_grad(bool on);
  // Elements in all parameters, each shared parameter counted once.
  int64_t num_parameters(bool trainable_only = false) const;

  // ---- checkpoints ----

  // Parameters and buffers under their dotted names, as detached aliases (no copy: clone them for
  // a snapshot that later training must not change). A shared parameter appears under each name.
  StateDict state_dict() const;
  // Copies values into the module's existing tensors (converting floating dtypes and devices).
  // Every problem - missing keys and unexpected keys (strict only), duplicate keys, shape
  // mismatches, dtypes that cannot convert - is collected into one nn::Error, and on any error
  // nothing is written. Non-strict loads report what they skipped.
  LoadStateDictResult load_state_dict(const StateDict& state, bool strict = true);
  LoadStateDictResult load_state_dict(const std::map<std::string, Tensor>& state, bool strict = true);

  // ---- printing ----

  // The type name ("Conv2d").
  virtual std::string name() const { return "Module"; }
  // The constructor arguments worth printing ("3, 64, kernel_size=(3, 3), ...").
  virtual std::string extra_repr() const { return ""; }
  // name(extra_repr): one line.
  std::string str() const;
  // The whole tree, one submodule per line, as PyTorch prints a model.
  std::string to_string() const;

 protected:
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& submodules() const {
    return modules_;
  }

 private:
  void add_module(const std::string& name, std::shared_ptr<Module> module);
  void swap_module(const std::string& name, std::shared_ptr<Module> module);
  void check_new_name(const std::string& name, const char* what) const;
  void collect_state(const std::string& prefix, StateDict& out) const;
  using TensorList = std::vector<std::pair<std::string, Tensor>>;
  // Appends the entries of `list` (parameters_ or buffers_) of this module and, when recursing,
  // of its descendants, under dotted names.
  void collect_tensors(TensorList Module::*list, const std::string& prefix, bool recurse,
                       TensorList& out) const;
  void collect_modules(const std::string& prefix, std::vector<std::pair<std::string, Module*>>& out);

  TensorList parameters_;
  TensorList buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> modules_;
  bool training_ = true;
};

std::ostream& operator<<(std::ostream& out, const Module& module);

// Within its scope (per thread), every module runs as in eval mode (Dropout is the identity,
// batch statistics are not used or updated), whatever its train()/eval() flag, and the flags are
// left as they are: threads that share a model can evaluate it without changing its mode under
// each other's feet. Scopes nest.
class EvalModeGuard {
 public:
  EvalModeGuard();
  ~EvalModeGuard();
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;
};

}  // namespace nn
