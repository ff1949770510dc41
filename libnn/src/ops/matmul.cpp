// Matrix products, forward and backward: matmul (2-D, batched with broadcast batch dims, 1-D as
// numpy) and linear (x W^T + b). Both run the gemm kernel; transposed operands are passed as
// flags instead of being copied. Cost: 2*M*N*K FLOPs per matrix product; backward is twice that.
#include "ops/op_util.h"

namespace nn {
namespace {

// A 3-D (batch, rows, cols) operand for the gemm kernel: the tensor's storage seen either
// directly (trans=false) or as the transpose of a dense matrix (trans=true), copying only when
// neither works. Batch dims must already be flattened into one.
struct GemmOperand {
  Tensor t;
  bool trans = false;
};

GemmOperand as_gemm_operand(const Tensor& x3) {
  const Shape& sh = x3.shape();
  const Shape& st = x3.strides();
  const int64_t rows = sh[1], cols = sh[2];
  const bool batch_ok = sh[0] == 1 || st[0] == 0 || st[0] == rows * cols;
  if (batch_ok && (cols == 1 || st[2] == 1) && (rows == 1 || st[1] == cols)) return {x3, false};
  if (batch_ok && (rows == 1 || st[1] == 1) && (cols == 1 || st[2] == rows)) {
    // Stored as the dense (batch, cols, rows) transpose.
    Tensor stored = detail::make_view(x3, {sh[0], cols, rows}, {st[0], rows == 1 ? 1 : st[2], 1}, x3.offset());
    return {stored, true};
  }
  return {detail::dense(x3), false};
}

// c (B,M,N) = a (B,M,K) @ b (B,K,N) on 3-D views (no autograd); a zero batch stride broadcasts.
Tensor gemm3(const Tensor& a3, const Tensor& b3, const Tensor& bias = Tensor()) {
  const int64_t batch = std::max(a3.shape()[0], b3.shape()[0]);
  const int64_t m = a3.shape()[1], n = b3.shape()[2];
  Tensor c = detail::make_tensor({batch, m, n}, a3.dtype(), a3.device());
  if (c.numel() == 0) return c;
  if (a3.shape()[2] == 0) {
    NN_DISPATCH(fill, c.device())(c, 0.0);
    return c;
  }
  auto broadcast_batch = [batch](const Tensor& t) {
    if (t.shape()[0] == batch) return t;
    return detail::make_view(t, {batch, t.shape()[1], t.shape()[2]}, {0, t.strides()[1], t.strides()[2]}, t.offset());
  };
  GemmOperand ga = as_gemm_operand(broadcast_batch(a3));
  GemmOperand gb = as_gemm_operand(broadcast_batch(b3));
  double beta = 0.0;
  if (bias.defined()) {
    NN_DISPATCH(copy, c.device())(detail::broadcast_view(bias, c.shape()), c);
    beta = 1.0;
  }
  NN_DISPATCH(gemm, c.device())(ga.t, ga.trans, gb.t, gb.trans, c, 1.0, beta);
  return c;
}

// Batched matmul of two >= 2-D tensors, no autograd.
Tensor matmul_kernel(const Tensor& a, const Tensor& b) {
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  Shape batch_a(a.shape().begin(), a.shape().end() - 2), batch_b(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(batch_a, batch_b);
  const int64_t nbatch = shape_numel(batch);
  auto to3 = [&](const Tensor& t, const Shape& own_batch, int64_t r, int64_t c) {
    if (shape_numel(own_batch) == 1 && nbatch > 1) {  // broadcast a single matrix: batch stride 0
      Tensor m2 = t.dim() == 2 ? t : detail::make_view(t, {r, c}, {t.stride(-2), t.stride(-1)}, t.offset());
      return detail::make_view(m2, {1, r, c}, {0, m2.strides()[0], m2.strides()[1]}, m2.offset());
    }
    Shape full = batch;
    full.push_back(r);
    full.push_back(c);
    Tensor e = detail::broadcast_view(t, full);
    if (!(own_batch == batch)) e = detail::dense(e);
    NoGradGuard ng;
    if (e.dim() == 2) return e.unsqueeze(0);
    // Merge the batch dims; works as a view whenever they are dense among themselves.
    return e.reshape({nbatch, r, c});
  };
  Tensor c3 = gemm3(to3(a, batch_a, m, k), to3(b, batch_b, k, n));
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  return c3.view(out_shape);
}

Tensor matmul_nd(const Tensor& a, const Tensor& b) {
  NN_CHECK(a.size(-1) == b.size(-2), "matmul: inner dimensions differ: ", shape_str(a.shape()), " @ ",
           shape_str(b.shape()));
  Tensor out = matmul_kernel(a, b);
  if (needs_grad({a, b})) {
    SavedTensor sa(a), sb(b);
    const bool ga = wants_grad(a), gb = wants_grad(b);
    const Shape as = a.shape(), bs = b.shape();
    record_op("matmul", out, {a, b}, [=](const Tensor& g) -> std::vector<Tensor> {
      Tensor da, db;
      if (ga) da = sum_to(matmul_kernel(g, sb.get("matmul").transpose(-1, -2)), as);
      if (gb) db = sum_to(matmul_kernel(sa.get("matmul").transpose(-1, -2), g), bs);
      return {da, db};
    });
  }
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  detail::check_float_pair(a, b, "matmul");
  NN_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: both operands need at least one dimension, got ",
           shape_str(a.shape()), " and ", shape_str(b.shape()));
  if (a.dim() == 1 && b.dim() == 1) return matmul_nd(a.unsqueeze(0), b.unsqueeze(-1)).reshape({});
  if (a.dim() == 1) return matmul_nd(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul_nd(a, b.unsqueeze(-1)).squeeze(-1);
  return matmul_nd(a, b);
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  detail::check_float_pair(x, weight, "linear");
  NN_CHECK(weight.dim() == 2, "linear: weight must be 2-D (out_features, in_features), got ", shape_str(weight.shape()));
  NN_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input of shape ", shape_str(x.shape()),
           " does not end in in_features=", weight.size(1), " (weight ", shape_str(weight.shape()), ")");
  if (bias.defined()) {
    detail::check_float_pair(x, bias, "linear");
    NN_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "linear: bias of shape ", shape_str(bias.shape()),
             " does not match out_features=", weight.size(0));
  }
  const int64_t in = weight.size(1), out_features = weight.size(0);
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  const int64_t rows = x.numel() / std::max<int64_t>(in, 1);
  Tensor x2, w3;
  {
    NoGradGuard ng;
    x2 = x.reshape({1, rows, in});
    w3 = weight.t().unsqueeze(0);  // (1, in, out): the transposed view, passed as a flag
  }
  Tensor y = gemm3(x2, w3, bias).view(out_shape);
  if (needs_grad({x, weight, bias})) {
    SavedTensor sx(x), sw(weight);
    const bool gx = wants_grad(x), gw = wants_grad(weight), gbias = bias.defined() && wants_grad(bias);
    const Shape xs = x.shape();
    record_op("linear", y, {x, weight, bias}, [=](const Tensor& g) -> std::vector<Tensor> {
      Tensor g2 = g.reshape({1, rows, out_features});
      Tensor dx, dw, db;
      if (gx) dx = gemm3(g2, sw.get("linear").unsqueeze(0)).view(xs);
      if (gw) {
        Tensor x3 = sx.get("linear").reshape({1, rows, in});
        dw = gemm3(g2.transpose(1, 2), x3).view({out_features, in});
      }
      if (gbias) db = detail::sum_kernel(g2.view({rows, out_features}), {0}, false);
      return {dx, dw, db};
    });
  }
  return y;
}

}  // namespace nn
