// CPU benchmark of the whole model: torchvision-shaped VGG16 (nn::models::VGG), eval mode, no
// autograd, on 224x224 inputs:
//   BM_VGG16Forward/batch:N   logits of N images: 2 * (conv + linear MACs) = 30.95 GFLOP per image
// bench/torch_bench.py times torchvision.models.vgg16() the same way and prints the ratio.
#include <benchmark/benchmark.h>
#include <nn/models/vgg.h>
#include <nn/nn.h>

namespace {

// FLOPs of one forward pass of a model at its input size: 2 per multiply-add of every Conv2d
// and Linear (ReLU, pooling and bias adds are not counted, as usual).
double vgg_flops_per_image(const nn::models::VGG& model) {
  double flops = 0;
  int64_t size = model.options().input_size;
  for (const auto& child : model.features()->children()) {
    if (auto conv = std::dynamic_pointer_cast<nn::Conv2d>(child)) {
      flops += 2.0 * conv->out_channels() * size * size * conv->in_channels() * 9;
    } else if (std::dynamic_pointer_cast<nn::MaxPool2d>(child)) {
      size /= 2;
    }
  }
  for (const auto& [name, p] : model.named_parameters())
    if (name.rfind("classifier.", 0) == 0 && p.dim() == 2) flops += 2.0 * p.size(0) * p.size(1);
  return flops;
}

void BM_VGG16Forward(benchmark::State& state) {
  const int64_t batch = state.range(0);
  nn::Generator gen(16);
  static nn::models::VGG model(nn::models::VGGOptions{}, gen);  // 528 MB: built once
  model.eval();
  const nn::Tensor x = nn::randn({batch, 3, 224, 224}, gen);
  nn::NoGradGuard no_grad;
  for (auto _ : state) {
    nn::Tensor logits = model(x);
    benchmark::DoNotOptimize(logits.raw_data());
  }
  state.counters["GFLOP"] = benchmark::Counter(vgg_flops_per_image(model) * batch * 1e-9,
                                               benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_VGG16Forward)->ArgName("batch")->Arg(1)->Arg(8)->UseRealTime()->MinTime(1.0)->Unit(benchmark::kMillisecond);

}  // namespace
