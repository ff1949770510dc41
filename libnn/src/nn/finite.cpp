// Finiteness checks: all_finite over tensors and gradients, and the layer-by-layer search for the
// first non-finite activation. x * 0 is exactly 0 for every finite x and NaN for NaN and +-inf, so
// sum(x * 0) is 0 exactly when x is all finite, whatever x's magnitude: no overflow, any device,
// one scalar copied to the host. Cost per check: one read and one write of x, one reduction.
#include "nn/finite.h"

#include <cstdint>
#include <cstring>
#include <utility>

#include "nn/autograd.h"
#include "nn/named_layers.h"
#include "nn/ops.h"

namespace nn {

namespace {

// sum(t * 0) as a scalar on t's device; undefined for tensors that are finite by type.
Tensor zero_if_finite(const Tensor& t) {
  if (!t.defined() || !is_floating(t.dtype()) || t.numel() == 0) return Tensor();
  Tensor x = t.detach();
  if (x.dtype() == DType::f16 || x.dtype() == DType::bf16) x = x.to(DType::f32);  // keeps NaN and inf
  return sum(mul(x, 0.0));
}

// Whether a scalar computed by zero_if_finite is +-0. Compared by bits so that a build with
// -ffast-math (which may assume no NaN) cannot fold the test away.
bool is_zero(const Tensor& scalar) {
  const double v = scalar.item<double>();
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return (bits & ~(uint64_t{1} << 63)) == 0;
}

std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

}  // namespace

bool all_finite(const Tensor& t) {
  NoGradGuard no_grad;
  Tensor z = zero_if_finite(t);
  return !z.defined() || is_zero(z);
}

bool all_finite(const std::vector<Tensor>& tensors) {
  NoGradGuard no_grad;
  std::vector<Tensor> per_device;  // running sums, one per device
  for (const Tensor& t : tensors) {
    Tensor z = zero_if_finite(t);
    if (!z.defined()) continue;
    bool added = false;
    for (Tensor& total : per_device) {
      if (total.device() == z.device()) {
        total = add(total, z.to(total.dtype()));
        added = true;
        break;
      }
    }
    if (!added) per_device.push_back(z.to(DType::f64));
  }
  for (const Tensor& total : per_device)
    if (!is_zero(total)) return false;
  return true;
}

std::vector<std::string> parameters_with_non_finite_grad(const Module& module) {
  std::vector<std::string> names;
  for (const auto& [name, p] : module.named_parameters()) {
    Tensor g = p.grad();
    if (g.defined() && !all_finite(g)) names.push_back(name);
  }
  return names;
}

std::vector<std::string> non_finite_parameters(const Module& module) {
  std::vector<std::string> names;
  for (const auto& [name, p] : module.named_parameters())
    if (!all_finite(p)) names.push_back(name);
  return names;
}

std::string NonFiniteSite::str() const { return layer.empty() ? "the input" : layer + " (" + type + ")"; }

std::optional<NonFiniteSite> first_non_finite_output(Module& model, const Tensor& input, const std::string& after,
                                                     const std::string& prefix, Tensor* output) {
  NoGradGuard no_grad;
  if (output) *output = input;
  if (!all_finite(input)) return NonFiniteSite{};
  std::optional<NonFiniteSite> site;
  Tensor last = detail::visit_layers(model, input, after, [&](const std::string& name, Module& layer, const Tensor& y) {
    if (all_finite(y)) return true;
    site = NonFiniteSite{join_name(prefix, name), layer.name()};
    return false;
  });
  if (output) *output = last;
  return site;
}

}  // namespace nn
