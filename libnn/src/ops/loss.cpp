// Losses, forward and backward: binary_cross_entropy_with_logits (weight, pos_weight), nll_loss
// and cross_entropy (class weights, ignore_index), mse_loss. Each computes per-element (or
// per-sample) losses with autograd, then reduces with the differentiable sum/mean.
#include <algorithm>

#include "ops/op_util.h"

namespace nn {
namespace {

Tensor reduce_loss(const Tensor& loss, Reduction r) {
  switch (r) {
    case Reduction::none: return loss;
    case Reduction::sum: return sum(loss);
    case Reduction::mean: return mean(loss);
  }
  return loss;
}

void check_no_grad_for(const Tensor& t, const char* what, const char* op) {
  NN_CHECK(!t.defined() || !t.requires_grad(), op, ": gradients with respect to the ", what,
           " are not supported; pass it detached");
}

// `t` broadcast to `shape` and made dense, or undefined.
Tensor dense_broadcast(const Tensor& t, const Shape& shape, const Tensor& like, const char* what, const char* op) {
  if (!t.defined()) return t;
  detail::check_float_pair(like, t, op);
  NN_CHECK(broadcast_shapes(t.shape(), shape) == shape, op, ": ", what, " of shape ", shape_str(t.shape()),
           " does not broadcast to the input's shape ", shape_str(shape));
  return detail::dense(detail::broadcast_view(t, shape));
}

}  // namespace

Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, const BceWithLogitsOptions& o) {
  const char* op = "binary_cross_entropy_with_logits";
  detail::check_float_pair(logits, target, op);
  NN_CHECK(logits.shape() == target.shape(), op, ": target of shape ", shape_str(target.shape()),
           " differs from the input's shape ", shape_str(logits.shape()));
  check_no_grad_for(target, "target", op);
  check_no_grad_for(o.weight, "weight", op);
  check_no_grad_for(o.pos_weight, "pos_weight", op);
  Tensor x = detail::dense(logits), t = detail::dense(target);
  Tensor w = dense_broadcast(o.weight, x.shape(), x, "weight", op);
  Tensor pw = dense_broadcast(o.pos_weight, x.shape(), x, "pos_weight", op);
  Tensor loss = detail::make_tensor(x.shape(), x.dtype(), x.device());
  if (loss.numel() > 0) NN_DISPATCH(bce_with_logits_forward, x.device())(x, t, w, pw, loss);
  if (needs_grad({logits})) {
    SavedTensor sx(x), st(t), sw(w), spw(pw);
    record_op(op, loss, {logits}, [=](const Tensor& g) -> std::vector<Tensor> {
      Tensor xv = sx.get(op);
      Tensor dx = detail::make_tensor(xv.shape(), xv.dtype(), xv.device());
      if (dx.numel() > 0)
        NN_DISPATCH(bce_with_logits_backward, xv.device())(detail::dense(g), xv, st.get(op), sw.get(op), spw.get(op), dx);
      return {dx};
    });
  }
  return reduce_loss(loss, o.reduction);
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const CrossEntropyOptions& o) {
  const char* op = "nll_loss";
  detail::check_float(log_probs, op);
  detail::check_defined(target, op);
  NN_CHECK(log_probs.dim() == 2, op, ": expects input of shape (N, C), got ", shape_str(log_probs.shape()));
  NN_CHECK(target.dtype() == DType::i64, op, ": target must hold int64 class indices, got ", dtype_name(target.dtype()));
  NN_CHECK(target.dim() == 1 && target.size(0) == log_probs.size(0), op, ": target of shape ",
           shape_str(target.shape()), " does not match N=", log_probs.size(0));
  detail::check_same_device(log_probs, target, op);
  const int64_t c = log_probs.size(1);
  if (o.weight.defined()) {
    detail::check_float_pair(log_probs, o.weight, op);
    NN_CHECK(o.weight.dim() == 1 && o.weight.size(0) == c, op, ": class weight of shape ",
             shape_str(o.weight.shape()), " does not match C=", c);
    check_no_grad_for(o.weight, "weight", op);
  }
  // Validate the labels here, where an error can be reported, rather than inside a device kernel.
  for (int64_t t : target.to_vector<int64_t>())
    NN_CHECK(t == o.ignore_index || (t >= 0 && t < c), op, ": target ", t, " is out of range [0, ", c, ")");
  Tensor lp = detail::dense(log_probs), tg = detail::dense(target);
  Tensor w = o.weight.defined() ? detail::dense(o.weight) : Tensor();
  const int64_t n = lp.size(0);
  Tensor loss = detail::make_tensor({n}, lp.dtype(), lp.device());
  Tensor sample_weight = detail::make_tensor({n}, lp.dtype(), lp.device());
  if (n > 0) NN_DISPATCH(nll_forward, lp.device())(lp, tg, w, o.ignore_index, loss, sample_weight);
  if (needs_grad({log_probs})) {
    const Shape shape = lp.shape();
    const int64_t ignore = o.ignore_index;
    record_op(op, loss, {log_probs}, [=](const Tensor& g) -> std::vector<Tensor> {
      Tensor d = detail::make_tensor(shape, g.dtype(), g.device());
      if (d.numel() > 0) NN_DISPATCH(nll_backward, g.device())(detail::dense(g), tg, w, ignore, d);
      return {d};
    });
  }
  if (o.reduction == Reduction::mean) {
    // PyTorch's weighted mean: divide by the summed weights of the counted targets.
    Tensor total = detail::sum_kernel(sample_weight, {}, false);
    return div(sum(loss), total);
  }
  return reduce_loss(loss, o.reduction);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target, const CrossEntropyOptions& o) {
  detail::check_float(logits, "cross_entropy");
  NN_CHECK(logits.dim() == 2, "cross_entropy: expects logits of shape (N, C), got ", shape_str(logits.shape()));
  return nll_loss(log_softmax(logits, 1), target, o);
}

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  detail::check_float_pair(input, target, "mse_loss");
  NN_CHECK(input.shape() == target.shape(), "mse_loss: target of shape ", shape_str(target.shape()),
           " differs from the input's shape ", shape_str(input.shape()));
  Tensor d = sub(input, target);
  return reduce_loss(mul(d, d), reduction);
}

}  // namespace nn
