// Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
// Gradient-based Localization") for nn::models::VGG, and its jet-coloured overlay.
//
// Algorithm (input x (1, C_in, H, W), target t, activations taken after features[layer_end]):
//   1. A0 = features.forward_range(x, 0, layer_end + 1) with grad mode off (fused Conv2d+ReLU).
//   2. A  = A0.detach().requires_grad_(): a fresh leaf owned by this call.
//   3. logits = classifier(flatten(avgpool(features[layer_end+1 ..](A)))), evaluated functionally
//      (see run_detached) with detached aliases of every parameter; backward from logits[0, t].
//   4. w_c = mean_{i,j} dA[c,i,j]; cam = relu(sum_c w_c A[c]) (h, w), accumulated in double.
//   5. up = bilinear upsampling of cam to H x W, PyTorch's align_corners=False rule; heatmap =
//      up / max(up) (x / x is exactly 1 in float, so the maximum is exactly 1), zeros when max is 0.
//
// Thread-safety / no mutation of the model: step 1 records no graph (NoGradGuard is per thread);
// step 3 reads the parameters only through detached aliases, which share storage but carry no
// autograd state and do not require grad, so record_op never creates gradient accumulators on the
// model's parameters and backward can only reach the leaf A. Nothing of the model is written:
// no .grad, no accumulator, no training flag (Dropout is always the identity here, as in eval
// mode; Dropout's generator is never drawn from), so concurrent calls on one shared model are
// safe while nobody writes its parameters. Modules of unknown types in the tail are only run
// through their own forward() when none of their parameters requires grad (then no autograd
// state of theirs is touched either); otherwise grad_cam refuses them rather than mutate them.
#include "nn/explain.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "nn/autograd.h"
#include "nn/error.h"
#include "nn/layers.h"
#include "nn/ops.h"

namespace nn::explain {

namespace {

Tensor detached(const Tensor& t) { return t.defined() ? t.detach() : Tensor(); }

// Parses Flatten's "start_dim=S, end_dim=E" (the layer has no accessors).
std::pair<int64_t, int64_t> flatten_dims(const Flatten& f) {
  const std::string s = f.extra_repr();
  int64_t start = 1, end = -1;
  const auto a = s.find("start_dim="), b = s.find("end_dim=");
  if (a != std::string::npos) start = std::strtoll(s.c_str() + a + 10, nullptr, 10);
  if (b != std::string::npos) end = std::strtoll(s.c_str() + b + 8, nullptr, 10);
  return {start, end};
}

// The module's forward with eval semantics, computed from detached aliases of its parameters, so
// that the graph it records has no edge into the module (see the file comment).
Tensor run_detached(Module& m, const Tensor& x);

Tensor run_sequence(const std::vector<std::shared_ptr<Module>>& mods, const Tensor& x) {
  Tensor y = x;
  for (size_t i = 0; i < mods.size(); ++i) {
    if (i + 1 < mods.size() && std::dynamic_pointer_cast<ReLU>(mods[i + 1])) {
      if (auto conv = std::dynamic_pointer_cast<Conv2d>(mods[i])) {  // fused, as forward_range
        Conv2dOptions o;
        o.stride = conv->stride();
        o.padding = conv->padding();
        o.relu = true;
        y = conv2d(y, detached(conv->weight()), detached(conv->bias()), o);
        ++i;
        continue;
      }
    }
    y = run_detached(*mods[i], y);
  }
  return y;
}

Tensor run_detached(Module& m, const Tensor& x) {
  if (auto* seq = dynamic_cast<Sequential*>(&m)) {
    std::vector<std::shared_ptr<Module>> mods;
    for (size_t i = 0; i < seq->size(); ++i) mods.push_back((*seq)[i]);
    return run_sequence(mods, x);
  }
  if (auto* conv = dynamic_cast<Conv2d*>(&m)) {
    Conv2dOptions o;
    o.stride = conv->stride();
    o.padding = conv->padding();
    return conv2d(x, detached(conv->weight()), detached(conv->bias()), o);
  }
  if (auto* lin = dynamic_cast<Linear*>(&m)) return linear(x, detached(lin->weight()), detached(lin->bias()));
  if (dynamic_cast<ReLU*>(&m)) return relu(x);
  if (auto* pool = dynamic_cast<MaxPool2d*>(&m)) return max_pool2d(x, pool->options());
  if (auto* pool = dynamic_cast<AdaptiveAvgPool2d*>(&m)) return adaptive_avg_pool2d(x, pool->output_size());
  if (dynamic_cast<Dropout*>(&m)) return x;  // eval semantics
  if (auto* f = dynamic_cast<Flatten*>(&m)) {
    auto [s, e] = flatten_dims(*f);
    return flatten(x, s, e);
  }
  for (const auto& [name, p] : m.named_parameters())
    NN_CHECK(!p.requires_grad(), "grad_cam: cannot evaluate a ", m.name(), " without touching its parameter '", name,
             "' (it requires grad); Grad-CAM supports tails built from Sequential, Conv2d, Linear, ReLU, "
             "MaxPool2d, AdaptiveAvgPool2d, Flatten and Dropout, or modules whose parameters are frozen "
             "(set_requires_grad(false))");
  return m.forward(x);
}

}  // namespace

size_t default_cam_layer(const models::VGG& model) {
  const auto& features = model.features();
  NN_CHECK(features != nullptr && features->size() > 0, "grad_cam: the model has no features");
  for (size_t i = features->size(); i-- > 1;)
    if (std::dynamic_pointer_cast<MaxPool2d>((*features)[i])) return i - 1;
  NN_CHECK(false, "grad_cam: the features have no MaxPool2d after a first module, so there is no default layer");
  return 0;
}

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

GradCam grad_cam(models::VGG& model, const Tensor& input, int64_t target_class, size_t layer_end) {
  NN_CHECK(model.has_top(), "grad_cam: the model was built without the top (no logits to explain)");
  NN_CHECK(input.defined() && input.dim() == 4 && input.size(0) == 1,
           "grad_cam: expected one preprocessed input (1, C, H, W), got ",
           input.defined() ? shape_str(input.shape()) : std::string("an undefined tensor"));
  NN_CHECK(grad_mode_enabled(), "grad_cam: grad mode is off in this thread (called inside a NoGradGuard)");
  const auto& features = model.features();
  if (layer_end == kAutoLayer) layer_end = default_cam_layer(model);
  NN_CHECK(layer_end + 1 < features->size(), "grad_cam: layer_end ", layer_end,
           " must be an index of the features before their last module (", features->size(), " modules)");

  // 1-2. The activations, as a leaf of our own.
  Tensor a;
  {
    NoGradGuard no_grad;
    a = features->forward_range(input, 0, layer_end + 1);
  }
  NN_CHECK(a.dim() == 4 && a.size(0) == 1, "grad_cam: features[", layer_end, "] gave ", shape_str(a.shape()),
           ", not a (1, C, h, w) activation map");
  a = a.detach().requires_grad_(true);

  // 3. The rest of the model on detached parameters; backward from the target logit.
  std::vector<std::shared_ptr<Module>> rest;
  for (size_t i = layer_end + 1; i < features->size(); ++i) rest.push_back((*features)[i]);
  Tensor y = run_sequence(rest, a);
  std::shared_ptr<Module> avgpool;
  for (const auto& [name, child] : model.named_children())
    if (name == "avgpool") avgpool = child;
  if (avgpool) y = run_detached(*avgpool, y);
  Tensor logits = run_detached(*model.classifier(), flatten(y, 1));
  NN_CHECK(logits.dim() == 2 && logits.size(0) == 1, "grad_cam: the head gave ", shape_str(logits.shape()),
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
  out.layer_end = layer_end;

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
