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
  return grad_cam_batch(model, input, layer, {target_class}).front();
}

std::vector<GradCam> grad_cam_batch(Module& model, const Tensor& inputs, const std::string& layer,
                                    const std::vector<int64_t>& target_classes) {
  NN_CHECK(inputs.defined() && inputs.dim() == 4 && inputs.size(0) >= 1,
           "grad_cam: expected preprocessed inputs (N, C, H, W), got ",
           inputs.defined() ? shape_str(inputs.shape()) : std::string("an undefined tensor"));
  const int64_t n = inputs.size(0);
  NN_CHECK(target_classes.empty() || static_cast<int64_t>(target_classes.size()) == n, "grad_cam: ",
           target_classes.size(), " target classes for ", n, " inputs");
  NN_CHECK(grad_mode_enabled(), "grad_cam: grad mode is off in this thread (called inside a NoGradGuard)");
  const std::vector<std::string> layers = layer_names(model);
  NN_CHECK(layers.empty() || layer != layers.back(), "grad_cam: '", layer,
           "' is the model's last layer; Grad-CAM needs a layer before the logits");
  EvalModeGuard eval;

  // 1-2. The activations, as a leaf of our own.
  Tensor a;
  {
    NoGradGuard no_grad;
    a = forward_to(model, inputs, layer);
  }
  NN_CHECK(a.dim() == 4 && a.size(0) == n, "grad_cam: layer ", layer, " gave ", shape_str(a.shape()),
           ", not an activation map (N, C, h, w)");
  a = a.detach().requires_grad_(true);

  // 3. The rest of the model, differentiated with respect to A only; backward from the sum of the
  // targets' logits (image i's logits depend on A[i] only).
  GradientsOnlyFor only_a({a});
  Tensor logits = forward_from(model, a, layer);
  NN_CHECK(logits.dim() == 2 && logits.size(0) == n, "grad_cam: the model gave ", shape_str(logits.shape()),
           ", not logits (N, K)");
  const int64_t k = logits.size(1);
  const std::vector<float> lv = logits.detach().contiguous().to_vector<float>();
  std::vector<int64_t> targets(static_cast<size_t>(n), -1);
  for (int64_t i = 0; i < n; ++i) {
    int64_t t = target_classes.empty() ? -1 : target_classes[static_cast<size_t>(i)];
    if (t < 0) {
      NN_CHECK(t == -1, "grad_cam: target_class must be -1 (the argmax) or in [0, ", k, "), got ", t);
      t = static_cast<int64_t>(std::max_element(lv.begin() + i * k, lv.begin() + (i + 1) * k) - (lv.begin() + i * k));
    }
    NN_CHECK(t < k, "grad_cam: target_class ", t, " is not in [0, ", k, ")");
    targets[static_cast<size_t>(i)] = t;
  }
  std::vector<float> pick(static_cast<size_t>(n * k), 0.0f);
  for (int64_t i = 0; i < n; ++i) pick[static_cast<size_t>(i * k + targets[static_cast<size_t>(i)])] = 1.0f;
  Tensor selector = from_vector(pick, {n, k}).to(logits.device()).to(logits.dtype());
  sum(mul(logits, selector)).backward();
  Tensor grad = a.grad();

  // 4-5. Per image: channel weights, the low-resolution map, upsampled and normalised.
  const int64_t c = a.size(1), h = a.size(2), w = a.size(3), hw = h * w;
  const std::vector<float> av = a.detach().contiguous().to_vector<float>();
  const std::vector<float> gv = grad.defined() ? grad.contiguous().to_vector<float>()
                                               : std::vector<float>(av.size(), 0.0f);
  std::vector<GradCam> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    GradCam& r = out[static_cast<size_t>(i)];
    r.target_class = targets[static_cast<size_t>(i)];
    r.logit = lv[static_cast<size_t>(i * k + r.target_class)];
    r.layer = layer;
    const float* ai = av.data() + i * c * hw;
    const float* gi = gv.data() + i * c * hw;
    std::vector<double> cam(static_cast<size_t>(hw), 0.0);
    for (int64_t ch = 0; ch < c; ++ch) {
      double wc = 0;
      for (int64_t p = 0; p < hw; ++p) wc += gi[ch * hw + p];
      wc /= static_cast<double>(hw);
      if (wc == 0) continue;
      for (int64_t p = 0; p < hw; ++p) cam[static_cast<size_t>(p)] += wc * ai[ch * hw + p];
    }
    r.activations_cam = empty({h, w});
    float* cm = r.activations_cam.data<float>();
    for (int64_t p = 0; p < hw; ++p) cm[p] = static_cast<float>(std::max(0.0, cam[static_cast<size_t>(p)]));
    r.heatmap = upsample_bilinear(r.activations_cam, inputs.size(2), inputs.size(3));
    float* hm = r.heatmap.data<float>();
    const int64_t total = r.heatmap.numel();
    const float mx = total > 0 ? *std::max_element(hm, hm + total) : 0.0f;
    for (int64_t p = 0; p < total; ++p) hm[p] = mx > 0 ? hm[p] / mx : 0.0f;
  }
  return out;
}

namespace {

// matplotlib's _jet_data: (x, value) breakpoints per channel, linear in between.
struct JetPoint {
  double x, y;
};
constexpr JetPoint kJetR[] = {{0, 0}, {0.35, 0}, {0.66, 1}, {0.89, 1}, {1, 0.5}};
constexpr JetPoint kJetG[] = {{0, 0}, {0.125, 0}, {0.375, 1}, {0.64, 1}, {0.91, 0}, {1, 0}};
constexpr JetPoint kJetB[] = {{0, 0.5}, {0.11, 1}, {0.34, 1}, {0.65, 0}, {1, 0}};

template <size_t N>
inline float jet_channel(double v, const JetPoint (&pts)[N]) {
  for (size_t i = 1; i < N; ++i)
    if (v <= pts[i].x) {
      const double t = (v - pts[i - 1].x) / (pts[i].x - pts[i - 1].x);
      return static_cast<float>(pts[i - 1].y + t * (pts[i].y - pts[i - 1].y));
    }
  return static_cast<float>(pts[N - 1].y);
}

inline void jet_color_inline(double v, float rgb[3]) {
  if (!(v >= 0)) v = 0;  // NaN too
  if (v > 1) v = 1;
  rgb[0] = jet_channel(v, kJetR);
  rgb[1] = jet_channel(v, kJetG);
  rgb[2] = jet_channel(v, kJetB);
}

}  // namespace

void jet_color(double v, float rgb[3]) { jet_color_inline(v, rgb); }

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
    jet_color_inline(heat.pixels[static_cast<size_t>(i)], rgb);
    for (int ch = 0; ch < 3; ++ch) {
      float& p = out.pixels[static_cast<size_t>(i * 3 + ch)];
      p = std::clamp((1.0f - a) * p + a * rgb[ch], 0.0f, 1.0f);
    }
  }
  return out;
}

}  // namespace nn::explain
