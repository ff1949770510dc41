// VGG from one configuration table; see nn/models/vgg.h for the structure and naming.
#include "nn/models/vgg.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "nn/autograd.h"
#include "nn/error.h"
#include "nn/init.h"
#include "nn/io/safetensors.h"
#include "nn/named_layers.h"
#include "nn/ops.h"

namespace nn::models {

namespace {

constexpr int64_t M = 0;  // a 2x2 max-pool in the table

int64_t scaled(int64_t n, double width) {
  return std::max<int64_t>(1, static_cast<int64_t>(std::llround(static_cast<double>(n) * width)));
}

}  // namespace

const std::vector<int64_t>& vgg_config(int depth) {
  // Table 1 of the paper: configurations A (11), B (13), D (16) and E (19).
  static const std::vector<int64_t> a = {64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M};
  static const std::vector<int64_t> b = {64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M};
  static const std::vector<int64_t> d = {64,  64,  M,   128, 128, M,   256, 256, 256,
                                         M,   512, 512, 512, M,   512, 512, 512, M};
  static const std::vector<int64_t> e = {64,  64,  M,   128, 128, M,   256, 256, 256, 256, M,
                                         512, 512, 512, 512, M,   512, 512, 512, 512, M};
  switch (depth) {
    case 11: return a;
    case 13: return b;
    case 16: return d;
    case 19: return e;
  }
  NN_CHECK(false, "VGG: depth must be 11, 13, 16 or 19, got ", depth);
  return d;  // unreachable
}

std::vector<int64_t> vgg_conv_indices(int depth, bool batch_norm) {
  std::vector<int64_t> indices;
  int64_t index = 0;
  for (int64_t entry : vgg_config(depth)) {
    if (entry == M) {
      index += 1;  // MaxPool2d
    } else {
      indices.push_back(index);
      index += batch_norm ? 3 : 2;  // Conv2d, [BatchNorm2d,] ReLU
    }
  }
  return indices;
}

std::string vgg_name(const VGGOptions& options) {
  std::string name = "vgg" + std::to_string(options.depth);
  if (options.batch_norm) name += "_bn";
  if (!options.include_top) name += "-notop";
  return name;
}

int vgg_depth_for_conv_count(int64_t conv_count) {
  for (int depth : {11, 13, 16, 19})
    if (static_cast<int64_t>(vgg_conv_indices(depth).size()) == conv_count) return depth;
  return 0;
}

VGG::VGG(const VGGOptions& options, Generator& gen) : options_(options) {
  NN_CHECK(options.width_multiplier > 0.0 && std::isfinite(options.width_multiplier),
           "VGG: width_multiplier must be positive, got ", options.width_multiplier);
  NN_CHECK(options.in_channels > 0, "VGG: in_channels must be positive, got ", options.in_channels);
  NN_CHECK(options.input_size >= 32, "VGG: input_size must be at least 32 (five 2x2 pools), got ",
           options.input_size);
  NN_CHECK(options.num_classes > 0, "VGG: num_classes must be positive, got ", options.num_classes);
  NN_CHECK(options.hidden_features >= 0, "VGG: hidden_features must be >= 0 (0: 4096 * width), got ",
           options.hidden_features);

  features_ = register_module("features", std::make_shared<Sequential>());
  int64_t channels = options.in_channels;
  for (int64_t entry : vgg_config(options.depth)) {
    if (entry == M) {
      features_->push_back(std::make_shared<MaxPool2d>(2, 2));
    } else {
      int64_t out = scaled(entry, options.width_multiplier);
      features_->push_back(std::make_shared<Conv2d>(channels, out, 3, 1, 1, true, gen));
      if (options.batch_norm) features_->push_back(std::make_shared<BatchNorm2d>(out));
      features_->push_back(std::make_shared<ReLU>());
      channels = out;
    }
  }
  feature_channels_ = channels;
  pooled_size_ = options.input_size / 32;

  if (options.include_top) {
    int64_t hidden = options.hidden_features > 0 ? options.hidden_features
                                                 : scaled(4096, options.width_multiplier);
    auto head = std::make_shared<Sequential>();
    head->push_back(std::make_shared<Linear>(flat_features(), hidden, true, gen));
    head->push_back(std::make_shared<ReLU>());
    head->push_back(std::make_shared<Dropout>(options.dropout, gen));
    head->push_back(std::make_shared<Linear>(hidden, hidden, true, gen));
    head->push_back(std::make_shared<ReLU>());
    head->push_back(std::make_shared<Dropout>(options.dropout, gen));
    head->push_back(std::make_shared<Linear>(hidden, options.num_classes, true, gen));
    set_classifier(head);
  }
  initialize(gen);
}

void VGG::initialize(Generator& gen) {
  // torchvision's VGG initialisation: convolutions He-normal over fan-out, linear layers
  // N(0, 0.01^2), biases zero, batch norms weight 1 and bias 0.
  NoGradGuard no_grad;
  for (auto& [name, module] : named_modules()) {
    if (auto* bn = dynamic_cast<BatchNorm2d*>(module)) {
      bn->reset_parameters();
    } else if (auto* conv = dynamic_cast<Conv2d*>(module)) {
      init::kaiming_normal_(conv->weight(), 0.0, init::FanMode::fan_out, init::Nonlinearity::relu, gen);
      if (conv->bias().defined()) init::zeros_(conv->bias());
    } else if (auto* linear = dynamic_cast<Linear*>(module)) {
      init::normal_(linear->weight(), 0.0, 0.01, gen);
      if (linear->bias().defined()) init::zeros_(linear->bias());
    }
  }
}

namespace {

void check_input(const Tensor& x, int64_t in_channels) {
  NN_CHECK(x.dim() == 4 && x.size(1) == in_channels, "VGG: expected input (N, ", in_channels, ", H, W), got ",
           shape_str(x.shape()));
  NN_CHECK(x.size(2) >= 32 && x.size(3) >= 32, "VGG: the input must be at least 32x32 (five 2x2 pools), got ",
           x.size(2), "x", x.size(3));
}

}  // namespace

Tensor VGG::forward(const Tensor& x) {
  check_input(x, options_.in_channels);
  return detail::run_steps(*this, x);
}

Tensor VGG::forward_features(const Tensor& x) {
  check_input(x, options_.in_channels);
  return (*features_)(x);
}

Tensor VGG::forward_head(const Tensor& features) {
  NN_CHECK(has_top(), "VGG::forward_head: this model was built without the top (include_top = false)");
  return forward_from(*this, features, "features");
}

std::vector<Step> VGG::steps() {
  std::vector<Step> out{{"features", features_, nullptr}};
  if (!has_top()) return out;
  out.push_back({"avgpool", avgpool_, nullptr});
  out.push_back({"", nullptr, [](const Tensor& x) { return flatten(x, 1); }});
  out.push_back({"classifier", classifier_, nullptr});
  return out;
}

std::string vgg_cam_layer(const VGG& model) {
  const auto& features = model.features();
  NN_CHECK(features != nullptr && features->size() > 0, "vgg_cam_layer: the model has no features");
  for (size_t i = features->size(); i-- > 1;)
    if (std::dynamic_pointer_cast<MaxPool2d>((*features)[i])) return "features." + std::to_string(i - 1);
  NN_CHECK(false, "vgg_cam_layer: the features have no MaxPool2d after a first module, so there is no usual layer");
  return "";
}

std::shared_ptr<Linear> VGG::replace_last_layer(int64_t num_classes, Generator& gen) {
  auto head = std::dynamic_pointer_cast<Sequential>(classifier_);
  NN_CHECK(head != nullptr && head->size() > 0,
           "VGG::replace_last_layer: the model has no torchvision classifier (built without the top, "
           "or the head was replaced); use set_classifier");
  size_t last = head->size() - 1;
  auto old = head->at<Linear>(last);
  auto fresh = std::make_shared<Linear>(old->in_features(), num_classes, true, gen);
  fresh->to(old->weight().device());
  fresh->to(old->weight().dtype());
  options_.num_classes = num_classes;
  return head->set(last, fresh);
}

void VGG::set_classifier(std::shared_ptr<Module> head) {
  NN_CHECK(head != nullptr, "VGG::set_classifier: the head is null");
  if (!avgpool_) avgpool_ = register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(pooled_size_));
  if (classifier_)
    replace_module("classifier", head);
  else
    register_module("classifier", head);
  classifier_ = std::move(head);
  options_.include_top = true;
}

std::string VGG::extra_repr() const {
  std::ostringstream out;
  out << "depth=" << options_.depth << ", width=" << options_.width_multiplier
      << ", input_size=" << options_.input_size;
  if (options_.batch_norm) out << ", batch_norm=True";
  return out.str();
}

// ---- from a state dict ----

namespace {

const Tensor* find(const StateDict& state, const std::string& name) {
  for (const auto& [key, value] : state)
    if (key == name) return &value;
  return nullptr;
}

}  // namespace

VGGOptions infer_vgg_options(const StateDict& state) {
  VGGOptions options;
  // Convolutions: features.<i>.weight of rank 4, in index order.
  std::vector<std::pair<int64_t, const Tensor*>> convs;
  for (const auto& [key, value] : state) {
    if (key.rfind("features.", 0) != 0) continue;
    size_t dot = key.find('.', 9);
    NN_CHECK(dot != std::string::npos, "not a VGG state dict: unexpected tensor '", key, "'");
    std::string index = key.substr(9, dot - 9), rest = key.substr(dot + 1);
    NN_CHECK(!index.empty() && index.find_first_not_of("0123456789") == std::string::npos,
             "not a VGG state dict: unexpected tensor '", key, "'");
    if (rest == "weight") convs.emplace_back(std::stoll(index), &value);
  }
  // With batch norm, features.N.weight names the convolutions and the batch norms after them (which
  // have a running mean); only the 4-D ones are convolutions.
  options.batch_norm = find(state, "features.1.running_mean") != nullptr;
  if (options.batch_norm)
    convs.erase(std::remove_if(convs.begin(), convs.end(), [](const auto& c) { return c.second->dim() == 1; }),
                convs.end());
  std::sort(convs.begin(), convs.end());
  options.depth = vgg_depth_for_conv_count(static_cast<int64_t>(convs.size()));
  NN_CHECK(options.depth != 0, "not a VGG state dict: ", convs.size(),
           " convolution weights (features.N.weight), but VGG11/13/16/19 have 8/10/13/16");
  std::vector<int64_t> expected = vgg_conv_indices(options.depth, options.batch_norm);
  for (size_t k = 0; k < convs.size(); ++k) {
    NN_CHECK(convs[k].first == expected[k], "not a VGG", options.depth, " state dict: convolution ", k,
             " is features.", convs[k].first, ", expected features.", expected[k]);
    NN_CHECK(convs[k].second->dim() == 4, "features.", convs[k].first, ".weight must be 4-D (OIHW), got ",
             shape_str(convs[k].second->shape()));
  }
  const Tensor& first = *convs.front().second;
  options.in_channels = first.size(1);
  options.width_multiplier = static_cast<double>(first.size(0)) / 64.0;
  int64_t last_channels = convs.back().second->size(0);

  const Tensor* fc0 = find(state, "classifier.0.weight");
  options.include_top = fc0 != nullptr;
  if (fc0) {
    const Tensor* fc6 = find(state, "classifier.6.weight");
    NN_CHECK(fc6 != nullptr && fc0->dim() == 2 && fc6->dim() == 2,
             "not a torchvision VGG classifier: expected 2-D classifier.0.weight and classifier.6.weight");
    int64_t spatial = fc0->size(1) / last_channels;
    auto side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(spatial))));
    NN_CHECK(spatial * last_channels == fc0->size(1) && side * side == spatial && side >= 1,
             "classifier.0.weight has ", fc0->size(1), " inputs, not ", last_channels,
             " channels times a square pooled size");
    options.input_size = side * 32;
    options.hidden_features = fc0->size(0);
    options.num_classes = fc6->size(0);
  }
  return options;
}

LoadedVGG load_vgg(const std::string& safetensors_path) {
  io::SafetensorsFile file = io::load_safetensors(safetensors_path);
  LoadedVGG loaded;
  try {
    io::check_finite(file);
    VGGOptions options = infer_vgg_options(file.tensors);
    Generator gen(0);  // the values are overwritten by the load
    loaded.model = std::make_shared<VGG>(options, gen);
    loaded.model->load_state_dict(file.tensors, /*strict=*/true);
  } catch (const Error& e) {
    NN_CHECK(false, safetensors_path, ": ", e.what());
  }
  loaded.model->eval();
  loaded.metadata = file.metadata;
  return loaded;
}

}  // namespace nn::models
