// conv2d, forward and backward: x (N,C,H,W) or unbatched (C,H,W), weight (O,C,KH,KW), optional
// bias (O) -> (N,O,OH,OW) with OH = (H + 2*pad_h - KH) / stride_h + 1 (likewise OW). Checks every
// user-facing condition here; the backend kernels (conv_cpu.cpp) see dense tensors and a
// Conv2dGeometry. options.relu fuses a ReLU into the output pass (and masks the gradient by y > 0);
// options.max_pool_2x2 pools the output 2x2 (the backend's conv2d_max_pool_forward when nothing
// needs a gradient, else conv2d then max_pool2d, whose backward the gradient needs).
// Cost: 2*N*O*OH*OW*C*KH*KW FLOPs forward, twice that for backward (input and
// weight), plus a sum over dy for the bias.
#include "ops/op_util.h"

namespace nn {
namespace {

Conv2dGeometry conv_geometry(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& options) {
  const char* op = "conv2d";
  detail::check_float(x, op);
  detail::check_float(weight, op);
  detail::check_same_device(x, weight, op);
  NN_CHECK(x.dtype() == weight.dtype(), "conv2d: input is ", dtype_name(x.dtype()), " but weight is ",
           dtype_name(weight.dtype()));
  NN_CHECK(x.dim() == 4, "conv2d: expected input of shape (N, C, H, W) or (C, H, W), got ", shape_str(x.shape()));
  NN_CHECK(weight.dim() == 4, "conv2d: expected weight of shape (out_channels, in_channels, KH, KW), got ",
           shape_str(weight.shape()));
  const Shape& xs = x.shape();
  const Shape& ws = weight.shape();
  NN_CHECK(ws[0] > 0 && ws[1] > 0 && ws[2] > 0 && ws[3] > 0, "conv2d: weight of shape ", shape_str(ws),
           " has a zero-sized dimension");
  NN_CHECK(xs[1] == ws[1], "conv2d: input has ", xs[1], " channels (shape ", shape_str(xs), ") but weight of shape ",
           shape_str(ws), " expects ", ws[1], " input channels");
  if (bias.defined()) {
    detail::check_float(bias, op);
    detail::check_same_device(x, bias, op);
    NN_CHECK(bias.dtype() == x.dtype(), "conv2d: input is ", dtype_name(x.dtype()), " but bias is ",
             dtype_name(bias.dtype()));
    NN_CHECK(bias.dim() == 1 && bias.shape()[0] == ws[0], "conv2d: bias must have shape (", ws[0],
             ") to match the weight's ", ws[0], " output channels, got ", shape_str(bias.shape()));
  }
  const auto& stride = options.stride;
  const auto& pad = options.padding;
  NN_CHECK(stride[0] > 0 && stride[1] > 0, "conv2d: stride must be positive, got (", stride[0], ", ", stride[1], ")");
  NN_CHECK(pad[0] >= 0 && pad[1] >= 0, "conv2d: padding must be non-negative, got (", pad[0], ", ", pad[1], ")");
  const int64_t padded_h = xs[2] + 2 * pad[0], padded_w = xs[3] + 2 * pad[1];
  NN_CHECK(ws[2] <= padded_h && ws[3] <= padded_w, "conv2d: kernel ", ws[2], "x", ws[3],
           " is larger than the padded input ", padded_h, "x", padded_w, " (input ", xs[2], "x", xs[3], ", padding ",
           pad[0], "x", pad[1], ")");
  return Conv2dGeometry::from(xs, ws, stride, pad);
}

Tensor conv2d_batched(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& options) {
  const Conv2dGeometry g = conv_geometry(x, weight, bias, options);
  const Device device = x.device();
  Tensor xd = detail::dense(x), wd = detail::dense(weight);
  Tensor bd = bias.defined() ? detail::dense(bias) : Tensor();
  const bool relu = options.relu;
  if (options.max_pool_2x2) {
    if (needs_grad({x, weight, bias}) || g.oh < 2 || g.ow < 2) {
      Conv2dOptions unpooled = options;
      unpooled.max_pool_2x2 = false;
      return max_pool2d(conv2d_batched(x, weight, bias, unpooled), Pool2dOptions{});
    }
    Tensor y = detail::make_tensor({g.n, g.o, g.oh / 2, g.ow / 2}, x.dtype(), device);
    if (y.numel() > 0) NN_DISPATCH(conv2d_max_pool_forward, device)(xd, wd, bd, y, g, relu);
    return y;
  }
  Tensor y = detail::make_tensor({g.n, g.o, g.oh, g.ow}, x.dtype(), device);
  if (y.numel() > 0) NN_DISPATCH(conv2d_forward, device)(xd, wd, bd, y, g, relu);
  if (!needs_grad({x, weight, bias})) return y;

  const bool gx = wants_grad(x), gw = wants_grad(weight), gb = bias.defined() && wants_grad(bias);
  // dx needs only w, dw only x: save what the requested gradients read. The dense copies are
  // saved, so a non-contiguous input is not copied again in backward.
  SavedTensor saved_x = gw ? SavedTensor(xd) : SavedTensor();
  SavedTensor saved_w = gx ? SavedTensor(wd) : SavedTensor();
  // With the fused ReLU the incoming gradient is masked by y > 0 first (y saved: no extra memory
  // next to the separate ReLU op, which saves its output too).
  SavedTensor saved_y = relu ? SavedTensor(y) : SavedTensor();
  const Shape x_shape = x.shape(), w_shape = weight.shape();
  const DType dtype = x.dtype();
  record_op(relu ? "conv2d_relu" : "conv2d", y, {x, weight, bias}, [=](const Tensor& grad) -> std::vector<Tensor> {
    Tensor dy = relu ? detail::binary_kernel(BinaryOp::relu_backward, grad, saved_y.get("conv2d_relu"))
                     : detail::dense(grad);
    Tensor dx, dw, db;
    if (gx) {
      dx = detail::make_tensor(x_shape, dtype, device);
      if (dy.numel() > 0) NN_DISPATCH(conv2d_backward_input, device)(dy, saved_w.get("conv2d"), dx, g);
      else if (dx.numel() > 0) NN_DISPATCH(fill, device)(dx, 0.0);
    }
    if (gw) {
      dw = detail::make_tensor(w_shape, dtype, device);
      if (dy.numel() > 0) NN_DISPATCH(conv2d_backward_weight, device)(dy, saved_x.get("conv2d"), dw, g);
      else NN_DISPATCH(fill, device)(dw, 0.0);
    }
    if (gb) {
      // Over each plane first (dense rows, no copy), then over the batch: summing over dims
      // {0, 2, 3} at once would first copy all of dy into (O, N*OH*OW) order.
      Tensor per_plane = detail::sum_kernel(dy.view({g.n, g.o, g.oh * g.ow}), {2}, /*keepdim=*/false);
      db = detail::sum_kernel(per_plane, {0}, /*keepdim=*/false);
    }
    return {dx, dw, db};
  });
  return y;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& options) {
  detail::check_defined(x, "conv2d");
  // An unbatched (C,H,W) input is a batch of one; the views carry the gradient through.
  if (x.dim() == 3) return conv2d_batched(x.unsqueeze(0), weight, bias, options).squeeze(0);
  return conv2d_batched(x, weight, bias, options);
}

}  // namespace nn
