// The pneumonia classifier shared by pneumonia-train and pneumonia-predict: a VGG whose head
// ends in one logit (PNEUMONIA vs NORMAL), the image preparation it expects, and the model file
// (safetensors with everything needed to rebuild and use the model in __metadata__).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nn/data/image.h>
#include <nn/generator.h>
#include <nn/models/vgg.h>

namespace pneumonia {

struct ModelSpec {
  std::string mode = "scratch";  // how it was trained: scratch, head or finetune
  int depth = 16;
  bool batch_norm = false;       // VGG with a BatchNorm2d after every convolution (vgg16_bn)
  double width = 0.25;           // VGG width multiplier (1 for ImageNet weights)
  int64_t input_size = 128;      // square input side
  // "vgg": torchvision's classifier (Linear-ReLU-Dropout x2, Linear) with `hidden` units;
  // "mlp": Linear(flat, hidden)-ReLU-Dropout-Linear(hidden, 1); "linear": Linear(flat, 1).
  std::string head = "vgg";
  int64_t hidden = 256;
  double dropout = 0.5;
  std::string preprocessing = "torchvision";  // nn::data preset
  std::vector<std::string> classes = {"NORMAL", "PNEUMONIA"};  // label 0, label 1 (the logit's class)
  double threshold = 0.5;        // decision threshold on the probability, chosen on validation

  std::map<std::string, std::string> to_metadata() const;
  // Throws nn::Error naming the missing or bad key.
  static ModelSpec from_metadata(const std::map<std::string, std::string>& metadata);
};

// A freshly initialised model for the spec.
std::shared_ptr<nn::models::VGG> build_model(const ModelSpec& spec, nn::Generator& gen);
// The head alone (input: the flattened avgpool output, `flat_features` values).
std::shared_ptr<nn::Module> build_head(const ModelSpec& spec, int64_t flat_features, nn::Generator& gen);

struct LoadedModel {
  std::shared_ptr<nn::models::VGG> model;  // eval mode
  ModelSpec spec;
  std::map<std::string, std::string> metadata;
};
LoadedModel load_model(const std::string& path);
// Writes the model's state dict with the spec (and `extra` metadata) atomically.
void save_model(const std::string& path, const nn::models::VGG& model, const ModelSpec& spec,
                const std::map<std::string, std::string>& extra = {});

// An X-ray as the model sees it before augmentation: decoded, grayscale, squashed to size x size
// (as Keras' flow_from_directory does). One channel.
nn::data::Image prepare_xray(const std::string& path, int64_t size);
// A prepared (grayscale) image -> the (3, H, W) model input under the preprocessing preset.
nn::Tensor xray_to_input(const nn::data::Image& gray, nn::data::Preprocessing preset);

// Probability of PNEUMONIA for each input (N, 3, H, W), in batches, without gradients.
std::vector<double> predict_probabilities(nn::models::VGG& model, const std::vector<nn::Tensor>& inputs,
                                          int64_t batch_size = 32);

}  // namespace pneumonia
