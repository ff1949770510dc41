// Parameter initialisation: fan computation, gains, and in-place uniform/normal/constant fills
// (Kaiming and Xavier reduce to a bound or a std from the fans and call those).
#include "nn/init.h"

#include <cmath>

#include "nn/autograd.h"

namespace nn::init {

namespace {

// The random kernels produce f32 or f64; other floating dtypes are drawn in f32 and converted by
// copy_.
DType draw_dtype(const Tensor& t) { return t.dtype() == DType::f64 ? DType::f64 : DType::f32; }

void check_fillable(const Tensor& t, const char* fn) {
  NN_CHECK(t.defined(), "init::", fn, ": got an undefined tensor");
  NN_CHECK(is_floating(t.dtype()), "init::", fn, ": expected a floating-point tensor, got ",
           dtype_name(t.dtype()));
}

double fan_for(const Tensor& t, FanMode mode) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  return static_cast<double>(mode == FanMode::fan_in ? fan_in : fan_out);
}

}  // namespace

double calculate_gain(Nonlinearity nonlinearity, double a) {
  switch (nonlinearity) {
    case Nonlinearity::linear:
    case Nonlinearity::conv:
    case Nonlinearity::sigmoid: return 1.0;
    case Nonlinearity::tanh: return 5.0 / 3.0;
    case Nonlinearity::relu: return std::sqrt(2.0);
    case Nonlinearity::leaky_relu: return std::sqrt(2.0 / (1.0 + a * a));
  }
  NN_ASSERT(false, "unknown nonlinearity");
  return 1.0;
}

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  NN_CHECK(t.defined(), "calculate_fan_in_and_fan_out: got an undefined tensor");
  NN_CHECK(t.dim() >= 2, "calculate_fan_in_and_fan_out: needs a tensor with at least 2 dims, got shape ",
           shape_str(t.shape()));
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

Tensor uniform_(Tensor t, double low, double high, Generator& gen) {
  check_fillable(t, "uniform_");
  NN_CHECK(low <= high, "init::uniform_: low ", low, " is above high ", high);
  if (t.numel() == 0) return t;
  NoGradGuard no_grad;
  t.copy_(uniform(t.shape(), low, high, gen, draw_dtype(t), t.device()));
  return t;
}

Tensor normal_(Tensor t, double mean, double std, Generator& gen) {
  check_fillable(t, "normal_");
  NN_CHECK(std >= 0, "init::normal_: std must be >= 0, got ", std);
  if (t.numel() == 0) return t;
  NoGradGuard no_grad;
  t.copy_(normal(t.shape(), mean, std, gen, draw_dtype(t), t.device()));
  return t;
}

Tensor constant_(Tensor t, double value) {
  check_fillable(t, "constant_");
  NoGradGuard no_grad;
  t.fill_(value);
  return t;
}

Tensor zeros_(Tensor t) { return constant_(std::move(t), 0.0); }
Tensor ones_(Tensor t) { return constant_(std::move(t), 1.0); }

Tensor kaiming_uniform_(Tensor t, double a, FanMode mode, Nonlinearity nonlinearity, Generator& gen) {
  check_fillable(t, "kaiming_uniform_");
  if (t.numel() == 0) return t;
  double bound = calculate_gain(nonlinearity, a) * std::sqrt(3.0 / fan_for(t, mode));
  return uniform_(std::move(t), -bound, bound, gen);
}

Tensor kaiming_normal_(Tensor t, double a, FanMode mode, Nonlinearity nonlinearity, Generator& gen) {
  check_fillable(t, "kaiming_normal_");
  if (t.numel() == 0) return t;
  double std = calculate_gain(nonlinearity, a) / std::sqrt(fan_for(t, mode));
  return normal_(std::move(t), 0.0, std, gen);
}

Tensor xavier_uniform_(Tensor t, double gain, Generator& gen) {
  check_fillable(t, "xavier_uniform_");
  if (t.numel() == 0) return t;
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  double bound = gain * std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
  return uniform_(std::move(t), -bound, bound, gen);
}

Tensor xavier_normal_(Tensor t, double gain, Generator& gen) {
  check_fillable(t, "xavier_normal_");
  if (t.numel() == 0) return t;
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  double std = gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
  return normal_(std::move(t), 0.0, std, gen);
}

}  // namespace nn::init
