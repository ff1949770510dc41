// Exports a small VGG11 to ONNX with the installed nn::onnx, imports the file again and checks
// that the imported graph computes the same logits. Exit code 1 on a mismatch.
#include <nn/models/vgg.h>
#include <nn/nn.h>
#include <nn/onnx.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

int main() {
  nn::models::VGGOptions o;
  o.depth = 11;
  o.batch_norm = true;
  o.num_classes = 3;
  o.width_multiplier = 1.0 / 16;
  o.input_size = 32;
  nn::Generator gen(2);
  nn::models::VGG model(o, gen);
  model.eval();
  const nn::Tensor x = nn::randn({2, 3, 32, 32}, gen);
  const char* tmp = std::getenv("TMPDIR");
  const std::string path = std::string(tmp ? tmp : "/tmp") + "/nn_consumer_vgg11.onnx";
  nn::onnx::export_model(model, x, path);
  const nn::onnx::ImportedModel imported = nn::onnx::import_model(path);
  std::remove(path.c_str());
  nn::NoGradGuard no_grad;
  const auto a = model(x).to_vector<double>(), b = imported.forward(x).to_vector<double>();
  double diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - b[i]));
  std::printf("ONNX round trip of VGG11-BN: %zu chain(s), %zu tensors, max |difference| %.3g\n", imported.members.size(),
              imported.state.size(), diff);
  return a.size() == 6 && b.size() == 6 && diff < 1e-5 ? 0 : 1;
}
