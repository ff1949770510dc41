// nn-convert: ImageNet weights from torchvision (.pth, both torch.save formats) or Keras (.h5) to
// safetensors in torchvision's names and layouts, with the preprocessing the weights expect in
// __metadata__; and `inspect`, which prints any of those files. No Python, no pickle code run.
//
//   nn-convert torchvision IN.pth -o OUT.safetensors
//   nn-convert keras IN.h5 -o OUT.safetensors
//   nn-convert inspect FILE [--json]
//   nn-convert onnx-export MODEL -o MODEL.onnx [--input-size S]   (a VGG, or an ensemble of them)
//   nn-convert onnx MODEL.onnx -o OUT.safetensors [--preprocessing torchvision|caffe]
//
// Exit codes: 0 success, 1 a bad or unreadable input (one message on stderr), 2 usage error.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <nn/error.h>
#include <nn/io/safetensors.h>
#include <nn/models/vgg.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#ifdef NN_HAS_ONNX
#include <nn/onnx.h>
#endif

#include <regex>

#include "converted_weights.h"
#include "keras_h5.h"
#include "torch_checkpoint.h"

namespace {

using nn::weights::ConvertedWeights;

// What a file is, from its first bytes.
std::string sniff_format(const std::string& path) {
  if (std::filesystem::path(path).extension() == ".onnx") return "onnx";
  std::ifstream in(path, std::ios::binary);
  NN_CHECK(in.good(), path, ": cannot open: ", std::strerror(errno));
  unsigned char head[8] = {};
  in.read(reinterpret_cast<char*>(head), sizeof head);
  const std::streamsize n = in.gcount();
  NN_CHECK(n > 0, path, ": the file is empty");
  if (n >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4) return "torchvision";
  if (head[0] == 0x80) return "torchvision";  // a pickle stream: the legacy torch.save format
  if (n == 8 && head[0] == 0x89 && head[1] == 'H' && head[2] == 'D' && head[3] == 'F') return "keras";
  return "safetensors";  // the reader says so clearly when it is not one either
}

// Records the architecture when the tensors form a VGG ("vgg16", "vgg16_bn", "vgg19-notop", ...).
void add_architecture(ConvertedWeights& weights) {
  try {
    weights.metadata[nn::weights::kMetaArchitecture] = nn::models::vgg_name(nn::models::infer_vgg_options(weights.tensors));
  } catch (const nn::Error&) {
    weights.metadata.erase(nn::weights::kMetaArchitecture);  // not a VGG: convert it all the same
  }
}

ConvertedWeights read_any(const std::string& format, const std::string& path) {
  if (format == "torchvision") return nn::weights::read_torch_checkpoint(path);
  if (format == "keras") return nn::weights::read_keras_h5(path);
#ifdef NN_HAS_ONNX
  if (format == "onnx") {
    nn::onnx::ImportedModel imported = nn::onnx::import_model(path);
    return ConvertedWeights{imported.state, imported.metadata};
  }
#else
  NN_CHECK(format != "onnx", path, ": this nn-convert was built without ONNX support (libonnx-dev)");
#endif
  nn::io::SafetensorsFile file = nn::io::load_safetensors(path);
  return ConvertedWeights{file.tensors, file.metadata};
}

int convert(const std::string& format, const std::string& in, const std::string& out) {
  NN_CHECK(std::filesystem::absolute(in) != std::filesystem::absolute(out),
           "the output path is the input file: ", out);
  ConvertedWeights weights = read_any(format, in);
  NN_CHECK(!weights.tensors.empty(), in, ": the file holds no tensors");
  nn::weights::check_unique_names(weights, in);
  add_architecture(weights);
  nn::io::save_safetensors(out, weights.tensors, weights.metadata);
  int64_t elements = 0;
  for (const auto& [name, t] : weights.tensors) elements += t.numel();
  std::printf("wrote %s: %zu tensors, %lld values", out.c_str(), weights.tensors.size(),
              static_cast<long long>(elements));
  for (const char* key : {nn::weights::kMetaArchitecture, nn::weights::kMetaPreprocessing}) {
    auto it = weights.metadata.find(key);
    if (it != weights.metadata.end()) std::printf(", %s %s", key, it->second.c_str());
  }
  std::printf("\n");
  return 0;
}

#ifdef NN_HAS_ONNX
// The chains of an imported graph, one line per member.
std::string describe_chains(const nn::onnx::ImportedModel& m) {
  std::string text;
  for (size_t k = 0; k < m.members.size(); ++k) {
    text += m.members.size() > 1 ? "  member " + std::to_string(k) + ":" : "  chain:";
    for (size_t i = 0; i < m.members[k]->size(); ++i) text += " " + (*m.members[k])[i]->name();
    text += "\n";
  }
  return text;
}

// A VGG file (nn-convert's), or an ensemble of VGGs under "member<k>." (a cross-validated
// pneumonia-train run): the networks rebuilt from their tensors' names, every other tensor carried
// along, the file's metadata in the graph's; with a "temperature" in it, a probability output too.
int export_onnx(const std::string& in, const std::string& out, int64_t input_size) {
  NN_CHECK(std::filesystem::absolute(in) != std::filesystem::absolute(out), "the output path is the input file: ", out);
  const std::string format = sniff_format(in);
  NN_CHECK(format != "onnx", in, ": already an ONNX file");
  ConvertedWeights weights = read_any(format, in);
  NN_CHECK(!weights.tensors.empty(), in, ": the file holds no tensors");
  nn::weights::check_unique_names(weights, in);
  const std::regex member_name(R"(member(\d+)\.(.+))");
  std::map<int, nn::StateDict> member_states;
  nn::StateDict plain;
  for (const auto& [name, t] : weights.tensors) {
    std::smatch m;
    if (std::regex_match(name, m, member_name) && m[1].str().size() < 4)
      member_states[std::stoi(m[1].str())].emplace_back(m[2].str(), t);
    else
      plain.emplace_back(name, t);
  }
  const bool ensemble = !member_states.empty();
  if (!ensemble) member_states[0] = plain;
  NN_CHECK(member_states.rbegin()->first + 1 == static_cast<int>(member_states.size()), in,
           ": the members are not numbered 0..", member_states.size() - 1);
  std::vector<std::shared_ptr<nn::models::VGG>> models;
  std::vector<nn::onnx::ExportMember> members;
  nn::onnx::ExportOptions options;
  if (ensemble) options.extra_tensors = plain;  // e.g. the out-of-distribution gate
  for (auto& [k, state] : member_states) {
    const std::string prefix = ensemble ? "member" + std::to_string(k) + "." : "";
    nn::models::VGGOptions vgg_options = nn::models::infer_vgg_options(state);
    auto model = std::make_shared<nn::models::VGG>(vgg_options);
    const nn::LoadStateDictResult result = model->load_state_dict(state, /*strict=*/false);
    NN_CHECK(result.missing_keys.empty(), in, ": ", prefix, result.missing_keys.front(),
             " is missing (not a VGG that nn builds?)");
    for (const std::string& name : result.unexpected_keys)
      for (const auto& [n, t] : state)
        if (n == name) options.extra_tensors.emplace_back(prefix + n, t);
    model->eval();
    if (input_size <= 0) input_size = vgg_options.input_size;
    members.push_back({prefix, model.get()});
    models.push_back(model);
  }
  options.metadata = weights.metadata;
  auto temperature = weights.metadata.find("temperature");
  if (temperature != weights.metadata.end()) {
    options.temperature = std::stod(temperature->second);
    auto bias = weights.metadata.find("calibration_bias");
    if (bias != weights.metadata.end()) options.bias = std::stod(bias->second);
    options.output_name = "logit";
  } else {
    options.output_name = models[0]->has_top() ? "logits" : "features";  // without the top: the last max pool's
  }
  const nn::Tensor example = nn::zeros({1, models[0]->options().in_channels, input_size, input_size});
  nn::onnx::export_ensemble(members, example, out, options);
  const nn::onnx::ImportedModel check = nn::onnx::import_model(out);
  std::printf("wrote %s: %zu network%s, input %s [batch, %lld, %lld, %lld], output %s%s%s, opset %lld\n", out.c_str(),
              members.size(), members.size() > 1 ? "s averaged" : "", check.input_name.c_str(),
              static_cast<long long>(example.size(1)), static_cast<long long>(input_size),
              static_cast<long long>(input_size), check.output_name.c_str(), check.temperature > 0 ? ", " : "",
              check.probability_name.c_str(), static_cast<long long>(check.opset));
  return 0;
}

int import_onnx(const std::string& in, const std::string& out, const std::string& preprocessing) {
  NN_CHECK(std::filesystem::absolute(in) != std::filesystem::absolute(out), "the output path is the input file: ", out);
  nn::onnx::ImportedModel imported = nn::onnx::import_model(in);
  ConvertedWeights weights{imported.state, imported.metadata};
  weights.metadata[nn::weights::kMetaSourceFormat] = "onnx";
  weights.metadata[nn::weights::kMetaSourceFile] = std::filesystem::path(in).filename().string();
  if (!preprocessing.empty()) weights.metadata[nn::weights::kMetaPreprocessing] = preprocessing;
  if (!weights.metadata.count(nn::weights::kMetaArchitecture)) add_architecture(weights);
  nn::io::save_safetensors(out, weights.tensors, weights.metadata);
  std::printf("wrote %s: %zu tensors from %s (opset %lld, %s)%s%s\n%s", out.c_str(), weights.tensors.size(), in.c_str(),
              static_cast<long long>(imported.opset), imported.producer.empty() ? "unknown producer" : imported.producer.c_str(),
              weights.metadata.count(nn::weights::kMetaArchitecture) ? ", architecture " : "",
              weights.metadata.count(nn::weights::kMetaArchitecture) ? weights.metadata[nn::weights::kMetaArchitecture].c_str() : "",
              describe_chains(imported).c_str());
  return 0;
}
#endif

int inspect(const std::string& path, bool as_json) {
  const std::string format = sniff_format(path);
  ConvertedWeights weights = read_any(format, path);
  int64_t elements = 0;
  for (const auto& [name, t] : weights.tensors) elements += t.numel();
  if (as_json) {
    nlohmann::json j;
    j["file"] = path;
    j["format"] = format;
    j["metadata"] = weights.metadata;
    j["tensors"] = nlohmann::json::array();
    for (const auto& [name, t] : weights.tensors)
      j["tensors"].push_back({{"name", name}, {"dtype", nn::io::safetensors_dtype_name(t.dtype())}, {"shape", t.shape()}});
    j["values"] = elements;
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::printf("%s: %s, %zu tensors, %lld values\n", path.c_str(), format.c_str(), weights.tensors.size(),
              static_cast<long long>(elements));
  if (!weights.metadata.empty()) {
    std::printf("metadata:\n");
    for (const auto& [key, value] : weights.metadata) std::printf("  %s: %s\n", key.c_str(), value.c_str());
  }
  size_t width = 0;
  for (const auto& [name, t] : weights.tensors) width = std::max(width, name.size());
  for (const auto& [name, t] : weights.tensors)
    std::printf("  %-*s  %-4s  %s\n", static_cast<int>(width), name.c_str(),
                nn::io::safetensors_dtype_name(t.dtype()), nn::shape_str(t.shape()).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nn-convert: torchvision .pth / Keras .h5 weights -> safetensors (torchvision names)"};
  app.require_subcommand(1);
  std::string in, out;
  auto* torch_cmd = app.add_subcommand("torchvision", "convert a torch.save state dict (.pth, zip or legacy format)");
  torch_cmd->add_option("input", in, "the .pth file")->required();
  torch_cmd->add_option("-o,--output", out, "the .safetensors file to write")->required();
  auto* keras_cmd = app.add_subcommand("keras", "convert Keras VGG weights (.h5, full or notop)");
  keras_cmd->add_option("input", in, "the .h5 file")->required();
  keras_cmd->add_option("-o,--output", out, "the .safetensors file to write")->required();
  bool as_json = false;
  auto* inspect_cmd = app.add_subcommand("inspect", "print the tensors and metadata of a .safetensors, .pth or .h5 file");
  inspect_cmd->add_option("file", in, "the file")->required();
  inspect_cmd->add_flag("--json", as_json, "machine-readable output");
  int64_t input_size = 0;
  auto* onnx_export_cmd = app.add_subcommand("onnx-export", "write a VGG (or an ensemble of VGGs) as an ONNX file");
  onnx_export_cmd->add_option("input", in, "a .safetensors, .pth or .h5 file")->required();
  onnx_export_cmd->add_option("-o,--output", out, "the .onnx file to write")->required();
  onnx_export_cmd->add_option("--input-size", input_size, "square input side (default: what the classifier is sized for)");
  auto* onnx_cmd = app.add_subcommand("onnx", "convert an ONNX model to safetensors");
  onnx_cmd->add_option("input", in, "the .onnx file")->required();
  onnx_cmd->add_option("-o,--output", out, "the .safetensors file to write")->required();
  std::string preprocessing;
  onnx_cmd->add_option("--preprocessing", preprocessing,
                       "the input preprocessing the weights expect, recorded for classify (files from other tools "
                       "do not say)")
      ->check(CLI::IsMember({"torchvision", "caffe"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    if (*torch_cmd) return convert("torchvision", in, out);
    if (*keras_cmd) return convert("keras", in, out);
#ifdef NN_HAS_ONNX
    if (*onnx_export_cmd) return export_onnx(in, out, input_size);
    if (*onnx_cmd) return import_onnx(in, out, preprocessing);
#else
    NN_CHECK(!*onnx_export_cmd && !*onnx_cmd, "this nn-convert was built without ONNX support (libonnx-dev)");
#endif
    return inspect(in, as_json);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nn-convert: %s\n", e.what());
    return 1;
  }
}
