// VGG11/13/16/19 (Simonyan & Zisserman 2014) built from one configuration table, with torchvision's
// module structure and parameter names, so torchvision checkpoints load by name:
//
//   features    Sequential: Conv2d(3x3, pad 1) + ReLU per channel entry, MaxPool2d(2) per 'M'
//               ("features.0.weight", "features.2.bias", ...); with batch_norm (torchvision's
//               vgg16_bn) Conv2d + BatchNorm2d + ReLU per entry ("features.1.running_mean", ...)
//   avgpool     AdaptiveAvgPool2d(input_size / 32) (7x7 for 224x224 inputs)
//   classifier  Sequential: Linear(C*7*7, 4096), ReLU, Dropout, Linear(4096, 4096), ReLU, Dropout,
//               Linear(4096, num_classes)  ("classifier.0/3/6.weight")
//
// Without the top (Keras' include_top=False) the model is `features` alone and forward() returns
// the last max-pool's output. The width multiplier scales every convolution's channels and the
// classifier's hidden units, for small variants that train on a CPU.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/generator.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace nn::models {

struct VGGOptions {
  int depth = 16;                 // 11, 13, 16 or 19
  int64_t num_classes = 1000;     // outputs of the last Linear
  bool include_top = true;        // false: features only
  double width_multiplier = 1.0;  // conv channels round(c * w) (at least 1); hidden units likewise
  int64_t input_size = 224;       // square input side the head is sized for; avgpool output input_size/32
  int64_t in_channels = 3;
  int64_t hidden_features = 0;    // 0: round(4096 * width_multiplier)
  double dropout = 0.5;
  bool batch_norm = false;        // a BatchNorm2d after every convolution (vgg11_bn ... vgg19_bn)
};

// "vgg16", "vgg16_bn", "vgg19-notop", ...: the architecture's name as nn-convert records it.
std::string vgg_name(const VGGOptions& options);

// The configuration table: output channels of each 3x3 convolution in order, and 0 for each 2x2
// max-pool ('M' in the paper's table). depth must be 11, 13, 16 or 19.
const std::vector<int64_t>& vgg_config(int depth);
// The index within `features` of each convolution, in order (VGG16: 0, 2, 5, 7, 10, ...; with
// batch norm 0, 3, 7, 10, 14, ...).
std::vector<int64_t> vgg_conv_indices(int depth, bool batch_norm = false);
// The depth whose table has `conv_count` convolutions (8, 10, 13, 16), or 0 when none does.
int vgg_depth_for_conv_count(int64_t conv_count);

class VGG : public Module {
 public:
  explicit VGG(const VGGOptions& options = {}, Generator& gen = default_generator());

  // x (N, in_channels, H, W) -> logits (N, num_classes); without the top, the features' output.
  Tensor forward(const Tensor& x) override;
  // The last max-pool's output (N, C, H/32, W/32).
  Tensor forward_features(const Tensor& x);
  // avgpool -> flatten -> classifier, on forward_features' output. Needs the top.
  Tensor forward_head(const Tensor& features);
  // features, avgpool, flatten (a function step), classifier; without the top, features alone.
  // With it, nn::forward_to / forward_from split the model at any named layer (nn/named_layers.h).
  std::vector<Step> steps() override;

  const std::shared_ptr<Sequential>& features() const { return features_; }
  // The classifier; nullptr without the top. A replaced head need not be a Sequential.
  const std::shared_ptr<Module>& classifier() const { return classifier_; }
  bool has_top() const { return classifier_ != nullptr; }

  // Draws every weight again with torchvision's VGG initialisation (the constructor's): convolutions
  // kaiming_normal_(fan_out, relu), linear weights N(0, 0.01^2), biases zero.
  void initialize(Generator& gen = default_generator());

  // Swaps the last Linear of the torchvision classifier for a freshly initialised one with
  // `num_classes` outputs ("classifier.6"); returns it.
  std::shared_ptr<Linear> replace_last_layer(int64_t num_classes, Generator& gen = default_generator());
  // Replaces the whole classifier by `head`, which receives the flattened avgpool output
  // (N, flat_features()). Adds avgpool and the classifier to a model built without the top.
  void set_classifier(std::shared_ptr<Module> head);

  // Channels of the last convolution (512 * width).
  int64_t feature_channels() const { return feature_channels_; }
  // Side of avgpool's output (input_size / 32, at least 1).
  int64_t pooled_size() const { return pooled_size_; }
  // Inputs of the classifier: feature_channels * pooled_size^2 (25088 for VGG16 at 224).
  int64_t flat_features() const { return feature_channels_ * pooled_size_ * pooled_size_; }
  const VGGOptions& options() const { return options_; }

  std::string name() const override { return "VGG"; }
  std::string extra_repr() const override;

 private:
  VGGOptions options_;
  int64_t feature_channels_ = 0, pooled_size_ = 0;
  std::shared_ptr<Sequential> features_;
  std::shared_ptr<AdaptiveAvgPool2d> avgpool_;
  std::shared_ptr<Module> classifier_;
};

// Options that reproduce the architecture a torchvision-named VGG state dict describes: batch norm
// from features.1.running_mean, depth from the number of convolutions, width from features.0's
// channels, include_top and num_classes / hidden units from classifier.*; input_size from
// classifier.0's inputs (7x7 -> 224). Throws nn::Error naming the first tensor that fits no VGG.
VGGOptions infer_vgg_options(const StateDict& state);

// The usual Grad-CAM layer of a VGG (nn::explain::grad_cam): the last ReLU of its features, the
// module before the last MaxPool2d ("features.29" for VGG16). nn::Error if there is none.
std::string vgg_cam_layer(const VGG& model);

// A VGG read from a safetensors file written by nn-convert (or by save_safetensors on a VGG's
// state dict): architecture inferred, every tensor loaded strictly, eval mode.
struct LoadedVGG {
  std::shared_ptr<VGG> model;
  std::map<std::string, std::string> metadata;  // the file's __metadata__ ("preprocessing", ...)
};
LoadedVGG load_vgg(const std::string& safetensors_path);

}  // namespace nn::models
