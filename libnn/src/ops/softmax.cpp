// softmax and log_softmax over one dim, forward and backward. The dim is moved last and made
// dense so the kernels see (rows, cols); both save their output for backward.
#include "ops/op_util.h"

namespace nn {
namespace {

Tensor softmax_impl(const Tensor& x, int64_t dim_in, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  detail::check_float(x, name);
  if (x.dim() == 0) return softmax_impl(x.reshape({1}), 0, log).reshape({});
  const int64_t d = detail::wrap_dim(dim_in, x.dim(), name);
  const int64_t last = x.dim() - 1;
  Tensor moved;
  {
    NoGradGuard ng;
    moved = detail::dense(x.transpose(d, last));
  }
  Tensor y = detail::make_tensor(moved.shape(), x.dtype(), x.device());
  if (y.numel() > 0) NN_DISPATCH(softmax_forward, x.device())(moved, y, log);
  Tensor out = y.transpose(d, last);  // y has no history: a plain view
  if (needs_grad({x})) {
    SavedTensor saved(y);
    std::string op_name = name;
    record_op(name, out, {x}, [=](const Tensor& g) -> std::vector<Tensor> {
      Tensor gm = detail::dense(g.transpose(d, last));
      Tensor yv = saved.get(op_name);
      Tensor dx = detail::make_tensor(yv.shape(), yv.dtype(), yv.device());
      if (dx.numel() > 0) NN_DISPATCH(softmax_backward, yv.device())(gm, yv, dx, log);
      return {dx.transpose(d, last)};
    });
  }
  return out;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

}  // namespace nn
