// CPU benchmark (Google Benchmark) of the ops VGG16 spends its time in, through the public API:
//   BM_Conv2dForward/layer:L/batch:N          conv2d on VGG16's conv layer L (224x224 input), no
//                                             autograd: 2*N*O*OH*OW*C*KH*KW FLOPs
//   BM_Conv2dInference/layer:L/batch:N        conv2d + fused ReLU with the inference weight cache on
//                                             (nn::set_conv_weight_cache): what vgg16-bench's
//                                             forward runs per layer; same FLOPs
//   BM_Conv2dForwardBackward/layer:L/batch:N  conv2d with every input requiring grad, then
//                                             backward (dx, dw, db): 3x the forward FLOPs
//   BM_Matmul/n:S                             (S,S) x (S,S) through nn::matmul: 2*S^3 FLOPs
//   BM_Linear/batch:B/in:K/out:M              VGG16's classifier shapes through nn::linear
//                                             (x (B,K) times weight (M,K)^T + bias): 2*B*K*M FLOPs
// Each reports a GFLOP/s counter. Inputs are allocated once per benchmark, outside the timed
// loop; the first iteration also grows the conv workspaces. Threads: NN_NUM_THREADS.
// bench/torch_bench.py runs the same shapes in PyTorch and prints both side by side.
#include <benchmark/benchmark.h>
#include <nn/nn.h>

#include <array>
#include <cstdint>

namespace {

// VGG16's 13 conv layers at 224x224 input: in channels, out channels, spatial size; all 3x3,
// stride 1, padding 1.
struct ConvLayer {
  int64_t in, out, size;
};
constexpr std::array<ConvLayer, 13> kVgg16Convs{{{3, 64, 224},
                                                 {64, 64, 224},
                                                 {64, 128, 112},
                                                 {128, 128, 112},
                                                 {128, 256, 56},
                                                 {256, 256, 56},
                                                 {256, 256, 56},
                                                 {256, 512, 28},
                                                 {512, 512, 28},
                                                 {512, 512, 28},
                                                 {512, 512, 14},
                                                 {512, 512, 14},
                                                 {512, 512, 14}}};

constexpr double kMinTime = 0.2;  // seconds per benchmark (at least one iteration)

double conv_flops(const ConvLayer& l, int64_t batch) {
  // 3x3, stride 1, padding 1: the output is as large as the input.
  return 2.0 * batch * l.out * l.size * l.size * l.in * 3 * 3;
}

void set_gflops(benchmark::State& state, double flops_per_iteration) {
  state.counters["GFLOP"] = benchmark::Counter(flops_per_iteration * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

struct ConvInputs {
  nn::Tensor x, w, b;
};

ConvInputs make_conv_inputs(const ConvLayer& l, int64_t batch, bool requires_grad) {
  nn::Generator gen(1234);
  ConvInputs in{nn::randn({batch, l.in, l.size, l.size}, gen), nn::randn({l.out, l.in, 3, 3}, gen),
                nn::randn({l.out}, gen)};
  if (requires_grad) {
    in.x.requires_grad_();
    in.w.requires_grad_();
    in.b.requires_grad_();
  }
  return in;
}

nn::Conv2dOptions vgg_conv_options() {
  nn::Conv2dOptions o;
  o.padding = {1, 1};
  return o;
}

void BM_Conv2dForward(benchmark::State& state) {
  const ConvLayer& l = kVgg16Convs.at(static_cast<size_t>(state.range(0)));
  const int64_t batch = state.range(1);
  ConvInputs in = make_conv_inputs(l, batch, false);
  const nn::Conv2dOptions options = vgg_conv_options();
  for (auto _ : state) {
    nn::Tensor y = nn::conv2d(in.x, in.w, in.b, options);
    benchmark::DoNotOptimize(y.raw_data());
  }
  set_gflops(state, conv_flops(l, batch));
}

void BM_Conv2dInference(benchmark::State& state) {
  const ConvLayer& l = kVgg16Convs.at(static_cast<size_t>(state.range(0)));
  const int64_t batch = state.range(1);
  ConvInputs in = make_conv_inputs(l, batch, false);
  nn::Conv2dOptions options = vgg_conv_options();
  options.relu = true;
  const bool was_cached = nn::conv_weight_cache();
  nn::set_conv_weight_cache(true);
  for (auto _ : state) {
    nn::Tensor y = nn::conv2d(in.x, in.w, in.b, options);
    benchmark::DoNotOptimize(y.raw_data());
  }
  nn::set_conv_weight_cache(was_cached);
  set_gflops(state, conv_flops(l, batch));
}

void BM_Conv2dForwardBackward(benchmark::State& state) {
  const ConvLayer& l = kVgg16Convs.at(static_cast<size_t>(state.range(0)));
  const int64_t batch = state.range(1);
  ConvInputs in = make_conv_inputs(l, batch, true);
  const nn::Conv2dOptions options = vgg_conv_options();
  nn::Generator gen(99);
  const nn::Tensor dy = nn::randn({batch, l.out, l.size, l.size}, gen);
  for (auto _ : state) {
    nn::Tensor y = nn::conv2d(in.x, in.w, in.b, options);
    y.backward(dy);
    benchmark::DoNotOptimize(in.w.grad().raw_data());
    // Fresh gradients each iteration, as after an optimizer's zero_grad.
    in.x.set_grad(nn::Tensor());
    in.w.set_grad(nn::Tensor());
    in.b.set_grad(nn::Tensor());
  }
  set_gflops(state, 3.0 * conv_flops(l, batch));
}

void BM_Matmul(benchmark::State& state) {
  const int64_t n = state.range(0);
  nn::Generator gen(7);
  const nn::Tensor a = nn::randn({n, n}, gen), b = nn::randn({n, n}, gen);
  for (auto _ : state) {
    nn::Tensor c = nn::matmul(a, b);
    benchmark::DoNotOptimize(c.raw_data());
  }
  set_gflops(state, 2.0 * n * n * n);
}

void BM_Linear(benchmark::State& state) {
  const int64_t batch = state.range(0), in = state.range(1), out = state.range(2);
  nn::Generator gen(8);
  const nn::Tensor x = nn::randn({batch, in}, gen), w = nn::randn({out, in}, gen), b = nn::randn({out}, gen);
  for (auto _ : state) {
    nn::Tensor y = nn::linear(x, w, b);
    benchmark::DoNotOptimize(y.raw_data());
  }
  set_gflops(state, 2.0 * batch * in * out);
}

void conv_args(benchmark::internal::Benchmark* bm) {
  bm->ArgNames({"layer", "batch"});
  for (int64_t batch : {1, 8})
    for (int64_t layer = 0; layer < static_cast<int64_t>(kVgg16Convs.size()); ++layer) bm->Args({layer, batch});
}

BENCHMARK(BM_Conv2dForward)->Apply(conv_args)->UseRealTime()->MinTime(kMinTime)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Conv2dInference)->Apply(conv_args)->UseRealTime()->MinTime(kMinTime)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Conv2dForwardBackward)
    ->Apply(conv_args)
    ->UseRealTime()
    ->MinTime(kMinTime)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Matmul)
    ->ArgName("n")
    ->Arg(256)
    ->Arg(512)
    ->Arg(1024)
    ->Arg(2048)
    ->UseRealTime()
    ->MinTime(kMinTime)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Linear)
    ->ArgNames({"batch", "in", "out"})
    ->Args({8, 25088, 4096})
    ->Args({8, 4096, 4096})
    ->Args({8, 4096, 1000})
    ->UseRealTime()
    ->MinTime(kMinTime)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
