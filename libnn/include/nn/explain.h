// Explanations of a model's predictions: Grad-CAM (Selvaraju et al. 2017) and its colour overlay.
//
// grad_cam(model, x, layer, target), for any model whose forward is a chain of steps
// (Module::steps; Sequential, VGG and the other models) and that gives logits (1, K):
//   A       = forward_to(model, x, layer)                  the layer's activations (1, C, h, w)
//   y       = forward_from(model, A, layer)                logits (1, K); y_t the target's logit
//   w_c     = mean over (h, w) of dy_t/dA_c                 one weight per channel
//   cam     = relu(sum_c w_c A_c)                           (h, w): activations_cam
//   up      = bilinear(cam -> H x W)                        torch interpolate(mode='bilinear',
//                                                           align_corners=False)
//   heatmap = up / max(up)  (all zeros when max(up) == 0)  values in [0, 1], max exactly 1
// The usual layer for VGG is the last ReLU of its features (nn::models::vgg_cam_layer).
//
// Thread-safety and no mutation: grad_cam never writes to the model. Both passes run as in eval
// mode (EvalModeGuard: Dropout is the identity, whatever the model's flag, which is neither read
// for the computation nor changed). The first runs without autograd; the second differentiates
// only with respect to A (GradientsOnlyFor): every parameter is a constant, so none gets a .grad
// or even a gradient accumulator. Several threads may therefore call grad_cam on one shared model
// at the same time, as long as nobody writes its parameters meanwhile (training,
// load_state_dict, to()).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn/data/image.h"
#include "nn/module.h"
#include "nn/tensor.h"

namespace nn::explain {

struct GradCam {
  Tensor heatmap;          // (H, W) f32 on the CPU, in [0, 1]: the upsampled map divided by its max
  Tensor activations_cam;  // (h, w) f32 on the CPU: relu(sum_c w_c A_c) before upsampling
  double logit = 0;        // the target's logit
  int64_t target_class = 0;
  std::string layer;       // the layer whose activations were taken
};

// Grad-CAM for one preprocessed input (1, C, H, W) on the model's device, at the named layer
// (nn::layer_names; its output must be (1, C, h, w) and it must not be the last layer). target_class
// -1 takes the argmax of the logits (for a 1-logit binary head: the single logit, 0); otherwise it
// must be in [0, K). Does not modify the model (see the header comment).
GradCam grad_cam(Module& model, const Tensor& input, const std::string& layer, int64_t target_class = -1);
// Grad-CAM for a batch (N, C, H, W) in one forward and one backward pass (the backward of the sum of
// the targets' logits: each image's logits depend on its own input only, as they do in eval mode),
// one result per image, each equal to grad_cam of that image alone up to float rounding.
// target_classes: one per image (-1: its argmax), or empty for all -1.
std::vector<GradCam> grad_cam_batch(Module& model, const Tensor& inputs, const std::string& layer,
                                    const std::vector<int64_t>& target_classes = {});

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
