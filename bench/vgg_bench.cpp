// CPU benchmark of the whole model: torchvision-shaped VGG16 (nn::models::VGG), eval mode, no
// autograd, on 224x224 inputs:
//   BM_VGG16Forward/batch:N   logits of N images: 2 * (conv + linear MACs) = 30.95 GFLOP per image
// bench/torch_bench.py times torchvision.models.vgg16() the same way and prints the ratio.
#include <benchmark/benchmark.h>
#include <nn/models/vgg.h>
#include <nn/nn.h>

#include "vgg_flops.h"

namespace {

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
  state.counters["GFLOP"] = benchmark::Counter(vgg_forward_flops(model) * batch * 1e-9,
                                               benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_VGG16Forward)->ArgName("batch")->Arg(1)->Arg(8)->UseRealTime()->MinTime(1.0)->Unit(benchmark::kMillisecond);

}  // namespace
