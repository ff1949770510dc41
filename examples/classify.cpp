// classify: ImageNet top-k classes of images with a VGG from a safetensors file (nn-convert's
// output). The preprocessing the weights expect comes from the file's metadata.
//
//   classify --weights vgg16.safetensors [--topk 5] [--json] IMAGE...
//   classify --weights W --logits logits.safetensors --features features.safetensors IMAGE...
//
// An image whose size already equals the model's input size is used as it is; other sizes follow
// torchvision's eval transform (shorter side to 256, center crop 224). Every image is decoded
// before any work starts, so a bad one stops the run with its name and nothing half-written.
// Exit codes: 0 success, 1 bad input (weights, image, labels), 2 usage error.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <nn/data/image.h>
#include <nn/io/safetensors.h>
#include <nn/models/vgg.h>
#include <nn/nn.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

namespace {

// The class names: --labels, else imagenet_classes.txt installed next to the program
// (../share/nn) or in the source tree's weights/.
std::vector<std::string> load_labels(const std::string& explicit_path, const char* argv0) {
  std::vector<std::string> candidates;
  if (!explicit_path.empty()) {
    candidates.push_back(explicit_path);
  } else {
    std::filesystem::path exe = std::filesystem::path(argv0).parent_path();
    candidates.push_back((exe / "../share/nn/imagenet_classes.txt").string());
    candidates.push_back(NN_CLASSES_FILE);
  }
  for (const std::string& path : candidates) {
    std::ifstream in(path);
    if (!in) continue;
    std::vector<std::string> labels;
    for (std::string line; std::getline(in, line);) labels.push_back(line);
    return labels;
  }
  NN_CHECK(explicit_path.empty(), "cannot read the labels file ", explicit_path);
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"classify: ImageNet top-k classes with a VGG in safetensors (see nn-convert)"};
  std::string weights, labels_path, logits_path, features_path;
  std::vector<std::string> images;
  int topk = 5, threads = 0;
  int64_t batch = 8;
  bool as_json = false;
  app.add_option("--weights", weights, "VGG weights (.safetensors from nn-convert)")->required();
  app.add_option("--topk", topk, "how many classes to print per image")->check(CLI::Range(1, 1000));
  app.add_flag("--json", as_json, "print JSON instead of text");
  app.add_option("--labels", labels_path, "class names, one per line (default: ImageNet's 1000)");
  app.add_option("--logits", logits_path, "write the logits [N, classes] to this .safetensors file");
  app.add_option("--features", features_path, "write the last max-pool output [N, C, 7, 7] to this .safetensors file");
  app.add_option("--batch", batch, "images per forward pass")->check(CLI::Range(1, 1024));
  app.add_option("--threads", threads, "CPU threads (default: NN_NUM_THREADS or all cores)");
  app.add_option("images", images, "JPEG or PNG images")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  try {
    if (threads > 0) nn::set_num_threads(threads);
    nn::models::LoadedVGG loaded = nn::models::load_vgg(weights);
    nn::set_conv_weight_cache(true);  // the weights stay as loaded: transform them once
    nn::models::VGG& model = *loaded.model;
    auto preset_it = loaded.metadata.find("preprocessing");
    NN_CHECK(preset_it != loaded.metadata.end(), weights,
             ": the file's metadata does not name its preprocessing (\"torchvision\" or \"caffe\"); "
             "convert the weights with nn-convert");
    const nn::data::Preprocessing preset = nn::data::parse_preprocessing(preset_it->second);
    const int64_t size = model.options().input_size;
    NN_CHECK(model.has_top() || (logits_path.empty() && !features_path.empty()), weights,
             ": the model has no classifier (notop weights), so there are no classes or logits; "
             "use --features to write its features");

    // Decode and transform every image first: a bad file stops the run before any output.
    std::vector<nn::Tensor> inputs;
    for (const std::string& path : images)
      inputs.push_back(nn::data::eval_transform(nn::data::load_image(path), preset, size));

    nn::NoGradGuard no_grad;
    std::vector<nn::Tensor> logits_parts, feature_parts;
    for (size_t begin = 0; begin < inputs.size(); begin += static_cast<size_t>(batch)) {
      size_t end = std::min(inputs.size(), begin + static_cast<size_t>(batch));
      std::vector<nn::Tensor> chunk;
      for (size_t i = begin; i < end; ++i) chunk.push_back(inputs[i].unsqueeze(0));
      nn::Tensor features = model.forward_features(nn::concat(chunk, 0));
      if (!features_path.empty()) feature_parts.push_back(features);
      if (model.has_top()) logits_parts.push_back(model.forward_head(features));
    }
    if (!features_path.empty())
      nn::io::save_safetensors(features_path, {{"features", nn::concat(feature_parts, 0)}},
                               {{"weights", weights}});
    if (!model.has_top()) return 0;
    nn::Tensor logits = nn::concat(logits_parts, 0);
    if (!logits_path.empty()) nn::io::save_safetensors(logits_path, {{"logits", logits}}, {{"weights", weights}});

    const std::vector<std::string> labels = load_labels(labels_path, argv[0]);
    const int64_t classes = logits.size(1);
    const bool named = static_cast<int64_t>(labels.size()) == classes;
    nn::Tensor probs = nn::softmax(logits, 1);
    nlohmann::json out = nlohmann::json::array();
    for (size_t i = 0; i < images.size(); ++i) {
      std::vector<float> p = probs.select(0, static_cast<int64_t>(i)).contiguous().to_vector<float>();
      std::vector<int64_t> order(p.size());
      std::iota(order.begin(), order.end(), 0);
      const int64_t k = std::min<int64_t>(topk, classes);
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [&](int64_t a, int64_t b) { return p[a] > p[b]; });
      nlohmann::json top = nlohmann::json::array();
      if (!as_json) std::printf("%s\n", images[i].c_str());
      for (int64_t r = 0; r < k; ++r) {
        const int64_t c = order[r];
        const std::string label = named ? labels[c] : "class " + std::to_string(c);
        if (as_json)
          top.push_back({{"class", c}, {"label", label}, {"probability", p[c]}});
        else
          std::printf("  %7.4f  %s (%lld)\n", p[c], label.c_str(), static_cast<long long>(c));
      }
      if (as_json) out.push_back({{"image", images[i]}, {"top", top}});
    }
    if (as_json) std::cout << out.dump(2) << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "classify: %s\n", e.what());
    return 1;
  }
}
