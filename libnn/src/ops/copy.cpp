// Copies and in-place writes: clone, contiguous, dtype and device conversion (differentiable),
// fill_, copy_, add_, mul_ (in place: they bump the version counter).
#include "device_memory.h"
#include "ops/op_util.h"

namespace nn {

Tensor Tensor::clone() const {
  detail::check_defined(*this, "clone");
  Tensor out = detail::make_tensor(shape(), dtype(), device());
  if (numel() > 0) NN_DISPATCH(copy, device())(*this, out);
  if (needs_grad({*this})) record_op("clone", out, {*this}, [](const Tensor& g) -> std::vector<Tensor> { return {g}; });
  return out;
}

Tensor Tensor::contiguous() const {
  detail::check_defined(*this, "contiguous");
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::to(DType target) const {
  detail::check_defined(*this, "to");
  if (target == dtype()) return *this;
  Tensor out = detail::make_tensor(shape(), target, device());
  if (numel() > 0) NN_DISPATCH(copy, device())(*this, out);
  if (needs_grad({*this}) && is_floating(target)) {
    DType source = dtype();
    record_op("to_dtype", out, {*this}, [source](const Tensor& g) -> std::vector<Tensor> { return {g.to(source)}; });
  }
  return out;
}

Tensor Tensor::to(Device target) const {
  detail::check_defined(*this, "to");
  if (target == device()) return *this;
  Tensor src = detail::dense(*this);
  Tensor out = detail::make_tensor(shape(), dtype(), target);
  detail::device_memcpy(out.raw_data(), target, src.raw_data(), src.device(),
                        static_cast<size_t>(numel()) * dtype_size(dtype()));
  if (needs_grad({*this})) {
    Device source = device();
    record_op("to_device", out, {*this}, [source](const Tensor& g) -> std::vector<Tensor> { return {g.to(source)}; });
  }
  return out;
}

Tensor& Tensor::fill_(double value) {
  detail::check_inplace_allowed(*this, "fill_");
  if (numel() > 0) NN_DISPATCH(fill, device())(*this, value);
  storage()->bump_version();
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  detail::check_inplace_allowed(*this, "copy_");
  detail::check_defined(src, "copy_");
  Shape b = broadcast_shapes(src.shape(), shape());
  NN_CHECK(b == shape(), "copy_: source of shape ", shape_str(src.shape()), " does not broadcast to ",
           shape_str(shape()));
  Tensor s = src;
  if (src.device() != device()) s = src.detach().to(device());
  if (numel() > 0) NN_DISPATCH(copy, device())(detail::broadcast_view(s, shape()), *this);
  storage()->bump_version();
  return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  detail::check_inplace_allowed(*this, "add_");
  detail::check_float_pair(*this, other, "add_");
  Shape b = broadcast_shapes(other.shape(), shape());
  NN_CHECK(b == shape(), "add_: operand of shape ", shape_str(other.shape()), " does not broadcast to ",
           shape_str(shape()));
  if (numel() == 0) return *this;
  Tensor scaled = alpha == 1.0 ? other : detail::unary_kernel(UnaryOp::mul_scalar, other, alpha);
  Tensor o = detail::broadcast_view(scaled, shape());
  // The kernel writes a dense output; write into a temporary when this tensor is strided.
  if (is_contiguous()) {
    NN_DISPATCH(binary, device())(BinaryOp::add, *this, o, *this);
  } else {
    Tensor tmp = detail::make_tensor(shape(), dtype(), device());
    NN_DISPATCH(binary, device())(BinaryOp::add, *this, o, tmp);
    NN_DISPATCH(copy, device())(tmp, *this);
  }
  storage()->bump_version();
  return *this;
}

Tensor& Tensor::mul_(double factor) {
  detail::check_inplace_allowed(*this, "mul_");
  detail::check_float(*this, "mul_");
  if (numel() == 0) return *this;
  if (is_contiguous()) {
    NN_DISPATCH(unary, device())(UnaryOp::mul_scalar, *this, *this, factor, 0.0);
  } else {
    Tensor tmp = detail::unary_kernel(UnaryOp::mul_scalar, *this, factor);
    NN_DISPATCH(copy, device())(tmp, *this);
  }
  storage()->bump_version();
  return *this;
}

}  // namespace nn
