// Explanations of a VGG's predictions: Grad-CAM (Selvaraju et al. 2017) and its colour overlay.
//
// grad_cam(model, x, target, layer_end):
//   A      = features[0 .. layer_end](x)                  the last conv block's activations (1,C,h,w)
//   y      = head(features[layer_end+1 ..](A))            logits (1, K); y_t the target's logit
//   w_c    = mean over (h, w) of dy_t/dA_c                 one weight per channel
//   cam    = relu(sum_c w_c A_c)                           (h, w): activations_cam
//   up     = bilinear(cam -> H x W)                        torch interpolate(mode='bilinear',
//                                                          align_corners=False)
//   heatmap = up / max(up)  (all zeros when max(up) == 0)  values in [0, 1], max exactly 1
// The default layer_end is the last ReLU of the features (the module before the last MaxPool2d;
// VGG16: 29), the usual Grad-CAM target layer of torchvision's VGG.
//
// Thread-safety and no mutation: grad_cam never writes to the model. The prefix runs with grad
// mode off (NoGradGuard: per thread), so it records nothing. The rest runs on a fresh leaf A (a
// detached alias of the prefix's output that requires grad) through the model's layers evaluated
// functionally with *detached aliases* of their parameters (same storage, requires_grad false, no
// autograd state): the only leaf of the graph is A, so backward fills A.grad and nothing else -
// no parameter gets a .grad nor even a gradient accumulator, and the model's training flag is
// neither read for the computation nor changed. Dropout always acts as in eval mode (identity).
// Several threads may therefore call grad_cam on one shared model at the same time, as long as
// nobody writes its parameters meanwhile (training, load_state_dict, to()). Supported tail layers:
// Sequential, Conv2d, Linear, ReLU, MaxPool2d, AdaptiveAvgPool2d, Flatten, Dropout; any other
// module in the tail (e.g. a custom head given to set_classifier) is run through its own forward()
// only when none of its parameters requires grad (freeze it with set_requires_grad(false)), and is
// refused with an nn::Error otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

#include "nn/data/image.h"
#include "nn/models/vgg.h"
#include "nn/tensor.h"

namespace nn::explain {

struct GradCam {
  Tensor heatmap;          // (H, W) f32 on the CPU, in [0, 1]: the upsampled map divided by its max
  Tensor activations_cam;  // (h, w) f32 on the CPU: relu(sum_c w_c A_c) before upsampling
  double logit = 0;        // the target's logit
  int64_t target_class = 0;
  size_t layer_end = 0;    // the features index after which the activations were taken
};

// "Choose the layer automatically": the last ReLU of the features (the module before the last
// MaxPool2d).
constexpr size_t kAutoLayer = std::numeric_limits<size_t>::max();

// The default layer_end of grad_cam for this model (see above); nn::Error if there is none.
size_t default_cam_layer(const models::VGG& model);

// Grad-CAM for one preprocessed input (1, in_channels, H, W) on the model's device. target_class
// -1 takes the argmax of the logits (for a 1-logit binary head: the single logit, 0); otherwise it
// must be in [0, K). layer_end must be an index of model.features() that is not its last module.
// The model needs its top (logits). Does not modify the model (see the header comment).
GradCam grad_cam(models::VGG& model, const Tensor& input, int64_t target_class = -1,
                 size_t layer_end = kAutoLayer);

// Bilinear resampling of a 2-D map (h, w) -> (height, width), exactly as PyTorch's
// F.interpolate(x[None, None], size=(height, width), mode='bilinear', align_corners=False)
// (source coordinate (i + 0.5) * h / height - 0.5, clamped below at 0; the upper neighbour clamped
// to the edge). No antialiasing. Returns f32 on the CPU.
Tensor upsample_bilinear(const Tensor& map, int64_t height, int64_t width);

// The "jet" colour map (blue -> cyan -> yellow -> red, as matplotlib's): v in [0, 1] (clamped)
// -> r, g, b in [0, 1].
void jet_color(double v, float rgb[3]);

// An RGB overlay for display: the heatmap (any size, values in [0, 1]) resized to the image's size
// (nn::data::resize: bilinear, antialiased when shrinking), coloured with jet and blended over the
// image as RGB (gray replicated, alpha dropped): out = (1 - alpha) * image + alpha * jet(heat).
// Encode it with nn::data::encode_png (e.g. for a base64 PNG in a web page).
data::Image colorize_blend(const Tensor& heatmap, const data::Image& image, double alpha = 0.4);

}  // namespace nn::explain
