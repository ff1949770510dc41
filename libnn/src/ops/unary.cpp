// Unary ops and activations, forward and backward: neg, exp, log, sqrt, abs, clamp, relu
// (gradient 0 at 0), sigmoid, tanh. Each is one kernel pass; activations save their output.
#include "ops/op_util.h"

namespace nn {
namespace {

using detail::binary_kernel;
using detail::unary_kernel;

enum class Saves { input, output, nothing };

Tensor unary_forward(UnaryOp op, const char* name, const Tensor& x, Saves saves,
                     std::function<Tensor(const Tensor& g, const Tensor& saved)> backward,
                     double alpha = 0, double beta = 0) {
  detail::check_float(x, name);
  Tensor out = unary_kernel(op, x, alpha, beta);
  if (!needs_grad({x})) return out;
  SavedTensor saved = saves == Saves::input ? SavedTensor(x) : saves == Saves::output ? SavedTensor(out) : SavedTensor();
  std::string op_name = name;
  record_op(name, out, {x}, [saved, backward, op_name](const Tensor& g) -> std::vector<Tensor> {
    return {backward(g, saved.get(op_name))};
  });
  return out;
}

}  // namespace

Tensor neg(const Tensor& x) {
  return unary_forward(UnaryOp::neg, "neg", x, Saves::nothing,
                       [](const Tensor& g, const Tensor&) { return unary_kernel(UnaryOp::neg, g); });
}

Tensor exp(const Tensor& x) {
  return unary_forward(UnaryOp::exp, "exp", x, Saves::output,
                       [](const Tensor& g, const Tensor& y) { return mul(g, y); });
}

Tensor log(const Tensor& x) {
  return unary_forward(UnaryOp::log, "log", x, Saves::input,
                       [](const Tensor& g, const Tensor& x0) { return div(g, x0); });
}

Tensor sqrt(const Tensor& x) {
  return unary_forward(UnaryOp::sqrt, "sqrt", x, Saves::output,
                       [](const Tensor& g, const Tensor& y) { return div(mul(g, 0.5), y); });
}

Tensor abs(const Tensor& x) {
  return unary_forward(UnaryOp::abs, "abs", x, Saves::input, [](const Tensor& g, const Tensor& x0) {
    return mul(g, unary_kernel(UnaryOp::sign, x0));
  });
}

Tensor clamp(const Tensor& x, double min, double max) {
  NN_CHECK(min <= max, "clamp: min (", min, ") is greater than max (", max, ")");
  return unary_forward(
      UnaryOp::clamp, "clamp", x, Saves::input,
      [min, max](const Tensor& g, const Tensor& x0) {
        return mul(g, unary_kernel(UnaryOp::clamp_mask, x0, min, max));
      },
      min, max);
}

Tensor relu(const Tensor& x) {
  return unary_forward(UnaryOp::relu, "relu", x, Saves::output, [](const Tensor& g, const Tensor& y) {
    return binary_kernel(BinaryOp::relu_backward, g, y);
  });
}

Tensor sigmoid(const Tensor& x) {
  return unary_forward(UnaryOp::sigmoid, "sigmoid", x, Saves::output, [](const Tensor& g, const Tensor& y) {
    return binary_kernel(BinaryOp::sigmoid_backward, g, y);
  });
}

Tensor tanh(const Tensor& x) {
  return unary_forward(UnaryOp::tanh, "tanh", x, Saves::output, [](const Tensor& g, const Tensor& y) {
    return binary_kernel(BinaryOp::tanh_backward, g, y);
  });
}

}  // namespace nn
