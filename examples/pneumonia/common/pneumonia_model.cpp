#include "pneumonia_model.h"

#ifdef NN_HAS_ONNX
#include <nn/onnx.h>
#endif

#include <nlohmann/json.hpp>
#include <nn/autograd.h>
#include <nn/error.h>
#include <nn/io/safetensors.h>
#include <nn/layers.h>
#include <nn/named_layers.h>
#include <nn/ops.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

namespace pneumonia {

namespace {

// Version 2 added members (ensembles) and the temperature; version 1 files read as one member at
// temperature 1. The calibration bias came later within version 2: a file without it has bias 0.
const std::string kFormat = "nn-pneumonia-2", kFormatV1 = "nn-pneumonia-1";

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
          {"threshold", nlohmann::json(threshold).dump()},
          {"members", std::to_string(members)},
          {"temperature", nlohmann::json(temperature).dump()},
          {"calibration_bias", nlohmann::json(calibration_bias).dump()}};
}

ModelSpec ModelSpec::from_metadata(const std::map<std::string, std::string>& m) {
  const std::string& format = need(m, "format");
  NN_CHECK(format == kFormat || format == kFormatV1, "unsupported model format '", format, "' (expected ", kFormat,
           " or ", kFormatV1, ")");
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
  if (format == kFormat) {
    spec.members = parse_number<int>("members", need(m, "members"));
    spec.temperature = parse_number<double>("temperature", need(m, "temperature"));
    NN_CHECK(spec.members >= 1 && spec.members <= 64, "members must be 1..64, got ", spec.members);
    NN_CHECK(std::isfinite(spec.temperature) && spec.temperature > 0, "temperature must be positive, got ",
             spec.temperature);
    auto bias = m.find("calibration_bias");  // absent in files calibrated by a temperature alone
    if (bias != m.end()) spec.calibration_bias = parse_number<double>("calibration_bias", bias->second);
    NN_CHECK(std::isfinite(spec.calibration_bias), "calibration_bias must be finite, got ", spec.calibration_bias);
  }
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

namespace {

std::string member_prefix(int k) { return "member" + std::to_string(k) + "."; }

bool is_gate_tensor(const std::string& name) { return name.rfind("ood.", 0) == 0; }

}  // namespace

namespace {

// The model file's tensors and metadata; an .onnx file exported from one (nn-convert onnx-export)
// gives back the same (docs/onnx.md).
nn::io::SafetensorsFile read_model_file(const std::string& path) {
  if (std::filesystem::path(path).extension() != ".onnx") return nn::io::load_safetensors(path);
#ifdef NN_HAS_ONNX
  nn::onnx::ImportedModel imported = nn::onnx::import_model(path);
  nn::io::SafetensorsFile file;
  file.tensors = std::move(imported.state);
  file.metadata = std::move(imported.metadata);
  file.source = path;
  return file;
#else
  NN_CHECK(false, path, ": this build reads no ONNX files (nn was built without libonnx-dev)");
#endif
}

}  // namespace

PneumoniaModel load_model(const std::string& path) {
  nn::io::SafetensorsFile file = read_model_file(path);
  PneumoniaModel loaded;
  try {
    nn::io::check_finite(file);  // a NaN weight would answer every image with NaN
    loaded.spec = ModelSpec::from_metadata(file.metadata);
    nn::StateDict weights, gate_tensors;
    for (const auto& [name, t] : file.tensors) (is_gate_tensor(name) ? gate_tensors : weights).emplace_back(name, t);
    for (int k = 0; k < loaded.spec.members; ++k) {
      nn::Generator gen(0);  // the values are overwritten by the load
      std::shared_ptr<nn::models::VGG> member = build_model(loaded.spec, gen);
      if (loaded.spec.members == 1) {
        member->load_state_dict(weights, /*strict=*/true);
      } else {
        const std::string prefix = member_prefix(k);
        nn::StateDict state;
        for (const auto& [name, t] : weights)
          if (name.rfind(prefix, 0) == 0) state.emplace_back(name.substr(prefix.size()), t);
        NN_CHECK(!state.empty(), "the file holds no tensors of ensemble member ", k, " (", prefix, "*)");
        member->load_state_dict(state, /*strict=*/true);
      }
      member->eval();
      loaded.members.push_back(member);
    }
    if (loaded.spec.members > 1) {
      size_t expected = 0;
      for (const auto& m : loaded.members) expected += m->state_dict().size();
      NN_CHECK(weights.size() == expected, "the file holds ", weights.size(), " weight tensors, the ",
               loaded.spec.members, " members ", expected);
    }
    loaded.gate = OodGate::from_file(file.metadata, gate_tensors, loaded.spec.members);
    NN_CHECK(gate_tensors.size() == 2 * loaded.gate.members.size(), "the file holds ", gate_tensors.size(),
             " gate tensors (ood.*), its gate ", 2 * loaded.gate.members.size());
    if (loaded.gate.has_features()) {
      const std::vector<std::string> layers = nn::layer_names(*loaded.members[0]);
      NN_CHECK(std::find(layers.begin(), layers.end(), loaded.gate.layer) != layers.end(), "the gate's layer '",
               loaded.gate.layer, "' is not a layer of the model");
    }
  } catch (const nn::Error& e) {
    NN_CHECK(false, path, ": ", e.what());
  }
  loaded.metadata = file.metadata;
  return loaded;
}

void save_model(const std::string& path, const std::vector<const nn::models::VGG*>& members, const ModelSpec& spec,
                const OodGate& gate, const std::map<std::string, std::string>& extra) {
  NN_CHECK(!members.empty() && spec.members == static_cast<int>(members.size()), "save_model: the spec names ",
           spec.members, " members, ", members.size(), " given");
  NN_CHECK(!gate.has_features() || gate.members.size() == members.size(), "save_model: the gate has ",
           gate.members.size(), " feature detectors, the model ", members.size(), " members");
  std::map<std::string, std::string> metadata = spec.to_metadata();
  for (const auto& [k, v] : extra) metadata.emplace(k, v);
  nn::StateDict tensors;
  for (size_t k = 0; k < members.size(); ++k)
    for (const auto& [name, t] : members[k]->state_dict())
      tensors.emplace_back(members.size() == 1 ? name : member_prefix(static_cast<int>(k)) + name, t);
  gate.add_to(metadata, tensors);
  nn::io::save_safetensors(path, tensors, metadata);
}

std::string last_feature_layer(nn::Module& vgg) {
  std::string last;
  for (const std::string& name : nn::layer_names(vgg))
    if (name.rfind("features.", 0) == 0) last = name;
  NN_CHECK(!last.empty(), "the model has no features.* layer");
  return last;
}

nn::Tensor PneumoniaModel::logits(const nn::Tensor& inputs) {
  nn::NoGradGuard no_grad;
  NN_CHECK(!members.empty(), "PneumoniaModel: no members");
  nn::Tensor sum;
  for (const auto& m : members) {
    nn::Tensor z = (*m)(inputs).reshape({-1});
    sum = sum.defined() ? nn::add(sum, z) : z;
  }
  return members.size() == 1 ? sum : nn::div(sum, static_cast<double>(members.size()));
}

nn::Tensor PneumoniaModel::logits_and_distances(const nn::Tensor& inputs, std::vector<std::vector<double>>& distances) {
  nn::NoGradGuard no_grad;
  NN_CHECK(!members.empty(), "PneumoniaModel: no members");
  distances.clear();
  if (!gate.has_features()) return logits(inputs);
  nn::Tensor sum;
  for (size_t k = 0; k < members.size(); ++k) {
    nn::models::VGG& m = *members[k];
    const nn::Tensor a = nn::forward_to(m, inputs, gate.layer);
    distances.push_back(gate.members[k].detector.distances(pooled_features(a)));
    nn::Tensor z = nn::forward_from(m, a, gate.layer).reshape({-1});
    sum = sum.defined() ? nn::add(sum, z) : z;
  }
  return members.size() == 1 ? sum : nn::div(sum, static_cast<double>(members.size()));
}

namespace {

// The assessments of logits z (N) and the members' distances (empty without a feature stage).
std::vector<Assessment> assessments_of(const PneumoniaModel& model, const std::vector<float>& z,
                                       const std::vector<std::vector<double>>& distances) {
  std::vector<double> scores(z.size(), NAN);
  if (!distances.empty()) scores = model.gate.scores(distances);
  std::vector<Assessment> out(z.size());
  for (size_t i = 0; i < z.size(); ++i) {
    Assessment& a = out[i];
    a.logit = z[i];
    a.probability = model.probability_of_logit(z[i]);
    a.ood_score = scores[i];
    if (!distances.empty() && OodGate::refuses(scores[i])) {
      a.refused = true;
      a.reason = feature_refusal_reason(scores[i]);
    }
  }
  return out;
}

}  // namespace

std::vector<Assessment> PneumoniaModel::assess(const nn::Tensor& inputs) {
  std::vector<std::vector<double>> distances;
  const nn::Tensor z = logits_and_distances(inputs, distances);
  return assessments_of(*this, z.to(nn::Device::cpu()).contiguous().to_vector<float>(), distances);
}

double PneumoniaModel::probability_of_logit(double logit) const { return spec.calibration().probability(logit); }

std::vector<double> PneumoniaModel::probabilities(const std::vector<nn::Tensor>& inputs, int64_t batch_size) {
  std::vector<double> probs;
  probs.reserve(inputs.size());
  for (size_t begin = 0; begin < inputs.size(); begin += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(inputs.size(), begin + static_cast<size_t>(batch_size));
    std::vector<nn::Tensor> chunk;
    for (size_t i = begin; i < end; ++i) chunk.push_back(inputs[i].unsqueeze(0));
    for (float z : logits(nn::concat(chunk, 0)).to(nn::Device::cpu()).contiguous().to_vector<float>())
      probs.push_back(probability_of_logit(z));
  }
  return probs;
}

nn::explain::GradCam PneumoniaModel::explain(const nn::Tensor& input) {
  NN_CHECK(input.dim() == 4 && input.size(0) == 1, "PneumoniaModel::explain: expected one input (1, 3, S, S)");
  return explain_batch(input).front();
}

std::vector<nn::explain::GradCam> PneumoniaModel::explain_batch(const nn::Tensor& inputs,
                                                                 std::vector<Assessment>* assessments) {
  NN_CHECK(!members.empty(), "PneumoniaModel: no members");
  const int64_t n = inputs.size(0);
  std::vector<nn::explain::GradCam> out;
  std::vector<nn::Tensor> heat(static_cast<size_t>(n));
  std::vector<double> logit(static_cast<size_t>(n), 0.0);
  std::vector<std::vector<double>> distances;
  for (const auto& m : members) {
    std::vector<nn::explain::GradCam> cams;
    if (assessments != nullptr && gate.has_features()) {
      // The gate's layer runs inside Grad-CAM's forward pass: a hook reads its output there.
      const size_t k = distances.size();
      nn::ForwardHooks look(*m, {{gate.layer, [&](const nn::Tensor& a) {
                                    distances.push_back(gate.members[k].detector.distances(pooled_features(a.detach())));
                                    return a;
                                  }}});
      cams = nn::explain::grad_cam_batch(*m, inputs, nn::models::vgg_cam_layer(*m), std::vector<int64_t>(static_cast<size_t>(n), 0));
      NN_CHECK(distances.size() == k + 1, "PneumoniaModel::explain_batch: the gate's layer '", gate.layer, "' did not run");
    } else {
      cams = nn::explain::grad_cam_batch(*m, inputs, nn::models::vgg_cam_layer(*m), std::vector<int64_t>(static_cast<size_t>(n), 0));
    }
    if (out.empty()) out = cams;
    for (int64_t i = 0; i < n; ++i) {
      heat[i] = heat[i].defined() ? nn::add(heat[i], cams[i].heatmap) : cams[i].heatmap;
      logit[i] += cams[i].logit;
    }
  }
  if (members.size() > 1) {
    for (int64_t i = 0; i < n; ++i) {
      // The mean of maps each scaled to a maximum of 1, scaled again (x / x is exactly 1).
      std::vector<float> h = heat[i].contiguous().to_vector<float>();
      const float mx = *std::max_element(h.begin(), h.end());
      for (float& v : h) v = mx > 0 ? v / mx : 0.0f;
      out[i].heatmap = nn::from_vector(h, heat[i].shape());
      out[i].logit = logit[i] / static_cast<double>(members.size());
    }
  }
  if (assessments != nullptr) {
    std::vector<float> z;
    for (const auto& cam : out) z.push_back(static_cast<float>(cam.logit));
    *assessments = assessments_of(*this, z, distances);
  }
  return out;
}

void PneumoniaModel::to(nn::Device device) {
  for (const auto& m : members) m->to(device);
}

int PneumoniaModel::fold_batch_norms() {
  int folded = 0;
  for (const auto& m : members) folded += nn::fold_batch_norms(*m);
  return folded;
}

nn::data::Image prepare_xray(const std::string& path, int64_t size) { return prepare_decoded(nn::data::load_image(path), size); }

nn::data::Image prepare_decoded(const nn::data::Image& decoded, int64_t size) {
  nn::data::Image image = nn::data::to_grayscale(decoded);
  if (image.height == size && image.width == size) return image;
  return nn::data::resize(image, size, size);
}

nn::Tensor xray_to_input(const nn::data::Image& gray, nn::data::Preprocessing preset) {
  return nn::data::to_tensor(nn::data::to_rgb(gray), preset);
}

}  // namespace pneumonia
