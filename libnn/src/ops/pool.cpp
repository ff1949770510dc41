// 2-D pooling, forward and backward: max_pool2d (and its argmax), avg_pool2d, adaptive_avg_pool2d
// over x (N,C,H,W) or unbatched (C,H,W). Output sizes, padding and ceil_mode follow PyTorch:
//   OH = floor((H + 2*pad - KH + (ceil_mode ? stride-1 : 0)) / stride) + 1, minus one when ceil_mode
//   would start the last window past the input and its left padding; padding <= kernel/2.
// Cost: KH*KW reads per output forward; backward writes dx once and scatters dy into it.
#include "ops/op_util.h"

namespace nn {
namespace {

// The 4-D tensor a pooling op works on, and whether the caller gave an unbatched (C,H,W) one.
struct Batched {
  Tensor x;
  bool unbatched;
};

Batched as_batched(const Tensor& x, const char* op) {
  detail::check_float(x, op);
  NN_CHECK(x.dim() == 3 || x.dim() == 4, op, ": expected input of shape (N, C, H, W) or (C, H, W), got ",
           shape_str(x.shape()));
  if (x.dim() == 3) return {x.unsqueeze(0), true};
  return {x, false};
}

Tensor unbatch(const Tensor& t, bool unbatched) { return unbatched ? t.squeeze(0) : t; }

Pool2dGeometry pool_geometry(const Tensor& x4, const Pool2dOptions& o, const char* op) {
  const auto& k = o.kernel;
  NN_CHECK(k[0] > 0 && k[1] > 0, op, ": kernel size must be positive, got (", k[0], ", ", k[1], ")");
  NN_CHECK(o.stride[0] >= 0 && o.stride[1] >= 0, op, ": stride must be positive (or 0 for the kernel size), got (",
           o.stride[0], ", ", o.stride[1], ")");
  const int64_t sh = o.stride[0] == 0 ? k[0] : o.stride[0];
  const int64_t sw = o.stride[1] == 0 ? k[1] : o.stride[1];
  const auto& p = o.padding;
  NN_CHECK(p[0] >= 0 && p[1] >= 0, op, ": padding must be non-negative, got (", p[0], ", ", p[1], ")");
  NN_CHECK(p[0] <= k[0] / 2 && p[1] <= k[1] / 2, op, ": padding (", p[0], ", ", p[1],
           ") must be at most half the kernel size (", k[0], ", ", k[1], ")");
  const Pool2dGeometry g = Pool2dGeometry::from(x4.shape(), k, {sh, sw}, p, o.ceil_mode, o.count_include_pad);
  NN_CHECK(g.oh > 0 && g.ow > 0, op, ": input ", g.h, "x", g.w, " is too small for kernel ", g.kh, "x", g.kw,
           " with stride ", sh, "x", sw, " and padding ", g.pad_h, "x", g.pad_w, " (output would be ", g.oh, "x",
           g.ow, ")");
  return g;
}

// The argmax is computed when asked for or when the backward needs it; otherwise (inference) the
// kernel writes the values only.
std::pair<Tensor, Tensor> max_pool_batched(const Tensor& x, const Pool2dOptions& options, bool want_indices) {
  const Pool2dGeometry g = pool_geometry(x, options, "max_pool2d");
  const Device device = x.device();
  const bool grad = needs_grad({x});
  Tensor y = detail::make_tensor({g.n, g.c, g.oh, g.ow}, x.dtype(), device);
  Tensor argmax;
  if (want_indices || grad) argmax = detail::make_tensor({g.n, g.c, g.oh, g.ow}, DType::i64, device);
  if (y.numel() > 0) NN_DISPATCH(max_pool2d_forward, device)(detail::dense(x), y, argmax, g);
  if (grad) {
    const Shape x_shape = x.shape();
    SavedTensor saved_argmax(argmax);
    record_op("max_pool2d", y, {x}, [=](const Tensor& grad) -> std::vector<Tensor> {
      Tensor dx = detail::make_tensor(x_shape, grad.dtype(), device);
      if (dx.numel() > 0)
        NN_DISPATCH(max_pool2d_backward, device)(detail::dense(grad), saved_argmax.get("max_pool2d"), dx);
      return {dx};
    });
  }
  return {y, argmax};
}

Tensor avg_pool_batched(const Tensor& x, const Pool2dOptions& options) {
  const Pool2dGeometry g = pool_geometry(x, options, "avg_pool2d");
  const Device device = x.device();
  Tensor y = detail::make_tensor({g.n, g.c, g.oh, g.ow}, x.dtype(), device);
  if (y.numel() > 0) NN_DISPATCH(avg_pool2d_forward, device)(detail::dense(x), y, g);
  if (needs_grad({x})) {
    const Shape x_shape = x.shape();
    record_op("avg_pool2d", y, {x}, [=](const Tensor& grad) -> std::vector<Tensor> {
      Tensor dx = detail::make_tensor(x_shape, grad.dtype(), device);
      if (dx.numel() > 0) NN_DISPATCH(avg_pool2d_backward, device)(detail::dense(grad), dx, g);
      return {dx};
    });
  }
  return y;
}

Tensor adaptive_avg_pool_batched(const Tensor& x, std::array<int64_t, 2> size) {
  const Shape& s = x.shape();
  NN_CHECK(size[0] > 0 && size[1] > 0, "adaptive_avg_pool2d: output size must be positive, got (", size[0], ", ",
           size[1], ")");
  NN_CHECK(s[2] > 0 && s[3] > 0, "adaptive_avg_pool2d: input of shape ", shape_str(s), " has an empty plane");
  const Device device = x.device();
  Tensor y = detail::make_tensor({s[0], s[1], size[0], size[1]}, x.dtype(), device);
  if (y.numel() > 0) NN_DISPATCH(adaptive_avg_pool2d_forward, device)(detail::dense(x), y);
  if (needs_grad({x})) {
    const Shape x_shape = x.shape();
    record_op("adaptive_avg_pool2d", y, {x}, [=](const Tensor& grad) -> std::vector<Tensor> {
      Tensor dx = detail::make_tensor(x_shape, grad.dtype(), device);
      if (dx.numel() > 0) NN_DISPATCH(adaptive_avg_pool2d_backward, device)(detail::dense(grad), dx);
      return {dx};
    });
  }
  return y;
}

}  // namespace

std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x, const Pool2dOptions& options) {
  Batched b = as_batched(x, "max_pool2d");
  auto [y, argmax] = max_pool_batched(b.x, options, true);
  return {unbatch(y, b.unbatched), unbatch(argmax, b.unbatched)};
}

Tensor max_pool2d(const Tensor& x, const Pool2dOptions& options) {
  Batched b = as_batched(x, "max_pool2d");
  return unbatch(max_pool_batched(b.x, options, false).first, b.unbatched);
}

Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& options) {
  Batched b = as_batched(x, "avg_pool2d");
  return unbatch(avg_pool_batched(b.x, options), b.unbatched);
}

Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size) {
  Batched b = as_batched(x, "adaptive_avg_pool2d");
  return unbatch(adaptive_avg_pool_batched(b.x, output_size), b.unbatched);
}

}  // namespace nn
