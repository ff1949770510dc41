// train-synthetic: trains a small CNN on a synthetic image task (which way does the bar in a noisy
// 16x16 image point: horizontal, vertical, diagonal or anti-diagonal), evaluates it on a held-out
// set, saves it as safetensors, reloads it and checks the reloaded model answers the same.
// Exit codes: 0 success, 1 failure (including --min-accuracy not reached), 2 usage error.
#include <CLI/CLI.hpp>
#include <nn/io/safetensors.h>
#include <nn/layers.h>
#include <nn/nn.h>
#include <nn/optim.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <random>

namespace {

constexpr int64_t kSize = 16;

// n images (n, 1, 16, 16) and labels (n): a 9-pixel bar through a random point, on noise.
void make_bars(int64_t n, uint64_t seed, nn::Tensor& x, nn::Tensor& y) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.35f);
  std::uniform_int_distribution<int> centre(5, 10);
  const int dirs[4][2] = {{0, 1}, {1, 0}, {1, 1}, {1, -1}};
  std::vector<float> pixels(static_cast<size_t>(n * kSize * kSize));
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    float* img = pixels.data() + i * kSize * kSize;
    for (int64_t k = 0; k < kSize * kSize; ++k) img[k] = noise(rng);
    const int64_t label = static_cast<int64_t>(rng() % 4);
    const int cy = centre(rng), cx = centre(rng);
    for (int t = -4; t <= 4; ++t) img[(cy + t * dirs[label][0]) * kSize + cx + t * dirs[label][1]] += 1.0f;
    labels[static_cast<size_t>(i)] = label;
  }
  x = nn::from_vector(pixels, {n, 1, kSize, kSize});
  y = nn::from_vector(labels, {n});
}

std::shared_ptr<nn::Sequential> make_model() {
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Conv2d>(1, 8, 3, 1, 1), std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2),
      std::make_shared<nn::Conv2d>(8, 16, 3, 1, 1), std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2),
      std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(16 * 4 * 4, 32), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Dropout>(0.25), std::make_shared<nn::Linear>(32, 4)});
}

// Loss and accuracy of the model on (x, y), evaluated in batches without gradients.
std::pair<double, double> evaluate(nn::Module& model, const nn::Tensor& x, const nn::Tensor& y) {
  nn::NoGradGuard ng;
  model.eval();
  nn::Tensor logits = model(x);
  double loss = nn::cross_entropy(logits, y).item<double>();
  std::vector<int64_t> pred = nn::argmax(logits, 1).to_vector<int64_t>(), truth = y.to_vector<int64_t>();
  int64_t correct = 0;
  for (size_t i = 0; i < truth.size(); ++i) correct += pred[i] == truth[i];
  return {loss, static_cast<double>(correct) / static_cast<double>(truth.size())};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train a small CNN on synthetic bar-orientation images (a demo of the nn library)"};
  int epochs = 8, batch = 32, threads = 0;
  int64_t train_size = 2048, test_size = 512;
  uint64_t seed = 1;
  double lr = 3e-3, min_accuracy = 0.0;
  std::string out = "synthetic_cnn.safetensors";
  bool json = false;
  app.add_option("--epochs", epochs, "passes over the training set")->check(CLI::Range(1, 1000));
  app.add_option("--batch-size", batch, "images per step")->check(CLI::Range(1, 4096));
  app.add_option("--train-size", train_size, "training images")->check(CLI::Range(int64_t{16}, int64_t{1} << 20));
  app.add_option("--test-size", test_size, "held-out images")->check(CLI::Range(int64_t{16}, int64_t{1} << 20));
  app.add_option("--lr", lr, "Adam learning rate")->check(CLI::PositiveNumber);
  app.add_option("--seed", seed, "seed for data, initialisation and dropout");
  app.add_option("--threads", threads, "CPU threads (default: NN_NUM_THREADS or all)")->check(CLI::Range(0, 1024));
  app.add_option("--out", out, "where to save the trained model (safetensors)");
  app.add_option("--min-accuracy", min_accuracy, "exit 1 unless the test accuracy reaches this")->check(CLI::Range(0.0, 1.0));
  app.add_flag("--json", json, "print one JSON object with the results instead of text");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  try {
    if (threads > 0) nn::set_num_threads(threads);
    nn::manual_seed(seed);
    nn::Tensor x, y, xt, yt;
    make_bars(train_size, seed, x, y);
    make_bars(test_size, seed + 1000, xt, yt);
    auto model = make_model();
    nn::optim::Adam opt(model->parameters(), lr);
    nn::optim::CosineAnnealingLR schedule(opt, epochs);
    if (!json) std::cout << model->to_string() << "\n" << model->num_parameters() << " parameters\n";

    auto start = std::chrono::steady_clock::now();
    std::mt19937_64 shuffle_rng(seed);
    std::vector<int64_t> order(static_cast<size_t>(train_size));
    for (int64_t i = 0; i < train_size; ++i) order[static_cast<size_t>(i)] = i;
    for (int epoch = 1; epoch <= epochs; ++epoch) {
      model->train();
      std::shuffle(order.begin(), order.end(), shuffle_rng);
      nn::Tensor perm = nn::from_vector(order, {train_size});
      double loss_sum = 0;
      int64_t steps = 0;
      for (int64_t b = 0; b + batch <= train_size; b += batch) {
        // Gather the shuffled batch (index copies; the library has no gather op yet).
        std::vector<nn::Tensor> xs, ys;
        for (int64_t k = b; k < b + batch; ++k) {
          int64_t i = order[static_cast<size_t>(k)];
          xs.push_back(x.narrow(0, i, 1));
          ys.push_back(y.narrow(0, i, 1));
        }
        opt.zero_grad();
        nn::Tensor loss = nn::cross_entropy((*model)(nn::concat(xs, 0)), nn::concat(ys, 0));
        loss.backward();
        opt.step();
        loss_sum += loss.item<double>();
        ++steps;
      }
      schedule.step();
      auto [test_loss, test_acc] = evaluate(*model, xt, yt);
      if (!json)
        std::printf("epoch %2d  train loss %.4f  test loss %.4f  test accuracy %.2f%%  lr %.5f\n", epoch,
                    loss_sum / std::max<int64_t>(steps, 1), test_loss, 100 * test_acc, schedule.last_lr());
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    auto [test_loss, test_acc] = evaluate(*model, xt, yt);

    // Save, reload into a fresh model, and check the answers are identical.
    nn::io::save_safetensors(out, model->state_dict(), {{"model", "synthetic-bars-cnn"}});
    auto reloaded = make_model();
    nn::io::SafetensorsFile file = nn::io::load_safetensors(out);
    reloaded->load_state_dict(file.tensors);
    auto [reloaded_loss, reloaded_acc] = evaluate(*reloaded, xt, yt);
    const bool same = reloaded_loss == test_loss && reloaded_acc == test_acc;

    if (json) {
      std::printf("{\"test_accuracy\": %.6f, \"test_loss\": %.6f, \"epochs\": %d, \"seconds\": %.3f, "
                  "\"model\": \"%s\", \"reload_matches\": %s}\n",
                  test_acc, test_loss, epochs, seconds, out.c_str(), same ? "true" : "false");
    } else {
      std::printf("test accuracy %.2f%% after %d epochs in %.1f s; saved %s (reloaded model agrees: %s)\n",
                  100 * test_acc, epochs, seconds, out.c_str(), same ? "yes" : "NO");
    }
    if (!same) {
      std::cerr << "error: the reloaded model does not reproduce the trained model's results\n";
      return 1;
    }
    if (test_acc < min_accuracy) {
      std::cerr << "error: test accuracy " << test_acc << " is below --min-accuracy " << min_accuracy << "\n";
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
