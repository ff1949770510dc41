// Trains a 2-layer MLP on XOR-like data (the sign of x*y) with the installed nn library and
// prints its final loss and accuracy. Exit code 1 if it did not learn.
#include <nn/layers.h>
#include <nn/nn.h>
#include <nn/optim.h>

#include <cstdio>
#include <memory>
#include <vector>

int main() {
  nn::manual_seed(0);
  nn::Generator gen(42);
  nn::Tensor x = nn::uniform({512, 2}, -1, 1, gen);
  std::vector<float> xs = x.to_vector<float>();
  std::vector<int64_t> labels;
  for (size_t i = 0; i < xs.size(); i += 2) labels.push_back(xs[i] * xs[i + 1] > 0 ? 1 : 0);
  nn::Tensor label = nn::from_vector(labels, {512});
  auto model = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(2, 16), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(16, 2)});
  nn::optim::Adam opt(model->parameters(), 0.03);
  double loss_value = 0;
  for (int step = 0; step < 400; ++step) {
    opt.zero_grad();
    nn::Tensor loss = nn::cross_entropy((*model)(x), label);
    loss.backward();
    opt.step();
    loss_value = loss.item<double>();
  }
  nn::NoGradGuard no_grad;
  std::vector<int64_t> pred = nn::argmax((*model)(x), 1).to_vector<int64_t>();
  std::vector<int64_t> truth = label.to_vector<int64_t>();
  int correct = 0;
  for (size_t i = 0; i < truth.size(); ++i) correct += pred[i] == truth[i];
  double accuracy = static_cast<double>(correct) / truth.size();
  std::printf("final loss %.4f, accuracy %.2f%%\n", loss_value, 100 * accuracy);
  return accuracy > 0.9 ? 0 : 1;
}
