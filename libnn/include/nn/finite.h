// Finiteness checks for training: is a tensor (or a set of gradients) free of NaN and infinity,
// which parameters hold a non-finite gradient, and which layer of a forward pass first produced a
// non-finite value.
//
// The checks are built from tensor ops (x * 0 summed: exactly 0 when every element is finite, NaN
// otherwise), so they run on the tensor's own device and copy one scalar to the host. They never
// overflow: values near the largest float still give 0. The layer-by-layer search reruns a
// forward pass and is meant for the failure path only.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "nn/module.h"
#include "nn/tensor.h"

namespace nn {

// True when no element of `t` is NaN or +-infinity (integer and empty tensors always are).
// Cost: one elementwise pass and one reduction on t's device, one scalar to the host.
bool all_finite(const Tensor& t);
// The same over several tensors (undefined ones are skipped) with one host copy per device.
bool all_finite(const std::vector<Tensor>& tensors);

// Dotted names, in named_parameters() order, of the parameters whose gradient holds a NaN or an
// infinity; parameters without a gradient are skipped.
std::vector<std::string> parameters_with_non_finite_grad(const Module& module);
// Dotted names, in named_parameters() order, of the parameters whose value is not finite.
std::vector<std::string> non_finite_parameters(const Module& module);

// Where a forward pass first produced a NaN or an infinity.
struct NonFiniteSite {
  std::string layer;  // dotted module name ("features.2"); empty when the input itself was not finite
  std::string type;   // the module's type name ("Conv2d"); empty for the input
  // "features.2 (Conv2d)", or "the input" when the input itself was not finite.
  std::string str() const;
};

// Runs `input` through `model` one layer at a time - the layers of nn::layer_names, descending into
// chains such as Sequential and the models, without fusing Conv2d + ReLU, so that each layer's
// own output is looked at - starting just after the layer `after` ("" = from the start; `input`
// is then that layer's output, e.g. a cached frozen prefix), and returns the first layer whose
// output is not finite, named `prefix` + its dotted name; std::nullopt when every output is. A
// non-finite input is reported as such. A module that is not a chain is one layer, reported under
// `prefix`. `output`, when given, receives the last output computed. Runs without autograd; the
// mode (train/eval) is the module's own.
std::optional<NonFiniteSite> first_non_finite_output(Module& model, const Tensor& input, const std::string& after = "",
                                                     const std::string& prefix = "", Tensor* output = nullptr);

}  // namespace nn
