#include "pneumonia_model.h"

#include <nlohmann/json.hpp>
#include <nn/autograd.h>
#include <nn/error.h>
#include <nn/io/safetensors.h>
#include <nn/layers.h>
#include <nn/ops.h>

#include <algorithm>

namespace pneumonia {

namespace {

const std::string kFormat = "nn-pneumonia-1";

const std::string& need(const std::map<std::string, std::string>& m, const std::string& key) {
  auto it = m.find(key);
  NN_CHECK(it != m.end(), "the model file's metadata lacks '", key, "' (not a pneumonia-train model?)");
  return it->second;
}

template <typename T>
T parse_number(const std::string& key, const std::string& text) {
  try {
    size_t used = 0;
    double v = std::stod(text, &used);
    NN_CHECK(used == text.size(), "");
    return static_cast<T>(v);
  } catch (const std::exception&) {
    NN_CHECK(false, "the model file's metadata '", key, "' is not a number: '", text, "'");
  }
  return T{};
}

}  // namespace

std::map<std::string, std::string> ModelSpec::to_metadata() const {
  return {{"format", kFormat},
          {"mode", mode},
          {"architecture", "vgg" + std::to_string(depth) + (batch_norm ? "_bn" : "")},
          {"batch_norm", batch_norm ? "1" : "0"},
          {"depth", std::to_string(depth)},
          {"width", nlohmann::json(width).dump()},
          {"input_size", std::to_string(input_size)},
          {"head", head},
          {"hidden", std::to_string(hidden)},
          {"dropout", nlohmann::json(dropout).dump()},
          {"preprocessing", preprocessing},
          {"classes", nlohmann::json(classes).dump()},
          {"threshold", nlohmann::json(threshold).dump()}};
}

ModelSpec ModelSpec::from_metadata(const std::map<std::string, std::string>& m) {
  NN_CHECK(need(m, "format") == kFormat, "unsupported model format '", need(m, "format"), "' (expected ", kFormat, ")");
  ModelSpec spec;
  spec.mode = need(m, "mode");
  spec.depth = parse_number<int>("depth", need(m, "depth"));
  auto bn = m.find("batch_norm");  // absent in files written before batch norm existed
  spec.batch_norm = bn != m.end() && bn->second == "1";
  spec.width = parse_number<double>("width", need(m, "width"));
  spec.input_size = parse_number<int64_t>("input_size", need(m, "input_size"));
  spec.head = need(m, "head");
  spec.hidden = parse_number<int64_t>("hidden", need(m, "hidden"));
  spec.dropout = parse_number<double>("dropout", need(m, "dropout"));
  spec.preprocessing = need(m, "preprocessing");
  nn::data::parse_preprocessing(spec.preprocessing);  // validates
  try {
    spec.classes = nlohmann::json::parse(need(m, "classes")).get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception&) {
    NN_CHECK(false, "the model file's metadata 'classes' is not a JSON list of names");
  }
  NN_CHECK(spec.classes.size() == 2, "the model must have 2 classes, the file names ", spec.classes.size());
  spec.threshold = parse_number<double>("threshold", need(m, "threshold"));
  NN_CHECK(spec.threshold >= 0 && spec.threshold <= 1, "threshold must be in [0, 1], got ", spec.threshold);
  return spec;
}

std::shared_ptr<nn::Module> build_head(const ModelSpec& spec, int64_t flat, nn::Generator& gen) {
  auto head = std::make_shared<nn::Sequential>();
  if (spec.head == "linear") {
    head->push_back(std::make_shared<nn::Linear>(flat, 1, true, gen));
  } else if (spec.head == "mlp") {
    head->push_back(std::make_shared<nn::Linear>(flat, spec.hidden, true, gen));
    head->push_back(std::make_shared<nn::ReLU>());
    head->push_back(std::make_shared<nn::Dropout>(spec.dropout, gen));
    head->push_back(std::make_shared<nn::Linear>(spec.hidden, 1, true, gen));
  } else {
    NN_CHECK(false, "unknown head '", spec.head, "' (vgg, mlp or linear)");
  }
  return head;
}

std::shared_ptr<nn::models::VGG> build_model(const ModelSpec& spec, nn::Generator& gen) {
  nn::models::VGGOptions o;
  o.depth = spec.depth;
  o.batch_norm = spec.batch_norm;
  o.width_multiplier = spec.width;
  o.input_size = spec.input_size;
  o.dropout = spec.dropout;
  if (spec.head == "vgg") {
    o.num_classes = 1;
    o.hidden_features = spec.hidden;
    return std::make_shared<nn::models::VGG>(o, gen);
  }
  o.include_top = false;
  auto model = std::make_shared<nn::models::VGG>(o, gen);
  model->set_classifier(build_head(spec, model->flat_features(), gen));
  return model;
}

LoadedModel load_model(const std::string& path) {
  nn::io::SafetensorsFile file = nn::io::load_safetensors(path);
  LoadedModel loaded;
  try {
    nn::io::check_finite(file);  // a NaN weight would answer every image with NaN
    loaded.spec = ModelSpec::from_metadata(file.metadata);
    nn::Generator gen(0);
    loaded.model = build_model(loaded.spec, gen);
    loaded.model->load_state_dict(file.tensors, /*strict=*/true);
  } catch (const nn::Error& e) {
    NN_CHECK(false, path, ": ", e.what());
  }
  loaded.model->eval();
  loaded.metadata = file.metadata;
  return loaded;
}

void save_model(const std::string& path, const nn::models::VGG& model, const ModelSpec& spec,
                const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> metadata = spec.to_metadata();
  for (const auto& [k, v] : extra) metadata.emplace(k, v);
  nn::io::save_safetensors(path, model.state_dict(), metadata);
}

nn::data::Image prepare_xray(const std::string& path, int64_t size) {
  nn::data::Image image = nn::data::to_grayscale(nn::data::load_image(path));
  if (image.height == size && image.width == size) return image;
  return nn::data::resize(image, size, size);
}

nn::Tensor xray_to_input(const nn::data::Image& gray, nn::data::Preprocessing preset) {
  return nn::data::to_tensor(nn::data::to_rgb(gray), preset);
}

std::vector<double> predict_probabilities(nn::models::VGG& model, const std::vector<nn::Tensor>& inputs,
                                          int64_t batch_size) {
  nn::NoGradGuard no_grad;
  std::vector<double> probs;
  probs.reserve(inputs.size());
  for (size_t begin = 0; begin < inputs.size(); begin += static_cast<size_t>(batch_size)) {
    size_t end = std::min(inputs.size(), begin + static_cast<size_t>(batch_size));
    std::vector<nn::Tensor> chunk;
    for (size_t i = begin; i < end; ++i) chunk.push_back(inputs[i].unsqueeze(0));
    nn::Tensor p = nn::sigmoid(model.forward(nn::concat(chunk, 0)));
    for (float v : p.contiguous().to_vector<float>()) probs.push_back(v);
  }
  return probs;
}

}  // namespace pneumonia
