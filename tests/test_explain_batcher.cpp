// pneumonia-serve's request batching (examples/pneumonia/common/explain_batcher.h): requests from
// many threads, batched by one or two batching threads (each with its own copy of the model), get
// the answer the model gives each input alone. Suite ExplainBatcher.
#include <gtest/gtest.h>

#ifdef NN_HAVE_PNEUMONIA_COMMON

#include <nn/error.h>
#include <nn/generator.h>
#include <nn/tensor.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "explain_batcher.h"
#include "pneumonia_model.h"

namespace {

namespace fs = std::filesystem;

// A small two-member model (VGG11-BN, width 1/16, 32 px) with random weights, saved and loaded so
// that copies can be made as the server makes them.
std::string small_model_file(const fs::path& dir) {
  pneumonia::ModelSpec spec;
  spec.depth = 11;
  spec.batch_norm = true;
  spec.width = 1.0 / 16;
  spec.input_size = 32;
  spec.members = 2;
  nn::Generator gen(5);
  auto a = pneumonia::build_model(spec, gen), b = pneumonia::build_model(spec, gen);
  a->eval();
  b->eval();
  const std::string path = (dir / "model.safetensors").string();
  pneumonia::save_model(path, {a.get(), b.get()}, spec, pneumonia::OodGate{});
  return path;
}

void expect_same_cam(const nn::explain::GradCam& got, const nn::explain::GradCam& want, size_t i) {
  EXPECT_NEAR(got.logit, want.logit, 1e-4 * std::max(1.0, std::abs(want.logit))) << "input " << i;
  const std::vector<float> g = got.heatmap.contiguous().to_vector<float>(), w = want.heatmap.contiguous().to_vector<float>();
  ASSERT_EQ(g.size(), w.size()) << "input " << i;
  for (size_t j = 0; j < g.size(); ++j) ASSERT_NEAR(g[j], w[j], 1e-4f) << "input " << i << ", cell " << j;
}

TEST(ExplainBatcher, ManyClientsGetTheirOwnAnswerWithOneOrTwoBatchingThreads) {
  const fs::path dir = fs::temp_directory_path() / ("nn_explain_batcher_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = small_model_file(dir);
  pneumonia::PneumoniaModel reference = pneumonia::load_model(path);
  nn::Generator gen(9);
  std::vector<nn::Tensor> inputs;
  std::vector<nn::explain::GradCam> want;
  for (int i = 0; i < 12; ++i) {
    inputs.push_back(nn::randn({1, 3, 32, 32}, gen));
    want.push_back(reference.explain_batch(inputs.back()).front());
  }
  for (int batchers : {1, 2}) {
    SCOPED_TRACE(std::to_string(batchers) + " batching threads");
    std::vector<std::unique_ptr<pneumonia::PneumoniaModel>> copies;
    std::vector<pneumonia::PneumoniaModel*> models;
    for (int b = 0; b < batchers; ++b) {
      copies.push_back(std::make_unique<pneumonia::PneumoniaModel>(pneumonia::load_model(path)));
      models.push_back(copies.back().get());
    }
    pneumonia::ExplainBatcher batcher(models, 4, 2);
    std::vector<pneumonia::Explained> got(inputs.size());
    std::vector<std::thread> clients;
    for (size_t i = 0; i < inputs.size(); ++i) clients.emplace_back([&, i] { got[i] = batcher.explain(inputs[i]); });
    for (std::thread& t : clients) t.join();
    for (size_t i = 0; i < inputs.size(); ++i) expect_same_cam(got[i].cam, want[i], i);
    EXPECT_EQ(batcher.images(), 12);
    EXPECT_GE(batcher.batches(), 3);  // at most 4 per batch
    EXPECT_LE(batcher.batches(), 12);
  }
  fs::remove_all(dir);
}

TEST(ExplainBatcher, RefusesNoModelAndABadBatchSize) {
  std::vector<pneumonia::PneumoniaModel*> none;
  EXPECT_THROW(pneumonia::ExplainBatcher(none, 4, 1), nn::Error);
  pneumonia::PneumoniaModel m;
  EXPECT_THROW(pneumonia::ExplainBatcher({&m}, 0, 1), nn::Error);
  EXPECT_THROW(pneumonia::ExplainBatcher({&m}, 4, -1), nn::Error);
  EXPECT_THROW(pneumonia::ExplainBatcher({nullptr}, 4, 1), nn::Error);
}

}  // namespace

#endif  // NN_HAVE_PNEUMONIA_COMMON
