// Parameter initialisation (nn::init), the schemes torchvision uses. Each function fills an
// existing tensor in place under NoGradGuard (so it works on parameters that require grad), draws
// from an explicit Generator, and returns the same tensor. The tensor is taken by value because a
// Tensor is a handle: the write lands in the caller's storage.
#pragma once

#include <cstdint>
#include <utility>

#include "nn/generator.h"
#include "nn/tensor.h"

namespace nn::init {

enum class FanMode { fan_in, fan_out };
enum class Nonlinearity { linear, conv, sigmoid, tanh, relu, leaky_relu };

// The recommended gain for a nonlinearity: 1 for linear/conv/sigmoid, 5/3 for tanh, sqrt(2) for
// relu, sqrt(2 / (1 + a^2)) for leaky_relu with negative slope a.
double calculate_gain(Nonlinearity nonlinearity, double a = 0.0);
// (fan_in, fan_out) of a weight with at least 2 dims: (size(1), size(0)) times the receptive field
// (the product of the remaining dims), e.g. C*KH*KW and O*KH*KW for an OIHW conv weight.
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t);

Tensor uniform_(Tensor t, double low, double high, Generator& gen = default_generator());
Tensor normal_(Tensor t, double mean, double std, Generator& gen = default_generator());
Tensor constant_(Tensor t, double value);
Tensor zeros_(Tensor t);
Tensor ones_(Tensor t);
// U(-b, b) with b = gain * sqrt(3 / fan); with the defaults of PyTorch's layers (a = sqrt(5),
// leaky_relu, fan_in) that is b = 1 / sqrt(fan_in).
Tensor kaiming_uniform_(Tensor t, double a = 0.0, FanMode mode = FanMode::fan_in,
                        Nonlinearity nonlinearity = Nonlinearity::leaky_relu,
                        Generator& gen = default_generator());
// N(0, std^2) with std = gain / sqrt(fan).
Tensor kaiming_normal_(Tensor t, double a = 0.0, FanMode mode = FanMode::fan_in,
                       Nonlinearity nonlinearity = Nonlinearity::leaky_relu,
                       Generator& gen = default_generator());
// U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)).
Tensor xavier_uniform_(Tensor t, double gain = 1.0, Generator& gen = default_generator());
// N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).
Tensor xavier_normal_(Tensor t, double gain = 1.0, Generator& gen = default_generator());

}  // namespace nn::init
