// nn-convert: ImageNet weights from torchvision (.pth, both torch.save formats) or Keras (.h5) to
// safetensors in torchvision's names and layouts, with the preprocessing the weights expect in
// __metadata__; and `inspect`, which prints any of those files. No Python, no pickle code run.
//
//   nn-convert torchvision IN.pth -o OUT.safetensors
//   nn-convert keras IN.h5 -o OUT.safetensors
//   nn-convert inspect FILE [--json]
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

#include "converted_weights.h"
#include "keras_h5.h"
#include "torch_checkpoint.h"

namespace {

using nn::weights::ConvertedWeights;

// What a file is, from its first bytes.
std::string sniff_format(const std::string& path) {
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
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    if (*torch_cmd) return convert("torchvision", in, out);
    if (*keras_cmd) return convert("keras", in, out);
    return inspect(in, as_json);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nn-convert: %s\n", e.what());
    return 1;
  }
}
