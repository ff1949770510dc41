// libFuzzer target: the ONNX reader (nn/onnx.h, nn::onnx::import_from_bytes). The input is a whole
// .onnx file. nn::Error is the expected answer to a malformed or unsupported file; anything else (a
// sanitizer report, another exception, an allocation over -malloc_limit_mb) is a finding. Beyond
// reading, the reader promises that a graph it accepts runs: when the graph is small enough to run
// quickly, it runs on an input of the declared size, is exported again and the export re-imported,
// and any error there is a finding too (__builtin_trap).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "nn/autograd.h"
#include "nn/onnx.h"
#include "nn/ops.h"
#include "read_tensors.h"

namespace {

volatile uint64_t sink;

// The budget for running an accepted graph: parameters and per-image activation elements.
constexpr int64_t kMaxParameters = 200000, kMaxActivation = 200000;

void run_and_export_again(const nn::onnx::ImportedModel& model) {
  int64_t parameters = 0;
  for (const auto& [name, t] : model.state) parameters += t.numel();
  if (parameters > kMaxParameters || model.largest_activation > kMaxActivation) return;
  nn::Shape shape(model.input_shape.begin(), model.input_shape.end());
  shape[0] = 1;
  const nn::Tensor x = nn::full(shape, 0.5);
  nn::NoGradGuard no_grad;
  try {
    const nn::Tensor y = model.forward(x);
    sink = sink + static_cast<uint64_t>(y.numel());
    if (model.temperature > 0) sink = sink + static_cast<uint64_t>(model.probability(x).numel());
    std::vector<nn::onnx::ExportMember> members;
    for (size_t k = 0; k < model.members.size(); ++k)
      members.push_back({"m" + std::to_string(k) + ".", model.members[k].get()});
    nn::onnx::ExportOptions options;
    options.temperature = model.temperature;
    options.bias = model.bias;
    const nn::onnx::ImportedModel again = nn::onnx::import_from_bytes(nn::onnx::export_to_bytes(members, x, options));
    sink = sink + static_cast<uint64_t>(again.forward(x).numel());
    // Float32 in the file: compare as float (a Mul by c imports as T = 1 / c, exported as a float).
    if (static_cast<float>(again.temperature) != static_cast<float>(model.temperature) ||
        static_cast<float>(again.bias) != static_cast<float>(model.bias)) {
      std::fprintf(stderr, "export lost the calibration: T %g -> %g, bias %g -> %g\n", model.temperature,
                   again.temperature, model.bias, again.bias);
      __builtin_trap();
    }
  } catch (const nn::Error& e) {
    std::fprintf(stderr, "an imported graph failed to run or to export again: %s\n", e.what());
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    const nn::onnx::ImportedModel model = nn::onnx::import_from_bytes(bytes, "<fuzz>");
    sink = read_every_byte(model.state);
    for (const auto& [key, value] : model.metadata) sink = sink + key.size() + value.size();
    run_and_export_again(model);
  } catch (const nn::Error&) {
  }
  return 0;
}
