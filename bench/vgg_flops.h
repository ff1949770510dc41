// FLOPs of one VGG forward pass per image at the model's input size: 2 per multiply-add of every
// Conv2d (3x3) and, when the model has its top, every Linear. ReLU, pooling and bias adds are not
// counted, as usual. Shared by vgg_bench.cpp and vgg16_bench.cpp.
#pragma once

#include <nn/models/vgg.h>
#include <nn/nn.h>

inline double vgg_forward_flops(const nn::models::VGG& model) {
  double flops = 0;
  int64_t size = model.options().input_size;
  for (const auto& child : model.features()->children()) {
    if (auto conv = std::dynamic_pointer_cast<nn::Conv2d>(child)) {
      flops += 2.0 * conv->out_channels() * size * size * conv->in_channels() * 9;
    } else if (std::dynamic_pointer_cast<nn::MaxPool2d>(child)) {
      size /= 2;
    }
  }
  if (model.has_top())
    for (const auto& [name, p] : model.named_parameters())
      if (name.rfind("classifier.", 0) == 0 && p.dim() == 2) flops += 2.0 * p.size(0) * p.size(1);
  return flops;
}
