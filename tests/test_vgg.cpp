// nn::models::VGG (models/src/vgg.cpp): the configuration table, torchvision's names and shapes, the options (no top, width,
// input size, head replacement), inferring the architecture back from a state dict, and a small
// VGG that learns. PyTorch comparisons of the full VGG16 are in test_vgg_golden.cpp.
#include <gtest/gtest.h>
#include <nn/io/safetensors.h>
#include <nn/models/vgg.h>
#include <nn/nn.h>
#include <nn/optim.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>

namespace {

using nn::Tensor;
using nn::models::VGG;
using nn::models::VGGOptions;

float max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  std::vector<float> x = a.contiguous().to_vector<float>(), y = b.contiguous().to_vector<float>();
  float worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::fabs(x[i] - y[i]));
  return worst;
}

VGGOptions small(int depth = 11, int64_t classes = 3) {
  VGGOptions o;
  o.depth = depth;
  o.num_classes = classes;
  o.width_multiplier = 1.0 / 16;  // 4, 8, 16, 32, 32 channels
  o.input_size = 32;
  o.hidden_features = 16;
  return o;
}

TEST(VGG, ConfigTableHasThePapersConvolutionsAndTorchvisionsIndices) {
  EXPECT_EQ(nn::models::vgg_conv_indices(11), (std::vector<int64_t>{0, 3, 6, 8, 11, 13, 16, 18}));
  EXPECT_EQ(nn::models::vgg_conv_indices(16),
            (std::vector<int64_t>{0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28}));
  EXPECT_EQ(nn::models::vgg_conv_indices(13).size(), 10u);
  EXPECT_EQ(nn::models::vgg_conv_indices(19).size(), 16u);
  EXPECT_EQ(nn::models::vgg_conv_indices(19).back(), 34);
  EXPECT_EQ(nn::models::vgg_depth_for_conv_count(13), 16);
  EXPECT_EQ(nn::models::vgg_depth_for_conv_count(16), 19);
  EXPECT_EQ(nn::models::vgg_depth_for_conv_count(12), 0);
  EXPECT_THROW(nn::models::vgg_config(17), nn::Error);
}

TEST(VGG, Vgg16HasTorchvisionsParameterNamesShapesAndCount) {
  nn::Generator gen(1);
  VGG model(VGGOptions{}, gen);
  // torchvision.models.vgg16(): 138,357,544 parameters in 32 tensors.
  EXPECT_EQ(model.num_parameters(), 138357544);
  nn::StateDict state = model.state_dict();
  ASSERT_EQ(state.size(), 32u);
  EXPECT_EQ(state[0].first, "features.0.weight");
  EXPECT_EQ(state[0].second.shape(), (nn::Shape{64, 3, 3, 3}));
  EXPECT_EQ(state[25].first, "features.28.bias");
  EXPECT_EQ(state[26].first, "classifier.0.weight");
  EXPECT_EQ(state[26].second.shape(), (nn::Shape{4096, 25088}));
  EXPECT_EQ(state[30].first, "classifier.6.weight");
  EXPECT_EQ(state[30].second.shape(), (nn::Shape{1000, 4096}));
  EXPECT_EQ(model.flat_features(), 25088);
  // The printed tree names torchvision's modules.
  std::string tree = model.to_string();
  EXPECT_NE(tree.find("(avgpool): AdaptiveAvgPool2d"), std::string::npos) << tree;
  EXPECT_NE(tree.find("(30): MaxPool2d"), std::string::npos) << tree;
}

TEST(VGG, SmallVariantForwardShapesAndNoTop) {
  nn::Generator gen(2);
  VGG model(small(), gen);
  Tensor x = nn::randn({2, 3, 32, 32}, gen);
  EXPECT_EQ(model.forward_features(x).shape(), (nn::Shape{2, 32, 1, 1}));
  EXPECT_EQ(model(x).shape(), (nn::Shape{2, 3}));
  // Larger inputs work through the adaptive pool.
  EXPECT_EQ(model(nn::randn({1, 3, 64, 48}, gen)).shape(), (nn::Shape{1, 3}));

  VGGOptions no_top = small();
  no_top.include_top = false;
  VGG features_only(no_top, gen);
  EXPECT_FALSE(features_only.has_top());
  for (const auto& [name, t] : features_only.state_dict()) EXPECT_EQ(name.rfind("features.", 0), 0u) << name;
  EXPECT_EQ(features_only(x).shape(), (nn::Shape{2, 32, 1, 1}));
  EXPECT_THROW(features_only.forward_head(features_only(x)), nn::Error);
  EXPECT_THROW(model(nn::randn({1, 3, 16, 16}, gen)), nn::Error);   // too small for five pools
  EXPECT_THROW(model(nn::randn({1, 1, 32, 32}, gen)), nn::Error);   // wrong channels
}

TEST(VGG, HeadReplacementKeepsTheFeatures) {
  nn::Generator gen(3);
  VGG model(small(), gen);
  Tensor x = nn::randn({2, 3, 32, 32}, gen);
  Tensor features = model.forward_features(x);
  auto last = model.replace_last_layer(2, gen);
  EXPECT_EQ(last->out_features(), 2);
  EXPECT_EQ(model(x).shape(), (nn::Shape{2, 2}));
  EXPECT_EQ(model.state_dict().back().second.shape(), (nn::Shape{2}));  // classifier.6.bias
  EXPECT_EQ(max_abs_diff(model.forward_features(x), features), 0.0f);

  // A whole new head on a model built without the top (the Keras tutorial's shape).
  VGGOptions no_top = small();
  no_top.include_top = false;
  VGG base(no_top, gen);
  base.set_requires_grad(false);
  auto head = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(base.flat_features(), 8, true, gen), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Linear>(8, 1, true, gen)});
  base.set_classifier(head);
  EXPECT_EQ(base(x).shape(), (nn::Shape{2, 1}));
  EXPECT_EQ(base.num_parameters(/*trainable_only=*/true), head->num_parameters());
  EXPECT_EQ(base.state_dict().back().first, "classifier.2.bias");
}

TEST(VGG, InferOptionsAndLoadRoundTripThroughSafetensors) {
  nn::Generator gen(4);
  for (int depth : {11, 13, 16, 19}) {
    VGGOptions o = small(depth, 5);
    VGG model(o, gen);
    model.eval();
    VGGOptions inferred = nn::models::infer_vgg_options(model.state_dict());
    EXPECT_EQ(inferred.depth, depth);
    EXPECT_EQ(inferred.num_classes, 5);
    EXPECT_EQ(inferred.hidden_features, 16);
    EXPECT_EQ(inferred.input_size, 32);
    EXPECT_DOUBLE_EQ(inferred.width_multiplier, 1.0 / 16);

    const std::string path = (std::filesystem::temp_directory_path() /
                              ("nn_vgg_" + std::to_string(::getpid()) + ".safetensors")).string();
    nn::io::save_safetensors(path, model.state_dict(), {{"preprocessing", "caffe"}});
    nn::models::LoadedVGG loaded = nn::models::load_vgg(path);
    std::filesystem::remove(path);
    EXPECT_EQ(loaded.metadata["preprocessing"], "caffe");
    EXPECT_FALSE(loaded.model->is_training());
    Tensor x = nn::randn({2, 3, 32, 32}, gen);
    EXPECT_LT(max_abs_diff(loaded.model->forward(x), model.forward(x)), 1e-6f) << "depth " << depth;
  }
}

TEST(VGG, LoadRefusesNonFiniteWeightsNamingTheTensor) {
  nn::Generator gen(6);
  VGG model(small(11, 2), gen);
  {
    nn::NoGradGuard g;
    model.features()->at<nn::Conv2d>(3)->weight().data<float>()[7] = std::numeric_limits<float>::quiet_NaN();
  }
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("nn_vgg_nan_" + std::to_string(::getpid()) + ".safetensors")).string();
  nn::io::save_safetensors(path, model.state_dict());
  try {
    nn::models::load_vgg(path);
    ADD_FAILURE() << "a NaN weight was loaded";
  } catch (const nn::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("features.3.weight"), std::string::npos) << m;
    EXPECT_NE(m.find(path), std::string::npos) << m;
  }
  std::filesystem::remove(path);
}

TEST(VGG, InferOptionsRefusesWhatIsNotAVgg) {
  nn::Generator gen(5);
  VGG model(small(), gen);
  nn::StateDict state = model.state_dict();
  nn::StateDict missing_conv(state.begin() + 2, state.end());  // drop features.0.*
  EXPECT_THROW(nn::models::infer_vgg_options(missing_conv), nn::Error);
  nn::StateDict renamed = state;
  renamed[0].first = "features.1.weight";
  EXPECT_THROW(nn::models::infer_vgg_options(renamed), nn::Error);
  nn::StateDict bad_key = state;
  bad_key[0].first = "features.x.weight";
  EXPECT_THROW(nn::models::infer_vgg_options(bad_key), nn::Error);
  try {
    nn::models::infer_vgg_options({{"fc.weight", nn::zeros({2, 2})}});
    FAIL() << "no error";
  } catch (const nn::Error& e) {
    EXPECT_NE(std::string(e.what()).find("8/10/13/16"), std::string::npos) << e.what();
  }
}

TEST(VGG, SmallVgg11LearnsToSeparateTwoPatterns) {
  // Horizontal versus vertical stripes with noise; a few Adam steps must fit the batch.
  nn::Generator gen(6);
  VGGOptions o = small(11, 2);
  o.dropout = 0.0;
  VGG model(o, gen);
  const int64_t n = 16;
  std::vector<float> pixels(n * 3 * 32 * 32);
  std::vector<int64_t> labels(n);
  Tensor noise = nn::randn({n * 3 * 32 * 32}, gen);
  std::vector<float> nv = noise.to_vector<float>();
  for (int64_t i = 0; i < n; ++i) {
    labels[i] = i % 2;
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < 32; ++y)
        for (int64_t x = 0; x < 32; ++x) {
          int64_t k = ((i * 3 + c) * 32 + y) * 32 + x;
          float stripe = ((labels[i] ? x : y) / 4) % 2 ? 1.0f : -1.0f;
          pixels[k] = stripe + 0.3f * nv[k];
        }
  }
  Tensor x = nn::from_vector(pixels, {n, 3, 32, 32}), y = nn::from_vector(labels, {n});
  nn::optim::Adam opt(model.parameters(), 3e-3);
  model.train();
  float first = 0, last = 0;
  for (int step = 0; step < 40; ++step) {
    opt.zero_grad();
    Tensor loss = nn::cross_entropy(model(x), y);
    loss.backward();
    opt.step();
    if (step == 0) first = loss.item<float>();
    last = loss.item<float>();
  }
  EXPECT_LT(last, 0.25f * first) << "first loss " << first << ", last " << last;
}

}  // namespace
