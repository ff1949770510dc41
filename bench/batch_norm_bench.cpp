// batch-norm-bench: nn::batch_norm on the CPU over VGG-like activations, best of several runs, as
// JSON for bench/batch_norm_vs_pytorch.py (which times PyTorch on the same shapes in the same run).
//
//   batch-norm-bench [--threads T] [--repeat R]
//
// Shapes (N, C, H, W): a batch of 32 through the channels and map sizes of the scratch VGG16-BN at
// 128x128 input and width 1/4 (16 to 128 channels, 128 to 8 pixels). Per shape three timings in
// milliseconds: train_forward (batch statistics and the running-statistics update), train_step
// (that forward plus the backward of sum(y * g) into x, weight and bias) and eval_forward.
#include <nn/nn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

double best_ms(int repeat, const std::function<void()>& f) {
  f();  // warm-up
  double best = 1e30;
  for (int r = 0; r < repeat; ++r) {
    auto t = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0, repeat = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--threads") threads = std::atoi(argv[i + 1]);
    else if (a == "--repeat") repeat = std::atoi(argv[i + 1]);
  }
  if (threads > 0) nn::set_num_threads(threads);
  const std::vector<std::vector<int64_t>> shapes = {
      {32, 16, 128, 128}, {32, 32, 64, 64}, {32, 64, 32, 32}, {32, 128, 16, 16}, {32, 128, 8, 8}};
  nn::Generator gen(1);
  std::printf("{\"threads\": %d, \"repeat\": %d, \"cases\": [\n", nn::get_num_threads(), repeat);
  for (size_t k = 0; k < shapes.size(); ++k) {
    const auto& s = shapes[k];
    nn::Tensor x = nn::randn(s, gen);
    nn::Tensor g = nn::randn(s, gen);
    nn::BatchNorm2d bn(s[1]);
    bn.train();
    const double fwd = best_ms(repeat, [&] {
      nn::NoGradGuard ng;
      bn(x);
    });
    nn::Tensor xg = x.clone().requires_grad_(true);
    const double step = best_ms(repeat, [&] {
      bn.zero_grad();
      xg.set_grad(nn::Tensor());
      nn::sum(nn::mul(bn(xg), g)).backward();
    });
    bn.eval();
    const double eval = best_ms(repeat, [&] {
      nn::NoGradGuard ng;
      bn(x);
    });
    std::printf("  {\"shape\": [%lld, %lld, %lld, %lld], \"train_forward\": %.4f, \"train_step\": %.4f, \"eval_forward\": %.4f}%s\n",
                static_cast<long long>(s[0]), static_cast<long long>(s[1]), static_cast<long long>(s[2]),
                static_cast<long long>(s[3]), fwd, step, eval, k + 1 < shapes.size() ? "," : "");
  }
  std::printf("]}\n");
  return 0;
}
