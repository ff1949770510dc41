// Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
// Gradient-based Localization") for any model that is a chain of named layers, and its
// jet-coloured overlay.
//
// Algorithm (input x (1, C_in, H, W), target t, activations taken after the layer L):
//   1. A0 = forward_to(model, x, L) with grad mode off (fused Conv2d+ReLU where they run together).
//   2. A  = A0.detach().requires_grad_(): a fresh leaf owned by this call.
//   3. logits = forward_from(model, A, L) with gradients for A only (GradientsOnlyFor); backward
//      from logits[0, t].
//   4. w_c = mean_{i,j} dA[c,i,j]; cam = relu(sum_c w_c A[c]) (h, w), accumulated in double.
//   5. up = bilinear upsampling of cam to H x W, PyTorch's align_corners=False rule; heatmap =
//      up / max(up) (x / x is exactly 1 in float, so the maximum is exactly 1), zeros when max is 0.
// Both passes run under EvalModeGuard. Thread-safety and no mutation: see nn/explain.h.
#include "nn/explain.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "nn/autograd.h"
#include "nn/error.h"
#include "nn/named_layers.h"
#include "nn/ops.h"

namespace nn::explain {

Tensor upsample_bilinear(const Tensor& map, int64_t height, int64_t width) {
  NN_CHECK(map.defined() && map.dim() == 2, "upsample_bilinear: expected a 2-D map (h, w)");
  NN_CHECK(height > 0 && width > 0, "upsample_bilinear: the output size must be positive, got ", height, "x", width);
  const int64_t h = map.size(0), w = map.size(1);
  NN_CHECK(h > 0 && w > 0, "upsample_bilinear: empty map");
  const std::vector<float> in = map.contiguous().to_vector<float>();
  // PyTorch (align_corners=False, size given): scale = in / out, src = max(scale * (dst + 0.5) - 0.5, 0),
  // i0 = floor(src), i1 = i0 + (i0 < in - 1), lambda = src - i0; computed in float as its CPU kernel.
  struct Tap {
    int64_t i0, i1;
    float l0, l1;
  };
  auto taps = [](int64_t n_in, int64_t n_out) {
    std::vector<Tap> t(static_cast<size_t>(n_out));
    const float scale = static_cast<float>(n_in) / static_cast<float>(n_out);
    for (int64_t d = 0; d < n_out; ++d) {
      float src = scale * (static_cast<float>(d) + 0.5f) - 0.5f;
      if (src < 0) src = 0;
      int64_t i0 = static_cast<int64_t>(src);
      if (i0 > n_in - 1) i0 = n_in - 1;
      const int64_t i1 = i0 + (i0 < n_in - 1 ? 1 : 0);
      const float l1 = src - static_cast<float>(i0);
      t[static_cast<size_t>(d)] = {i0, i1, 1.0f - l1, l1};
    }
    return t;
  };
  const std::vector<Tap> ty = taps(h, height), tx = taps(w, width);
  Tensor out = empty({height, width});
  float* o = out.data<float>();
  for (int64_t y = 0; y < height; ++y) {
    const Tap& a = ty[static_cast<size_t>(y)];
    const float* r0 = in.data() + a.i0 * w;
    const float* r1 = in.data() + a.i1 * w;
    for (int64_t x = 0; x < width; ++x) {
      const Tap& b = tx[static_cast<size_t>(x)];
      o[y * width + x] = a.l0 * (b.l0 * r0[b.i0] + b.l1 * r0[b.i1]) + a.l1 * (b.l0 * r1[b.i0] + b.l1 * r1[b.i1]);
    }
  }
  return out;
}

GradCam grad_cam(Module& model, const Tensor& input, const std::string& layer, int64_t target_class) {
  NN_CHECK(input.defined() && input.dim() == 4 && input.size(0) == 1,
           "grad_cam: expected one preprocessed input (1, C, H, W), got ",
           input.defined() ? shape_str(input.shape()) : std::string("an undefined tensor"));
  NN_CHECK(grad_mode_enabled(), "grad_cam: grad mode is off in this thread (called inside a NoGradGuard)");
  const std::vector<std::string> layers = layer_names(model);
  NN_CHECK(layers.empty() || layer != layers.back(), "grad_cam: '", layer,
           "' is the model's last layer; Grad-CAM needs a layer before the logits");
  EvalModeGuard eval;

  // 1-2. The activations, as a leaf of our own.
  Tensor a;
  {
    NoGradGuard no_grad;
    a = forward_to(model, input, layer);
  }
  NN_CHECK(a.dim() == 4 && a.size(0) == 1, "grad_cam: layer ", layer, " gave ", shape_str(a.shape()),
           ", not a (1, C, h, w) activation map");
  a = a.detach().requires_grad_(true);

  // 3. The rest of the model, differentiated with respect to A only; backward from the target logit.
  GradientsOnlyFor only_a({a});
  Tensor logits = forward_from(model, a, layer);
  NN_CHECK(logits.dim() == 2 && logits.size(0) == 1, "grad_cam: the model gave ", shape_str(logits.shape()),
           ", not logits (1, K)");
  const int64_t k = logits.size(1);
  const std::vector<float> lv = logits.to_vector<float>();
  if (target_class < 0) {
    NN_CHECK(target_class == -1, "grad_cam: target_class must be -1 (the argmax) or in [0, ", k, "), got ",
             target_class);
    target_class = static_cast<int64_t>(std::max_element(lv.begin(), lv.end()) - lv.begin());
  }
  NN_CHECK(target_class < k, "grad_cam: target_class ", target_class, " is not in [0, ", k, ")");
  Tensor target = logits.select(0, 0).select(0, target_class);
  target.backward();
  Tensor grad = a.grad();

  GradCam out;
  out.target_class = target_class;
  out.logit = lv[static_cast<size_t>(target_class)];
  out.layer = layer;

  // 4. Channel weights and the low-resolution map.
  const int64_t c = a.size(1), h = a.size(2), w = a.size(3), hw = h * w;
  const std::vector<float> av = a.detach().contiguous().to_vector<float>();
  const std::vector<float> gv = grad.defined() ? grad.contiguous().to_vector<float>()
                                               : std::vector<float>(av.size(), 0.0f);
  std::vector<double> cam(static_cast<size_t>(hw), 0.0);
  for (int64_t ch = 0; ch < c; ++ch) {
    double wc = 0;
    for (int64_t p = 0; p < hw; ++p) wc += gv[static_cast<size_t>(ch * hw + p)];
    wc /= static_cast<double>(hw);
    if (wc == 0) continue;
    for (int64_t p = 0; p < hw; ++p) cam[static_cast<size_t>(p)] += wc * av[static_cast<size_t>(ch * hw + p)];
  }
  out.activations_cam = empty({h, w});
  float* cm = out.activations_cam.data<float>();
  for (int64_t p = 0; p < hw; ++p) cm[p] = static_cast<float>(std::max(0.0, cam[static_cast<size_t>(p)]));

  // 5. Upsampled and normalised by its maximum.
  out.heatmap = upsample_bilinear(out.activations_cam, input.size(2), input.size(3));
  float* hm = out.heatmap.data<float>();
  const int64_t n = out.heatmap.numel();
  const float mx = n > 0 ? *std::max_element(hm, hm + n) : 0.0f;
  for (int64_t i = 0; i < n; ++i) hm[i] = mx > 0 ? hm[i] / mx : 0.0f;
  return out;
}

void jet_color(double v, float rgb[3]) {
  // matplotlib's _jet_data: (x, value) breakpoints per channel, linear in between.
  struct Pt {
    double x, y;
  };
  static const std::vector<Pt> kR{{0, 0}, {0.35, 0}, {0.66, 1}, {0.89, 1}, {1, 0.5}};
  static const std::vector<Pt> kG{{0, 0}, {0.125, 0}, {0.375, 1}, {0.64, 1}, {0.91, 0}, {1, 0}};
  static const std::vector<Pt> kB{{0, 0.5}, {0.11, 1}, {0.34, 1}, {0.65, 0}, {1, 0}};
  if (!(v >= 0)) v = 0;  // NaN too
  if (v > 1) v = 1;
  auto eval = [v](const std::vector<Pt>& pts) {
    for (size_t i = 1; i < pts.size(); ++i)
      if (v <= pts[i].x) {
        const double t = (v - pts[i - 1].x) / (pts[i].x - pts[i - 1].x);
        return static_cast<float>(pts[i - 1].y + t * (pts[i].y - pts[i - 1].y));
      }
    return static_cast<float>(pts.back().y);
  };
  rgb[0] = eval(kR);
  rgb[1] = eval(kG);
  rgb[2] = eval(kB);
}

data::Image colorize_blend(const Tensor& heatmap, const data::Image& image, double alpha) {
  NN_CHECK(heatmap.defined() && heatmap.dim() == 2 && heatmap.numel() > 0,
           "colorize_blend: expected a non-empty 2-D heatmap (H, W)");
  NN_CHECK(image.height > 0 && image.width > 0, "colorize_blend: empty image");
  NN_CHECK(alpha >= 0 && alpha <= 1, "colorize_blend: alpha must be in [0, 1], got ", alpha);
  data::Image heat;
  heat.height = heatmap.size(0);
  heat.width = heatmap.size(1);
  heat.channels = 1;
  heat.pixels = heatmap.contiguous().to_vector<float>();
  if (heat.height != image.height || heat.width != image.width) heat = data::resize(heat, image.height, image.width);
  data::Image out = data::to_rgb(image);
  const float a = static_cast<float>(alpha);
  const int64_t n = out.height * out.width;
  for (int64_t i = 0; i < n; ++i) {
    float rgb[3];
    jet_color(heat.pixels[static_cast<size_t>(i)], rgb);
    for (int ch = 0; ch < 3; ++ch) {
      float& p = out.pixels[static_cast<size_t>(i * 3 + ch)];
      p = std::clamp((1.0f - a) * p + a * rgb[ch], 0.0f, 1.0f);
    }
  }
  return out;
}

}  // namespace nn::explain
