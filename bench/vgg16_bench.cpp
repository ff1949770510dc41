// vgg16-bench: the whole-model benchmark (CPU and CUDA), on random data.
//
//   vgg16-bench [--batch 8] [--image-size 224] [--width-mult 1] [--train] [--head pneumonia|imagenet]
//               [--device cpu|cuda] [--threads N] [--warmup 1] [--runs 3] [--json] [--no-weight-cache]
//               [--weights VGG16.safetensors] [--features IN.safetensors OUT.safetensors]
//
// Default: VGG16's feature extractor (torchvision's `features`: 13 conv + ReLU, 5 max-pools), eval
// mode, no autograd, forward on a (batch, 3, S, S) tensor. --train: one training step of the
// pneumonia app's scratch model instead (VGG16 features at the width multiplier, avgpool to S/32,
// classifier Linear-ReLU-Dropout-Linear-ReLU-Dropout-Linear(1) with 256 hidden units, BCE with
// logits, backward, Adam) -- the step pneumonia-train runs, without data loading. --head imagenet:
// the full VGG16 instead (classifier 4096-4096-1000 with dropout, cross-entropy, SGD with momentum
// 0.9), the usual GPU training benchmark. --device cuda runs on the GPU and waits for the device at
// the end of each run, so a run's time covers all of its kernels.
// After --warmup untimed runs, --runs timed runs; the best is reported (the least disturbed by
// other jobs). The forward keeps each convolution's Winograd weight transform from the warm-up run
// (nn::set_conv_weight_cache), as an inference engine transforms its weights once at load;
// --no-weight-cache transforms them at every run. --weights: a VGG16 file's `features` tensors (e.g.
// from nn-convert) instead of random ones; --features IN OUT: write the features of IN's tensor
// "input" to OUT and exit (bench/cpu_peers.py checks the other engines against them). FLOPs count 2 per multiply-add of every Conv2d and Linear; a training step counts 3x
// its forward (forward, input gradient, weight gradient), as is usual.
// bench/vgg16_vs_pytorch.py runs this and the same network in PyTorch and prints the ratio.
#include <nn/models/vgg.h>
#include <nn/nn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "vgg_flops.h"

namespace {

struct Args {
  int64_t batch = 8, image_size = 224, threads = 0, warmup = 1, runs = 3;
  double width = 1.0;
  bool train = false, json = false, imagenet_head = false;
  bool weight_cache = true;  // forward: transform the weights once, as an inference engine does at load
  std::string weights;                        // a VGG16 (features) file instead of random weights
  std::string features_in, features_out;     // --features IN OUT: write the features of IN's "input"
  nn::Device device = nn::Device::cpu();
};

[[noreturn]] void usage(const char* error) {
  std::fprintf(stderr,
               "%s%svgg16-bench [--batch 8] [--image-size 224] [--width-mult 1] [--train] [--head pneumonia|imagenet]\n"
               "            [--device cpu|cuda] [--threads N] [--warmup 1] [--runs 3] [--json] [--no-weight-cache]\n"
               "            [--weights VGG16.safetensors] [--features IN.safetensors OUT.safetensors]\n",
               error ? error : "", error ? "\n" : "");
  std::exit(error ? 2 : 0);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("vgg16-bench: " + flag + " needs a value").c_str());
      return argv[++i];
    };
    auto integer = [&](int64_t lo) {
      const std::string v = value();
      char* end = nullptr;
      const long long n = std::strtoll(v.c_str(), &end, 10);
      if (end == v.c_str() || *end || n < lo) usage(("vgg16-bench: bad value for " + flag + ": '" + v + "'").c_str());
      return static_cast<int64_t>(n);
    };
    if (flag == "--batch") a.batch = integer(1);
    else if (flag == "--image-size") a.image_size = integer(32);
    else if (flag == "--threads") a.threads = integer(1);
    else if (flag == "--warmup") a.warmup = integer(0);
    else if (flag == "--runs") a.runs = integer(1);
    else if (flag == "--width-mult") {
      const std::string v = value();
      char* end = nullptr;
      a.width = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end || !(a.width > 0 && a.width <= 4)) usage("vgg16-bench: --width-mult must be in (0, 4]");
    } else if (flag == "--train") a.train = true;
    else if (flag == "--no-weight-cache") a.weight_cache = false;
    else if (flag == "--weights") a.weights = value();
    else if (flag == "--features") {
      a.features_in = value();
      a.features_out = value();
    }
    else if (flag == "--head") {
      const std::string v = value();
      if (v != "pneumonia" && v != "imagenet") usage("vgg16-bench: --head must be pneumonia or imagenet");
      a.imagenet_head = v == "imagenet";
    } else if (flag == "--device") {
      try {
        a.device = nn::Device::parse(value());
      } catch (const nn::Error& e) {
        usage(e.what());
      }
    }
    else if (flag == "--json") a.json = true;
    else if (flag == "--help" || flag == "-h") usage(nullptr);
    else usage(("vgg16-bench: unknown argument '" + flag + "'").c_str());
  }
  if (a.image_size % 32 != 0) usage("vgg16-bench: --image-size must be a multiple of 32");
  return a;
}

template <typename F>
double best_seconds(const Args& a, const F& step) {
  auto run = [&] {
    step();
    if (a.device.is_cuda()) nn::cuda::synchronize(a.device.index);
  };
  for (int64_t i = 0; i < a.warmup; ++i) run();
  double best = 1e300;
  for (int64_t i = 0; i < a.runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int run(const Args& a) {
  if (a.threads > 0) nn::set_num_threads(static_cast<int>(a.threads));
  nn::Generator gen(16);
  nn::models::VGGOptions options;
  options.width_multiplier = a.width;
  options.input_size = a.image_size;
  options.include_top = a.train;
  if (a.train && !a.imagenet_head) {
    options.num_classes = 1;
    options.hidden_features = 256;
  }
  nn::models::VGG model(options, gen);
  if (!a.weights.empty()) {
    // Another engine's weights (bench/cpu_peers.py): the features' tensors, loaded by name.
    const nn::io::SafetensorsFile file = nn::io::load_safetensors(a.weights);
    nn::StateDict features;
    for (const auto& [name, t] : file.tensors)
      if (name.rfind("features.", 0) == 0) features.emplace_back(name, t);
    const nn::LoadStateDictResult r = model.load_state_dict(features, /*strict=*/false);
    NN_CHECK(r.unexpected_keys.empty(), a.weights, ": ", r.unexpected_keys.front(), " is not a VGG16 tensor");
    for (const std::string& missing : r.missing_keys)
      NN_CHECK(missing.rfind("features.", 0) != 0, a.weights, ": ", missing, " is missing");
  }
  model.to(a.device);
  if (!a.features_in.empty()) {
    // The features of a given input, written for another program to compare; no timing.
    model.eval();
    nn::NoGradGuard no_grad;
    const nn::Tensor input = nn::io::load_safetensors(a.features_in).at("input").to(a.device);
    nn::io::save_safetensors(a.features_out, {{"features", model.forward_features(input).cpu()}});
    return 0;
  }
  const nn::Tensor x = nn::randn({a.batch, 3, a.image_size, a.image_size}, gen).to(a.device);
  double seconds = 0, flops = vgg_forward_flops(model) * static_cast<double>(a.batch);
  if (!a.train) {
    model.eval();
    nn::NoGradGuard no_grad;
    nn::set_conv_weight_cache(a.weight_cache && a.device.is_cpu());  // made by the warm-up run
    seconds = best_seconds(a, [&] {
      const nn::Tensor y = model.forward_features(x);
      if (y.numel() == 0) std::abort();
    });
  } else {
    model.train();
    flops *= 3;
    if (a.imagenet_head) {
      std::vector<int64_t> labels(static_cast<size_t>(a.batch));
      for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int64_t>((i * 37) % 1000);
      const nn::Tensor target = nn::from_vector(labels, {a.batch}).to(a.device);
      nn::optim::SgdOptions sgd;
      sgd.momentum = 0.9;
      nn::optim::SGD opt(model.parameters(), 1e-3, sgd);
      seconds = best_seconds(a, [&] {
        opt.zero_grad();
        nn::Tensor loss = nn::cross_entropy(model(x), target);
        loss.backward();
        opt.step();
      });
    } else {
      std::vector<float> labels(static_cast<size_t>(a.batch));
      for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<float>(i % 2);
      const nn::Tensor target = nn::from_vector(labels, {a.batch, 1}).to(a.device);
      nn::optim::Adam opt(model.parameters(), 1e-3);
      seconds = best_seconds(a, [&] {
        opt.zero_grad();
        nn::Tensor loss = nn::binary_cross_entropy_with_logits(model(x), target);
        loss.backward();
        opt.step();
      });
    }
  }
  const double per_image = seconds / static_cast<double>(a.batch);
  const double gflops = flops / seconds * 1e-9;
  if (a.json) {
    std::printf(
        "{\"what\": \"%s\", \"device\": \"%s\", \"batch\": %lld, \"image_size\": %lld, \"width_mult\": %g, \"threads\": %d, "
        "\"seconds\": %.6f, \"seconds_per_image\": %.6f, \"images_per_second\": %.3f, \"gflops\": %.2f, "
        "\"weight_cache\": %s}\n",
        a.train ? (a.imagenet_head ? "train_step_imagenet" : "train_step") : "features_forward",
        a.device.str().c_str(), static_cast<long long>(a.batch),
        static_cast<long long>(a.image_size), a.width, nn::get_num_threads(), seconds, per_image, 1.0 / per_image,
        gflops, nn::conv_weight_cache() ? "true" : "false");
  } else {
    std::printf("VGG16 %s on %s, batch %lld, %lldx%lld, width %g, %d threads: %.4f s per image (%.2f images/s), %.1f GFLOP/s\n",
                a.train ? "training step" : "features forward", a.device.str().c_str(), static_cast<long long>(a.batch),
                static_cast<long long>(a.image_size), static_cast<long long>(a.image_size), a.width,
                nn::get_num_threads(), per_image, 1.0 / per_image, gflops);
  }
  return 0;
}

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  try {
    return run(a);
  } catch (const nn::Error& e) {
    std::fprintf(stderr, "vgg16-bench: %s\n", e.what());
    return 1;
  }
}
