// Batch normalization over the channel dim of x (N, C, *), forward and backward. The kernels see x
// as dense (N, C, S). Training uses the batch's statistics (mean, biased variance) and updates the
// running ones in place (unbiased variance, momentum); eval uses the running statistics, which are
// constants for autograd. Backward, with xhat = (x - mean) * invstd and M = N * S:
//   dbias = sum dy,  dweight = sum dy * xhat,
//   dx = weight * invstd * (dy - (sum dy + xhat * sum dy * xhat) / M)   (batch statistics)
//   dx = weight * invstd * dy                                             (running statistics)
#include <cmath>

#include "ops/op_util.h"

namespace nn {
namespace {

void check_channel_vector(const Tensor& t, const Tensor& x, const char* what) {
  if (!t.defined()) return;
  NN_CHECK(t.dim() == 1 && t.size(0) == x.size(1), "batch_norm: ", what, " must have shape (", x.size(1),
           ") for an input with ", x.size(1), " channels, got ", shape_str(t.shape()));
  NN_CHECK(t.dtype() == x.dtype() && t.device() == x.device(), "batch_norm: ", what, " is ", dtype_name(t.dtype()),
           " on ", t.device().str(), ", the input ", dtype_name(x.dtype()), " on ", x.device().str());
}

Tensor per_channel(const Tensor& x) { return detail::make_tensor({x.size(1)}, x.dtype(), x.device()); }

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  detail::check_float(x, "batch_norm");
  NN_CHECK(x.dim() >= 2, "batch_norm: expected an input (N, C, ...) with at least 2 dims, got ", shape_str(x.shape()));
  NN_CHECK(std::isfinite(eps) && eps > 0, "batch_norm: eps must be positive, got ", eps);
  NN_CHECK(momentum >= 0 && momentum <= 1, "batch_norm: momentum must be in [0, 1], got ", momentum);
  NN_CHECK(running_mean.defined() == running_var.defined(),
           "batch_norm: give both running_mean and running_var, or neither");
  check_channel_vector(running_mean, x, "running_mean");
  check_channel_vector(running_var, x, "running_var");
  check_channel_vector(weight, x, "weight");
  check_channel_vector(bias, x, "bias");
  const int64_t n = x.size(0), c = x.size(1), values = c == 0 ? 0 : x.numel() / c;
  NN_CHECK(!training || values > 1, "batch_norm: expected more than 1 value per channel when training, got input of shape ",
           shape_str(x.shape()));
  NN_CHECK(training || running_mean.defined(),
           "batch_norm: evaluation (training = false) needs running_mean and running_var");

  Tensor xd;
  Tensor mean, invstd;
  {
    NoGradGuard no_grad;
    xd = detail::dense(x).reshape({n, c, n * c == 0 ? 0 : x.numel() / (n * c)});
    if (training) {
      mean = per_channel(x);
      Tensor var = per_channel(x);
      if (values > 0) NN_DISPATCH(batch_norm_stats, x.device())(xd, mean, var);
      invstd = div(1.0, sqrt(add(var, eps)));
      if (running_mean.defined()) {
        const double unbias = static_cast<double>(values) / static_cast<double>(values - 1);
        // The running statistics are state the caller hands over to be updated (module buffers).
        Tensor rm = running_mean, rv = running_var;
        rm.copy_(add(mul(running_mean, 1.0 - momentum), mul(mean, momentum)));
        rv.copy_(add(mul(running_var, 1.0 - momentum), mul(var, momentum * unbias)));
      }
    } else {
      mean = running_mean.clone();  // a copy: a later update of the running statistics must not
      invstd = div(1.0, sqrt(add(running_var, eps)));  // change what backward uses
    }
  }
  Tensor y = detail::make_tensor(xd.shape(), x.dtype(), x.device());
  if (y.numel() > 0) NN_DISPATCH(batch_norm_forward, x.device())(xd, mean, invstd, weight, bias, y);
  Tensor out = y.reshape(x.shape());
  if (needs_grad({x, weight, bias})) {
    const bool gx = wants_grad(x), gw = weight.defined() && wants_grad(weight), gb = bias.defined() && wants_grad(bias);
    SavedTensor saved_x(xd), saved_mean(mean), saved_invstd(invstd), saved_weight(weight);
    const Shape x_shape = x.shape();
    record_op("batch_norm", out, {x, weight, bias}, [=](const Tensor& g) -> std::vector<Tensor> {
      Tensor xs = saved_x.get("batch_norm"), mu = saved_mean.get("batch_norm"), is = saved_invstd.get("batch_norm");
      Tensor w = saved_weight.get("batch_norm");
      Tensor gd = detail::dense(g).reshape(xs.shape());
      Tensor sum_dy = per_channel(xs), sum_dy_xhat = per_channel(xs);
      if (xs.numel() > 0) {
        NN_DISPATCH(batch_norm_backward_reduce, xs.device())(gd, xs, mu, is, sum_dy, sum_dy_xhat);
      } else {
        sum_dy.zero_();
        sum_dy_xhat.zero_();
      }
      Tensor dx;
      if (gx) {
        dx = detail::make_tensor(xs.shape(), xs.dtype(), xs.device());
        if (dx.numel() > 0)
          NN_DISPATCH(batch_norm_backward_input, xs.device())(gd, xs, mu, is, w, sum_dy, sum_dy_xhat, training, dx);
        dx = dx.reshape(x_shape);
      }
      return {dx, gw ? sum_dy_xhat : Tensor(), gb ? sum_dy : Tensor()};
    });
  }
  return out;
}

}  // namespace nn
