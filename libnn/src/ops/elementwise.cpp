// Broadcasting binary ops (add, sub, mul, div, pow, maximum, minimum) and their scalar forms,
// forward and backward. Gradients of broadcast inputs are summed back to the input's shape.
#include <algorithm>

#include "ops/op_util.h"

namespace nn {

namespace detail {

Tensor dense(const Tensor& x) {
  if (x.is_contiguous()) return x;
  Tensor out = make_tensor(x.shape(), x.dtype(), x.device());
  NN_DISPATCH(copy, x.device())(x, out);
  return out;
}

Tensor broadcast_view(const Tensor& t, const Shape& shape) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  const int64_t td = t.dim();
  NN_ASSERT(td <= nd, "broadcast_view: rank");
  Shape strides(nd, 0);
  for (int64_t i = 0; i < td; ++i) {
    int64_t d = nd - td + i;
    if (t.shape()[i] == shape[d]) strides[d] = t.strides()[i];
    else NN_ASSERT(t.shape()[i] == 1, "broadcast_view: size mismatch");
  }
  return make_view(t, shape, strides, t.offset());
}

void check_float_pair(const Tensor& a, const Tensor& b, const char* op) {
  check_float(a, op);
  check_float(b, op);
  check_same_device(a, b, op);
  check_same_dtype(a, b, op);
}

Tensor unary_kernel(UnaryOp op, const Tensor& x, double alpha, double beta) {
  Tensor out = make_tensor(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) NN_DISPATCH(unary, x.device())(op, x, out, alpha, beta);
  return out;
}

Tensor binary_kernel(BinaryOp op, const Tensor& a, const Tensor& b) {
  Shape shape = broadcast_shapes(a.shape(), b.shape());
  Tensor out = make_tensor(shape, a.dtype(), a.device());
  if (out.numel() > 0) {
    Tensor av = broadcast_view(a, shape), bv = broadcast_view(b, shape);
    NN_DISPATCH(binary, a.device())(op, av, bv, out);
  }
  return out;
}

}  // namespace detail

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t nd = std::max(a.size(), b.size());
  Shape out(nd);
  for (size_t i = 0; i < nd; ++i) {
    int64_t da = i < nd - a.size() ? 1 : a[i - (nd - a.size())];
    int64_t db = i < nd - b.size() ? 1 : b[i - (nd - b.size())];
    NN_CHECK(da == db || da == 1 || db == 1, "shapes ", shape_str(a), " and ", shape_str(b),
             " cannot be broadcast together (dimension ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor sum_to(const Tensor& t, const Shape& shape) {
  if (t.shape() == shape) return t;
  const int64_t lead = t.dim() - static_cast<int64_t>(shape.size());
  NN_CHECK(lead >= 0, "sum_to: cannot reduce ", shape_str(t.shape()), " to ", shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < t.dim(); ++i) {
    if (i < lead) dims.push_back(i);
    else if (shape[i - lead] == 1 && t.shape()[i] != 1) dims.push_back(i);
    else NN_CHECK(shape[i - lead] == t.shape()[i], "sum_to: cannot reduce ", shape_str(t.shape()), " to ",
                  shape_str(shape));
  }
  Tensor s = dims.empty() ? t : sum(t, dims, /*keepdim=*/true);
  return s.reshape(shape);
}

namespace {

using detail::binary_kernel;
using detail::unary_kernel;

Tensor binary_forward(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  detail::check_float_pair(a, b, name);
  Tensor out = binary_kernel(op, a, b);
  if (!needs_grad({a, b})) return out;
  const Shape as = a.shape(), bs = b.shape();
  SavedTensor sa, sb, so;
  if (op == BinaryOp::mul || op == BinaryOp::div || op == BinaryOp::pow || op == BinaryOp::maximum ||
      op == BinaryOp::minimum) {
    sa = SavedTensor(a);
    sb = SavedTensor(b);
  }
  if (op == BinaryOp::div || op == BinaryOp::pow) so = SavedTensor(out);
  const bool ga = wants_grad(a), gb = wants_grad(b);
  std::string op_name = name;
  record_op(name, out, {a, b}, [=](const Tensor& g) -> std::vector<Tensor> {
    Tensor da, db;
    switch (op) {
      case BinaryOp::add:
        da = g;
        db = g;
        break;
      case BinaryOp::sub:
        da = g;
        if (gb) db = neg(g);
        break;
      case BinaryOp::mul:
        if (ga) da = mul(g, sb.get(op_name));
        if (gb) db = mul(g, sa.get(op_name));
        break;
      case BinaryOp::div: {
        Tensor bv = sb.get(op_name);
        if (ga) da = div(g, bv);
        if (gb) db = neg(div(mul(g, so.get(op_name)), bv));  // -g * a / b^2 = -g * out / b
        break;
      }
      case BinaryOp::pow: {
        Tensor av = sa.get(op_name), bv = sb.get(op_name);
        if (ga) da = mul(mul(g, bv), pow(av, sub(bv, 1.0)));
        if (gb) db = mul(mul(g, so.get(op_name)), log(av));
        break;
      }
      case BinaryOp::maximum:
      case BinaryOp::minimum: {
        BinaryOp mask_op = op == BinaryOp::maximum ? BinaryOp::max_backward_a : BinaryOp::min_backward_a;
        Tensor mask = binary_kernel(mask_op, sa.get(op_name), sb.get(op_name));  // ties go to a
        if (ga) da = mul(g, mask);
        if (gb) db = mul(g, sub(1.0, mask));
        break;
      }
      default:
        NN_ASSERT(false, "no backward for binary op");
    }
    if (da.defined()) da = sum_to(da, as);
    if (db.defined()) db = sum_to(db, bs);
    return {ga ? da : Tensor(), gb ? db : Tensor()};
  });
  return out;
}

// x op scalar, with d(out)/dx = factor(x, out) computed in backward.
Tensor scalar_forward(UnaryOp op, const char* name, const Tensor& x, double s) {
  detail::check_float(x, name);
  Tensor out = unary_kernel(op, x, s);
  if (!needs_grad({x})) return out;
  SavedTensor sx, so;
  if (op == UnaryOp::pow_scalar) sx = SavedTensor(x);
  if (op == UnaryOp::rdiv_scalar) {
    sx = SavedTensor(x);
    so = SavedTensor(out);
  }
  std::string op_name = name;
  record_op(name, out, {x}, [=](const Tensor& g) -> std::vector<Tensor> {
    switch (op) {
      case UnaryOp::add_scalar: return {g};
      case UnaryOp::mul_scalar: return {mul(g, s)};
      case UnaryOp::rsub_scalar: return {neg(g)};
      case UnaryOp::rdiv_scalar:  // d(s/x)/dx = -s/x^2 = -out/x
        return {neg(div(mul(g, so.get(op_name)), sx.get(op_name)))};
      case UnaryOp::pow_scalar:
        if (s == 0.0) return {zeros_like(g)};
        return {mul(g, mul(pow(sx.get(op_name), s - 1.0), s))};
      default: NN_ASSERT(false, "no backward for scalar op");
    }
  });
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::add, "add", a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::sub, "sub", a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::mul, "mul", a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::div, "div", a, b); }
Tensor pow(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::pow, "pow", a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::maximum, "maximum", a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::minimum, "minimum", a, b); }

Tensor add(const Tensor& a, double s) { return scalar_forward(UnaryOp::add_scalar, "add", a, s); }
Tensor sub(const Tensor& a, double s) { return scalar_forward(UnaryOp::add_scalar, "sub", a, -s); }
Tensor sub(double s, const Tensor& a) { return scalar_forward(UnaryOp::rsub_scalar, "rsub", a, s); }
Tensor mul(const Tensor& a, double s) { return scalar_forward(UnaryOp::mul_scalar, "mul", a, s); }
Tensor div(const Tensor& a, double s) { return scalar_forward(UnaryOp::mul_scalar, "div", a, 1.0 / s); }
Tensor div(double s, const Tensor& a) { return scalar_forward(UnaryOp::rdiv_scalar, "rdiv", a, s); }
Tensor pow(const Tensor& a, double e) { return scalar_forward(UnaryOp::pow_scalar, "pow", a, e); }

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& a, double s) { return add(a, s); }
Tensor operator+(double s, const Tensor& a) { return add(a, s); }
Tensor operator-(const Tensor& a, double s) { return sub(a, s); }
Tensor operator-(double s, const Tensor& a) { return sub(s, a); }
Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
Tensor operator/(const Tensor& a, double s) { return div(a, s); }
Tensor operator/(double s, const Tensor& a) { return div(s, a); }
Tensor operator-(const Tensor& a) { return neg(a); }

}  // namespace nn
