// The pneumonia classifier shared by pneumonia-train and pneumonia-predict: a VGG whose head
// ends in one logit (PNEUMONIA vs NORMAL), the image preparation it expects, and the model file
// (safetensors with everything needed to rebuild and use the model in __metadata__).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nn/data/image.h>
#include <nn/explain.h>
#include <nn/generator.h>
#include <nn/metrics.h>
#include <nn/models/vgg.h>

#include "ood_gate.h"

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
  int members = 1;               // networks in the file (an ensemble when more than 1)
  // Calibration (Platt scaling, docs/evaluation_protocol.md): p = sigmoid(mean logit / temperature + bias).
  double temperature = 1.0;
  double calibration_bias = 0.0;
  nn::metrics::LogitCalibration calibration() const { return {temperature, calibration_bias}; }

  std::map<std::string, std::string> to_metadata() const;
  // Throws nn::Error naming the missing or bad key.
  static ModelSpec from_metadata(const std::map<std::string, std::string>& metadata);
};

// A freshly initialised model for the spec.
std::shared_ptr<nn::models::VGG> build_model(const ModelSpec& spec, nn::Generator& gen);
// The head alone (input: the flattened avgpool output, `flat_features` values).
std::shared_ptr<nn::Module> build_head(const ModelSpec& spec, int64_t flat_features, nn::Generator& gen);

// A model file's network: one VGG, or an ensemble of them (the fold models of a cross-validated
// run) whose logits are averaged; the probability is sigmoid(mean logit / temperature + bias)
// (the calibration, see docs/evaluation_protocol.md). Every member is in eval mode.
// What the model says of one input: refused by the feature stage of the gate (ood_gate.h), or
// its logit and calibrated probability.
struct Assessment {
  double logit = 0, probability = 0;
  double ood_score = 0;  // the gate's feature score (refused above 1); NaN without a feature stage
  bool refused = false;
  std::string reason;  // why it was refused
};

class PneumoniaModel {
 public:
  ModelSpec spec;
  std::vector<std::shared_ptr<nn::models::VGG>> members;
  OodGate gate;  // the out-of-distribution gate stored with the model
  std::map<std::string, std::string> metadata;  // the file's

  // The mean of the members' logits for inputs (N, 3, S, S): (N), without autograd.
  nn::Tensor logits(const nn::Tensor& inputs);
  // sigmoid(logit / spec.temperature + spec.calibration_bias) of each input, in batches.
  std::vector<double> probabilities(const std::vector<nn::Tensor>& inputs, int64_t batch_size = 32);
  double probability_of_logit(double logit) const;
  // The feature stage of the gate and the probability, in one forward pass per member, for
  // inputs (N, 3, S, S) that passed the input checks.
  std::vector<Assessment> assess(const nn::Tensor& inputs);
  // The members' squared feature distances (distances[k][i]) and mean logits of inputs, without
  // autograd; distances is empty when the gate has no feature stage.
  nn::Tensor logits_and_distances(const nn::Tensor& inputs, std::vector<std::vector<double>>& distances);
  // Grad-CAM of the PNEUMONIA logit for one input (1, 3, S, S) at each member's usual layer
  // (nn::models::vgg_cam_layer): the members' heatmaps averaged and divided by their maximum, the
  // logit averaged. Does not modify the model (threads may share it).
  nn::explain::GradCam explain(const nn::Tensor& input);
  // The same for a batch (N, 3, S, S) in one forward and one backward per member; with
  // `assessments`, also the gate's verdict and the probability of each input, from the same
  // forward pass.
  std::vector<nn::explain::GradCam> explain_batch(const nn::Tensor& inputs, std::vector<Assessment>* assessments = nullptr);
  void to(nn::Device device);
  // For inference only (predict, serve): folds every member's batch norms into the convolutions
  // before them (nn::fold_batch_norms; the same outputs up to float rounding, one pass over the
  // activations fewer per layer). Returns how many were folded.
  int fold_batch_norms();
};

// Reads a model file: one VGG (files of format nn-pneumonia-1, and of -2 with members = 1) or an
// ensemble (members "member<k>.<name>"), and its out-of-distribution gate ("ood.*"; a file
// without one gets the default input checks and no feature stage). Weights are checked finite (a
// NaN names its tensor).
PneumoniaModel load_model(const std::string& path);
// Writes the members' state dicts with the spec (spec.members must equal members.size()), the
// gate and `extra` metadata atomically.
void save_model(const std::string& path, const std::vector<const nn::models::VGG*>& members, const ModelSpec& spec,
                const OodGate& gate, const std::map<std::string, std::string>& extra = {});

// The name of the last layer of a VGG's `features` (its final max pool): the gate's layer.
std::string last_feature_layer(nn::Module& vgg);

// An X-ray as the model sees it before augmentation: decoded, grayscale, squashed to size x size
// (as Keras' flow_from_directory does). One channel.
nn::data::Image prepare_xray(const std::string& path, int64_t size);
// The same for an image already decoded (whose input_stats the gate checks first).
nn::data::Image prepare_decoded(const nn::data::Image& decoded, int64_t size);
// A prepared (grayscale) image -> the (3, H, W) model input under the preprocessing preset.
nn::Tensor xray_to_input(const nn::data::Image& gray, nn::data::Preprocessing preset);


}  // namespace pneumonia
