// Named layers (nn/named_layers.h): layer_names, forward_to / forward_from (any split equals the
// whole forward, with the Conv2d + ReLU fusion kept where it is legal), ForwardHooks (observe and
// replace a layer's output, per thread, the fusion undone only where a hook needs the
// convolution's own output); EvalModeGuard (module.h) and GradientsOnlyFor (autograd.h).
#include <gtest/gtest.h>
#include <nn/autograd.h>
#include <nn/layers.h>
#include <nn/models/vgg.h>
#include <nn/named_layers.h>
#include <nn/nn.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

using nn::Tensor;

std::shared_ptr<nn::models::VGG> small_vgg(uint64_t seed) {
  nn::models::VGGOptions o;
  o.depth = 11;
  o.num_classes = 3;
  o.width_multiplier = 1.0 / 16;
  o.input_size = 32;
  o.hidden_features = 8;
  nn::Generator gen(seed);
  auto model = std::make_shared<nn::models::VGG>(o, gen);
  model->eval();
  return model;
}

Tensor random_input(std::vector<int64_t> shape, uint64_t seed) {
  nn::Generator gen(seed);
  return nn::randn(shape, gen);
}

std::vector<float> values(const Tensor& t) { return t.contiguous().to_vector<float>(); }

TEST(NamedLayers, LayerNamesFollowTheForwardOrder) {
  auto model = small_vgg(1);
  const std::vector<std::string> names = nn::layer_names(*model);
  // VGG11: 8 convolutions with their ReLUs and 5 pools (21 modules), avgpool, 7 classifier modules.
  ASSERT_EQ(names.size(), 21u + 1 + 7);
  EXPECT_EQ(names.front(), "features.0");
  EXPECT_EQ(names[20], "features.20");
  EXPECT_EQ(names[21], "avgpool");
  EXPECT_EQ(names[22], "classifier.0");
  EXPECT_EQ(names.back(), "classifier.6");
  nn::Linear single(3, 2);
  EXPECT_TRUE(nn::layer_names(single).empty());  // not a chain: one layer
}

TEST(NamedLayers, EverySplitGivesTheWholeForward) {
  auto model = small_vgg(2);
  nn::NoGradGuard no_grad;
  const Tensor x = random_input({2, 3, 32, 32}, 3);
  const std::vector<float> whole = values((*model)(x));
  std::vector<std::string> splits = nn::layer_names(*model);
  splits.pop_back();  // nothing after the last layer
  splits.push_back("features");  // a chain as a split point
  for (const std::string& layer : splits) {
    const Tensor h = nn::forward_to(*model, x, layer);
    // The fused Conv2d + ReLU computes the same floats as the two layers one after the other.
    EXPECT_EQ(values(nn::forward_from(*model, h, layer)), whole) << layer;
  }
  // The first convolution's own output (before its ReLU) has negative values; its ReLU's does not.
  const std::vector<float> conv = values(nn::forward_to(*model, x, "features.0"));
  EXPECT_LT(*std::min_element(conv.begin(), conv.end()), 0.0f);
  const std::vector<float> relu = values(nn::forward_to(*model, x, "features.1"));
  EXPECT_EQ(*std::min_element(relu.begin(), relu.end()), 0.0f);
  EXPECT_EQ(values(nn::forward_to(*model, x, "features")), values(model->forward_features(x)));
}

TEST(NamedLayers, UnknownLayersAndNonChainsAreErrors) {
  auto model = small_vgg(4);
  const Tensor x = random_input({1, 3, 32, 32}, 5);
  try {
    nn::forward_to(*model, x, "features.99");
    ADD_FAILURE() << "no error";
  } catch (const nn::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("no layer 'features.99'"), std::string::npos) << m;
    EXPECT_NE(m.find("from 'features.0' to 'classifier.6'"), std::string::npos) << m;
  }
  EXPECT_THROW(nn::forward_from(*model, x, "classifier.7"), nn::Error);
  nn::Linear single(3, 2);
  EXPECT_THROW(nn::forward_to(single, random_input({1, 3}, 6), "weight"), nn::Error);
}

TEST(NamedLayers, HooksObserveAndReplaceOutputs) {
  auto model = small_vgg(7);
  nn::NoGradGuard no_grad;
  const Tensor x = random_input({1, 3, 32, 32}, 8);
  const std::vector<float> plain = values((*model)(x));
  Tensor conv_out, relu_out, pool_out, features_out;
  {
    nn::ForwardHooks hooks(*model, {{"features.0", [&](const Tensor& y) { return conv_out = y; }},
                                    {"features.4", [&](const Tensor& y) { return relu_out = y; }},
                                    {"features.15", [&](const Tensor& y) { return pool_out = y; }},
                                    {"features", [&](const Tensor& y) { return features_out = y; }}});
    // Observing changes nothing.
    EXPECT_EQ(values((*model)(x)), plain);
  }
  // The convolution's own output (its hook stops the fusion), a fused ReLU's output, a chain's.
  EXPECT_EQ(values(conv_out), values(nn::forward_to(*model, x, "features.0")));
  EXPECT_EQ(values(relu_out), values(nn::forward_to(*model, x, "features.4")));
  // A pool's hook keeps the convolution, ReLU and pool fused (Winograd pools in its output pass
  // at this layer's 32 channels) and sees the pooled output.
  EXPECT_EQ(pool_out.shape(), (nn::Shape{1, 32, 2, 2}));
  EXPECT_EQ(values(pool_out), values(nn::forward_to(*model, x, "features.15")));
  EXPECT_EQ(values(features_out), values(model->forward_features(x)));
  // Out of scope: no hook runs.
  conv_out = Tensor();
  (*model)(x);
  EXPECT_FALSE(conv_out.defined());

  // Replacing the features' output with zeros: the logits are the classifier's bias path only.
  {
    nn::ForwardHooks zero(*model, {{"features", [](const Tensor& y) { return nn::zeros(y.shape()); }}});
    const std::vector<float> replaced = values((*model)(x));
    const std::vector<float> expected = values(nn::forward_from(*model, nn::zeros(features_out.shape()), "features"));
    EXPECT_EQ(replaced, expected);
    EXPECT_NE(replaced, plain);
  }
  EXPECT_THROW(nn::ForwardHooks(*model, {{"features.77", [](const Tensor& y) { return y; }}}), nn::Error);
}

TEST(NamedLayers, HooksArePerThread) {
  auto model = small_vgg(9);
  nn::NoGradGuard no_grad;
  const Tensor x = random_input({1, 3, 32, 32}, 10);
  const std::vector<float> plain = values((*model)(x));
  nn::ForwardHooks zero(*model, {{"features", [](const Tensor& y) { return nn::zeros(y.shape()); }}});
  std::vector<float> other;
  std::thread t([&] {
    nn::NoGradGuard g;
    other = values((*model)(x));
  });
  t.join();
  EXPECT_EQ(other, plain);
  EXPECT_NE(values((*model)(x)), plain);
}

TEST(NamedLayers, EvalModeGuardActsAsEvalWithoutChangingTheFlag) {
  nn::Generator gen(11);
  nn::Sequential net{std::make_shared<nn::Linear>(4, 4, true, gen), std::make_shared<nn::Dropout>(0.5, 3)};
  net.train();
  nn::NoGradGuard no_grad;
  const Tensor x = random_input({3, 4}, 12);
  net.eval();
  const std::vector<float> eval_out = values(net(x));
  net.train();
  {
    nn::EvalModeGuard eval;
    EXPECT_FALSE(net.is_training());
    EXPECT_EQ(values(net(x)), eval_out);
  }
  EXPECT_TRUE(net.is_training());
  EXPECT_NE(values(net(x)), eval_out);  // dropout again
}

TEST(NamedLayers, GradientsOnlyForTreatsOtherLeavesAsConstants) {
  nn::Generator gen(13);
  nn::Linear lin(3, 2, true, gen);
  Tensor a = random_input({4, 3}, 14).requires_grad_(true);
  Tensor b = random_input({4, 3}, 15).requires_grad_(true);
  {
    nn::GradientsOnlyFor only({a});
    EXPECT_TRUE(nn::wants_grad(a));
    EXPECT_FALSE(nn::wants_grad(b));
    EXPECT_FALSE(nn::wants_grad(lin.weight()));
    Tensor y = nn::sum(nn::mul(lin(a), lin(b)));
    EXPECT_TRUE(nn::wants_grad(y));  // not a leaf
    y.backward();
  }
  EXPECT_TRUE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  EXPECT_FALSE(lin.weight().grad().defined());
  EXPECT_EQ(lin.weight().impl()->grad_accumulator, nullptr);
  // a's gradient equals the one computed with everything else detached.
  Tensor a2 = a.detach().clone().requires_grad_(true);
  nn::Tensor w = lin.weight().detach(), bias = lin.bias().detach();
  nn::sum(nn::mul(nn::linear(a2, w, bias), nn::linear(b.detach(), w, bias))).backward();
  EXPECT_EQ(values(a.grad()), values(a2.grad()));
  // Outside the scope everything requires grad again.
  EXPECT_TRUE(nn::wants_grad(lin.weight()));
  EXPECT_THROW(nn::GradientsOnlyFor({nn::mul(a, 2.0)}), nn::Error);  // not a leaf
}

}  // namespace
