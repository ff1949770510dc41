// The nn side of tests/onnx_engines.py (the comparison with onnxruntime, OpenVINO and
// torch.onnx.export):
//
//   onnx-reference make DIR   random VGG16 (224) and a 3-member VGG11-BN ensemble (128, with a
//                             temperature) from fixed seeds: DIR/{vgg16,ensemble}.onnx written by
//                             nn::onnx, DIR/ensemble.safetensors (for nn-convert onnx-export), the
//                             inputs DIR/input_{224,128}.safetensors and the outputs the modules
//                             themselves compute, DIR/{vgg16,ensemble}_nn.safetensors
//   onnx-reference run MODEL.onnx IN.safetensors OUT.safetensors
//                             imports MODEL.onnx and writes its outputs for the tensor "input"
//
// Exit codes: 0 done, 1 an error (one line on stderr), 2 usage.
#include <nn/autograd.h>
#include <nn/error.h>
#include <nn/generator.h>
#include <nn/io/safetensors.h>
#include <nn/models/vgg.h>
#include <nn/onnx.h>
#include <nn/ops.h>

#include <cstdio>
#include <string>

namespace {

void randomize_batch_norms(nn::Module& m, nn::Generator& gen) {
  nn::NoGradGuard no_grad;
  for (auto& [name, sub] : m.named_modules()) {
    auto* bn = dynamic_cast<nn::BatchNorm*>(sub);
    if (!bn) continue;
    const int64_t c = bn->num_features();
    bn->weight().detach().copy_(nn::uniform({c}, 0.5, 1.5, gen));
    bn->bias().detach().copy_(nn::uniform({c}, -0.3, 0.3, gen));
    bn->running_mean().detach().copy_(nn::uniform({c}, -0.2, 0.2, gen));
    bn->running_var().detach().copy_(nn::uniform({c}, 0.5, 2.0, gen));
  }
}

nn::Tensor forward(nn::Module& m, const nn::Tensor& x) {
  nn::NoGradGuard no_grad;
  nn::EvalModeGuard eval;
  return m.forward(x);
}

int make(const std::string& dir) {
  nn::Generator gen(2026);
  {
    nn::models::VGG vgg16({}, gen);  // torchvision's VGG16, 1000 classes
    vgg16.eval();
    const nn::Tensor x = nn::uniform({2, 3, 224, 224}, -2, 2, gen);
    nn::onnx::ExportOptions options;
    options.output_name = "logits";
    nn::onnx::export_model(vgg16, x, dir + "/vgg16.onnx", options);
    nn::io::save_safetensors(dir + "/input_224.safetensors", {{"input", x}});
    nn::io::save_safetensors(dir + "/vgg16_nn.safetensors", {{"logits", forward(vgg16, x)}});
  }
  nn::models::VGGOptions o;
  o.depth = 11;
  o.batch_norm = true;
  o.width_multiplier = 0.25;
  o.input_size = 128;
  o.num_classes = 1;
  o.hidden_features = 256;
  std::vector<std::shared_ptr<nn::models::VGG>> members;
  std::vector<nn::onnx::ExportMember> export_members;
  std::vector<std::pair<std::string, nn::Tensor>> file;
  const nn::Tensor x = nn::uniform({4, 3, 128, 128}, -2, 2, gen);
  nn::Tensor sum;
  for (int k = 0; k < 3; ++k) {
    auto m = std::make_shared<nn::models::VGG>(o, gen);
    randomize_batch_norms(*m, gen);
    m->eval();
    const std::string prefix = "member" + std::to_string(k) + ".";
    for (const auto& [name, t] : m->state_dict()) file.emplace_back(prefix + name, t);
    export_members.push_back({prefix, m.get()});
    const nn::Tensor y = forward(*m, x);
    sum = sum.defined() ? nn::add(sum, y) : y;
    members.push_back(m);
  }
  const double temperature = 1.3, bias = 0.7;
  const nn::Tensor logit = nn::mul(sum, 1.0 / 3);
  nn::onnx::ExportOptions options;
  options.output_name = "logit";
  options.temperature = temperature;
  options.bias = bias;
  options.metadata = {{"temperature", "1.3"}, {"calibration_bias", "0.7"}, {"threshold", "0.4"},
                      {"preprocessing", "torchvision"}};
  nn::onnx::export_ensemble(export_members, x, dir + "/ensemble.onnx", options);
  nn::io::save_safetensors(dir + "/ensemble.safetensors", file, options.metadata);
  nn::io::save_safetensors(dir + "/input_128.safetensors", {{"input", x}});
  nn::io::save_safetensors(dir + "/ensemble_nn.safetensors",
                           {{"logit", logit}, {"probability", nn::sigmoid(nn::add(nn::mul(logit, 1 / temperature), bias))}});
  std::printf("wrote %s/{vgg16,ensemble}.onnx and the reference tensors\n", dir.c_str());
  return 0;
}

int run(const std::string& model_path, const std::string& in, const std::string& out) {
  const nn::onnx::ImportedModel model = nn::onnx::import_model(model_path);
  const nn::Tensor x = nn::io::load_safetensors(in).at("input");
  nn::NoGradGuard no_grad;
  std::vector<std::pair<std::string, nn::Tensor>> outputs = {{model.output_name, model.forward(x)}};
  if (model.temperature > 0) outputs.emplace_back(model.probability_name, model.probability(x));
  nn::io::save_safetensors(out, outputs);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  if (!((command == "make" && argc == 3) || (command == "run" && argc == 5))) {
    std::fprintf(stderr, "usage: onnx-reference make DIR | run MODEL.onnx IN.safetensors OUT.safetensors\n");
    return 2;
  }
  try {
    return command == "make" ? make(argv[2]) : run(argv[2], argv[3], argv[4]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "onnx-reference: %s\n", e.what());
    return 1;
  }
}
