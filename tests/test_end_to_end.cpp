// End to end: models built from the modules learn synthetic problems to > 95% accuracy.
#include <gtest/gtest.h>
#include <nn/layers.h>
#include <nn/nn.h>
#include <nn/optim.h>

#include <cmath>
#include <memory>
#include <random>

namespace {

using nn::Tensor;

double accuracy(const Tensor& logits, const Tensor& labels) {
  std::vector<int64_t> pred = nn::argmax(logits, 1).to_vector<int64_t>();
  std::vector<int64_t> y = labels.to_vector<int64_t>();
  int64_t correct = 0;
  for (size_t i = 0; i < y.size(); ++i) correct += pred[i] == y[i];
  return static_cast<double>(correct) / static_cast<double>(y.size());
}

// Two concentric rings in 2-D with noise: not linearly separable.
void make_rings(int64_t n, uint64_t seed, Tensor& x, Tensor& y) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> angle(0, 2 * M_PI);
  std::normal_distribution<double> noise(0, 0.08);
  std::vector<float> xs;
  std::vector<int64_t> ys;
  for (int64_t i = 0; i < n; ++i) {
    int64_t label = i % 2;
    double r = label ? 1.0 : 0.45, a = angle(rng);
    xs.push_back(static_cast<float>(r * std::cos(a) + noise(rng)));
    xs.push_back(static_cast<float>(r * std::sin(a) + noise(rng)));
    ys.push_back(label);
  }
  x = nn::from_vector(xs, {n, 2});
  y = nn::from_vector(ys, {n});
}

TEST(EndToEnd, MlpLearnsConcentricRings) {
  nn::manual_seed(1);
  Tensor x, y, xt, yt;
  make_rings(512, 1, x, y);
  make_rings(512, 2, xt, yt);
  auto model = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(2, 32), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(32, 32),
      std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(32, 2)});
  nn::optim::Adam opt(model->parameters(), 0.02);
  for (int step = 0; step < 300; ++step) {
    opt.zero_grad();
    Tensor loss = nn::cross_entropy((*model)(x), y);
    loss.backward();
    opt.step();
  }
  nn::NoGradGuard ng;
  EXPECT_GT(accuracy((*model)(xt), yt), 0.95);
}

// 12x12 images with one bright 3x3 blob in one of four quadrants, on noise: label = quadrant.
void make_blobs(int64_t n, uint64_t seed, Tensor& x, Tensor& y) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.3f);
  std::uniform_int_distribution<int> pos(0, 3);
  std::vector<float> xs(static_cast<size_t>(n * 144));
  std::vector<int64_t> ys;
  for (int64_t i = 0; i < n; ++i) {
    float* img = xs.data() + i * 144;
    for (int k = 0; k < 144; ++k) img[k] = noise(rng);
    int64_t label = i % 4;
    int oy = (label / 2) * 6 + pos(rng), ox = (label % 2) * 6 + pos(rng);
    for (int dy = 0; dy < 3; ++dy)
      for (int dx = 0; dx < 3; ++dx) img[(oy + dy) * 12 + ox + dx] += 1.5f;
    ys.push_back(label);
  }
  x = nn::from_vector(xs, {n, 1, 12, 12});
  y = nn::from_vector(ys, {n});
}

TEST(EndToEnd, CnnLearnsWhereTheBlobIs) {
  nn::manual_seed(2);
  Tensor x, y, xt, yt;
  make_blobs(256, 3, x, y);
  make_blobs(256, 4, xt, yt);
  auto model = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Conv2d>(1, 8, 3, 1, 1), std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2),
      std::make_shared<nn::Conv2d>(8, 16, 3, 1, 1), std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2),
      std::make_shared<nn::Flatten>(), std::make_shared<nn::Dropout>(0.2, 7), std::make_shared<nn::Linear>(16 * 9, 4)});
  nn::optim::Adam opt(model->parameters(), 0.01);
  model->train();
  for (int epoch = 0; epoch < 15; ++epoch) {
    for (int64_t b = 0; b < 256; b += 32) {
      opt.zero_grad();
      Tensor loss = nn::cross_entropy((*model)(x.narrow(0, b, 32)), y.narrow(0, b, 32));
      loss.backward();
      opt.step();
    }
  }
  model->eval();
  nn::NoGradGuard ng;
  EXPECT_GT(accuracy((*model)(xt), yt), 0.95);
}

}  // namespace
