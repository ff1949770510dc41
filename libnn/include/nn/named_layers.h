// Named layers: running part of a model, and looking at or replacing what one layer gives.
//
// A layer is named by its dotted module path, as in named_modules() ("features.29", "classifier").
// These functions work on any module whose forward is a chain of steps (Module::steps:
// Sequential, VGG and the other models), descending into nested chains; a module without steps is
// one layer. They run a Conv2d directly followed by a ReLU as one fused convolution, and with a 2x2
// stride-2 MaxPool2d right after the ReLU, the pool too (Conv2dOptions::max_pool_2x2), as forward()
// does, except where the split point or a hook falls between them.
//
//   Tensor a = nn::forward_to(model, x, "features.29");      // the activations after features.29
//   Tensor y = nn::forward_from(model, a, "features.29");    // the rest: y == model(x)
//
// A frozen prefix can thus be computed once and cached, and the trainable rest run on the cache;
// Grad-CAM (nn/explain.h) differentiates the rest with respect to the activations.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"
#include "nn/tensor.h"

namespace nn {

// The layers a forward pass of `model` runs through, in order, by dotted name: the steps of every
// chain, descending into nested chains (VGG16: "features.0" ... "features.30", "avgpool",
// "classifier.0" ... "classifier.6"). Unnamed steps (flatten) are not listed.
std::vector<std::string> layer_names(Module& model);

// Runs `model` on x up to and including the layer `layer` (a name from layer_names, or a chain
// such as "features") and returns that layer's output. An error names the layer when `model` has
// no such layer or it is not reachable through chains.
Tensor forward_to(Module& model, const Tensor& x, const std::string& layer);
// Runs the rest of `model` after the layer `layer` on h, an output of that layer:
// forward_from(m, forward_to(m, x, L), L) equals m(x).
Tensor forward_from(Module& model, const Tensor& h, const std::string& layer);

// What a hook does with a layer's output: returns the tensor the forward pass continues with
// (return `output` itself to only look at it).
using OutputHook = std::function<Tensor(const Tensor& output)>;

// Forward hooks for this thread, while the object lives: every time a named layer of `model`
// runs (through Module::operator(), a container, forward_to or forward_from), its output goes
// through the hook. The model is not modified, so other threads running the same model see no
// hooks. A Conv2d with a hook is not fused with the ReLU after it (the hook sees the convolution's
// own output). Several hooks may watch one layer (applied in the order given); scopes nest.
class ForwardHooks {
 public:
  ForwardHooks(Module& model, const std::vector<std::pair<std::string, OutputHook>>& hooks);
  ~ForwardHooks();
  ForwardHooks(const ForwardHooks&) = delete;
  ForwardHooks& operator=(const ForwardHooks&) = delete;

 private:
  size_t count_ = 0;
};

namespace detail {
// forward() of a chain module in terms of its steps (Sequential and the models implement forward
// with it, so forward and the named-layer functions cannot disagree).
Tensor run_steps(Module& chain, const Tensor& x);
// The layers of a chain from just after `after` ("" = the start) to `until` inclusive ("" = the
// end); names are not checked.
Tensor run_range(Module& chain, const Tensor& x, const std::string& after, const std::string& until);
// Calls `visit(name, layer, output)` after each layer of `model` runs, in order, from just after
// the layer `after` ("" = from the start; x is then that layer's output), without fusing
// Conv2d + ReLU, until visit returns false. Unnamed steps are run but not visited. Returns the
// last output.
Tensor visit_layers(Module& model, const Tensor& x, const std::string& after,
                    const std::function<bool(const std::string& name, Module& layer, const Tensor& output)>& visit);
}  // namespace detail

}  // namespace nn
