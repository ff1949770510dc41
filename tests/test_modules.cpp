// Modules, layers and initialisation: registration and dotted names, train/eval, in-place
// dtype/device moves, state_dict round trips and all-or-nothing loading, freezing, printing,
// layer forward wiring and PyTorch's default initialisation bounds.
#include <gtest/gtest.h>
#include <nn/autograd.h>
#include <nn/init.h>
#include <nn/layers.h>
#include <nn/module.h>
#include <nn/ops.h>
#include <nn/optim.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace nn {
namespace {

// A VGG in miniature: torchvision's layout (features / avgpool / classifier) plus a buffer.
class SmallVgg : public Module {
 public:
  explicit SmallVgg(Generator& gen) {
    mean_ = register_buffer("mean", tensor({0.5f, 0.25f, -0.5f}));
    features_ = register_module("features", std::make_shared<Sequential>());
    features_->push_back(std::make_shared<Conv2d>(3, 4, 3, 1, 1, true, gen));
    features_->push_back(std::make_shared<ReLU>());
    features_->push_back(std::make_shared<MaxPool2d>(2));
    features_->push_back(std::make_shared<Conv2d>(4, 8, 3, 1, 1, true, gen));
    features_->push_back(std::make_shared<ReLU>());
    avgpool_ = register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(2));
    classifier_ = register_module("classifier", std::make_shared<Sequential>());
    classifier_->push_back(std::make_shared<Linear>(8 * 2 * 2, 16, true, gen));
    classifier_->push_back(std::make_shared<ReLU>());
    classifier_->push_back(std::make_shared<Dropout>(0.5, 11));
    classifier_->push_back(std::make_shared<Linear>(16, 3, true, gen));
  }

  Tensor forward(const Tensor& x) override {
    Tensor y = features_->forward(x - mean_.view({1, 3, 1, 1}));
    return classifier_->forward(flatten(avgpool_->forward(y), 1));
  }
  std::string name() const override { return "SmallVgg"; }

  std::shared_ptr<Sequential> features_, classifier_;
  std::shared_ptr<AdaptiveAvgPool2d> avgpool_;
  Tensor mean_;
};

Tensor sample_input(uint64_t seed) {
  Generator gen(seed);
  return randn({2, 3, 8, 8}, gen);
}

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor>>& list) {
  std::vector<std::string> out;
  for (const auto& entry : list) out.push_back(entry.first);
  return out;
}

std::vector<std::vector<float>> values_of(const Module& m) {
  std::vector<std::vector<float>> out;
  for (const auto& [name, t] : m.state_dict()) out.push_back(t.to_vector<float>());
  return out;
}

// ---- registration and traversal ----

TEST(Module, NestedSequentialParametersHaveDottedNamesInRegistrationOrder) {
  Generator gen(1);
  SmallVgg model(gen);
  std::vector<std::string> expected{
      "features.0.weight",   "features.0.bias",   "features.3.weight",   "features.3.bias",
      "classifier.0.weight", "classifier.0.bias", "classifier.3.weight", "classifier.3.bias"};
  EXPECT_EQ(names_of(model.named_parameters()), expected);
  EXPECT_EQ(names_of(model.named_buffers()), std::vector<std::string>{"mean"});
  std::vector<std::string> state{"mean"};
  state.insert(state.end(), expected.begin(), expected.end());
  EXPECT_EQ(names_of(model.state_dict()), state);
  EXPECT_TRUE(model.named_parameters(/*recurse=*/false).empty());

  std::vector<std::string> modules;
  for (const auto& [name, m] : model.named_modules()) modules.push_back(name);
  EXPECT_EQ(modules, (std::vector<std::string>{"", "features", "features.0", "features.1", "features.2",
                                               "features.3", "features.4", "avgpool", "classifier",
                                               "classifier.0", "classifier.1", "classifier.2",
                                               "classifier.3"}));
  EXPECT_EQ(model.children().size(), 3u);
  EXPECT_EQ(model.features_->size(), 5u);
  EXPECT_EQ((*model.features_)[2]->name(), "MaxPool2d");
  EXPECT_EQ(model.features_->at<Conv2d>(3)->out_channels(), 8);
  EXPECT_THROW(model.features_->at<Linear>(3), Error);
  EXPECT_THROW((*model.features_)[5], Error);
  // 3*4*9+4 + 4*8*9+8 + 32*16+16 + 16*3+3
  EXPECT_EQ(model.num_parameters(), 112 + 296 + 528 + 51);
}

TEST(Module, RegistrationRefusesEmptyDottedAndDuplicateNames) {
  Module m;
  m.register_parameter("w", zeros({2}));
  EXPECT_THROW(m.register_parameter("", zeros({2})), Error);
  EXPECT_THROW(m.register_parameter("a.b", zeros({2})), Error);
  EXPECT_THROW(m.register_parameter("w", zeros({2})), Error);
  EXPECT_THROW(m.register_buffer("w", zeros({2})), Error);
  EXPECT_THROW(m.register_module("w", std::make_shared<ReLU>()), Error);
  EXPECT_THROW(m.register_parameter("labels", zeros({2}, i64)), Error);
  EXPECT_THROW(m.register_parameter("undefined", Tensor()), Error);
  EXPECT_THROW(m.register_module("null", std::shared_ptr<ReLU>()), Error);
  Tensor x = ones({2});
  x.requires_grad_(true);
  EXPECT_THROW(m.register_parameter("computed", x * 2.0), Error);
  EXPECT_EQ(m.named_parameters().size(), 1u);
  EXPECT_THROW(m.forward(zeros({1})), Error);  // the base class has no forward
}

TEST(Module, RegisterParameterMakesALeafRequiringGradAndRegisterModuleKeepsTheType) {
  Module m;
  Tensor w = m.register_parameter("w", zeros({3}));
  EXPECT_TRUE(w.requires_grad());
  EXPECT_TRUE(w.is_leaf());
  EXPECT_TRUE(m.parameters()[0].same(w));
  std::shared_ptr<Linear> fc = m.register_module("fc", std::make_shared<Linear>(2, 5));
  EXPECT_EQ(fc->out_features(), 5);  // typed access without a cast
  Tensor b = m.register_buffer("running", ones({3}));
  EXPECT_FALSE(b.requires_grad());
}

TEST(Module, SharedParameterIsListedOnceButSavedUnderEachName) {
  Module m;
  auto a = m.register_module("a", std::make_shared<Linear>(2, 2));
  auto b = m.register_module("b", std::make_shared<Module>());
  b->register_parameter("tied", a->weight());
  EXPECT_EQ(m.parameters().size(), 2u);  // a.weight, a.bias; b.tied is a.weight
  EXPECT_EQ(m.state_dict().size(), 3u);
  EXPECT_EQ(m.num_parameters(), 6);
}

TEST(Module, TrainAndEvalReachEveryDescendant) {
  Generator gen(1);
  SmallVgg model(gen);
  for (const auto& [name, m] : model.named_modules()) EXPECT_TRUE(m->is_training()) << name;
  model.eval();
  for (const auto& [name, m] : model.named_modules()) EXPECT_FALSE(m->is_training()) << name;
  model.classifier_->train();
  EXPECT_FALSE(model.is_training());
  EXPECT_TRUE(model.classifier_->at<Dropout>(2)->is_training());
  EXPECT_FALSE(model.features_->is_training());
}

TEST(Module, ApplyVisitsChildrenBeforeParents) {
  Generator gen(1);
  SmallVgg model(gen);
  std::vector<std::string> order;
  model.apply([&](Module& m) { order.push_back(m.name()); });
  ASSERT_EQ(order.size(), 13u);
  EXPECT_EQ(order.front(), "Conv2d");
  EXPECT_EQ(order.back(), "SmallVgg");
}

// ---- checkpoints ----

TEST(Module, StateDictRoundTripIntoAFreshModelGivesIdenticalOutputs) {
  Generator gen_a(1), gen_b(2);
  SmallVgg a(gen_a), b(gen_b);
  a.eval();
  b.eval();
  {
    NoGradGuard no_grad;
    a.mean_.fill_(0.125);  // a buffer value differing from b's, to prove buffers travel too
  }
  Tensor x = sample_input(5);
  std::vector<float> ya = a(x).to_vector<float>();
  EXPECT_NE(ya, b(x).to_vector<float>());

  StateDict state = a.state_dict();
  LoadStateDictResult r = b.load_state_dict(state);
  EXPECT_TRUE(r.missing_keys.empty());
  EXPECT_TRUE(r.unexpected_keys.empty());
  EXPECT_EQ(b(x).to_vector<float>(), ya);
  EXPECT_EQ(values_of(b), values_of(a));
  // Loaded by copy: b's parameters are still its own tensors, leaves that require grad.
  EXPECT_NE(b.features_->at<Conv2d>(0)->weight().storage(), a.features_->at<Conv2d>(0)->weight().storage());
  EXPECT_TRUE(b.features_->at<Conv2d>(0)->weight().requires_grad());
  EXPECT_TRUE(b.features_->at<Conv2d>(0)->weight().is_leaf());
}

TEST(Module, LoadStateDictListsMissingUnexpectedAndMisshapedKeysInOneErrorAndChangesNothing) {
  Generator gen_a(1), gen_b(2);
  SmallVgg a(gen_a), b(gen_b);
  const auto before = values_of(b);

  StateDict state;
  for (const auto& [name, t] : a.state_dict()) {
    if (name == "classifier.3.bias") continue;  // missing
    if (name == "features.0.weight") state.emplace_back(name, zeros({4, 3, 5, 5}));  // wrong shape
    else state.emplace_back(name, t);  // valid values that would change b if anything were copied
  }
  state.emplace_back("classifier.9.weight", zeros({2, 2}));  // unexpected

  try {
    b.load_state_dict(state);
    FAIL() << "load_state_dict accepted a bad state dict";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("classifier.3.bias"), std::string::npos) << msg;
    EXPECT_NE(msg.find("classifier.9.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("features.0.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[4, 3, 5, 5]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("3 problems"), std::string::npos) << msg;
  }
  EXPECT_EQ(values_of(b), before);
}

TEST(Module, LoadStateDictConvertsF64AndF16IntoF32Parameters) {
  Generator gen(3);
  Linear src(3, 2, true, gen), dst(3, 2, true, gen);
  StateDict state{{"weight", src.weight().to(f64)}, {"bias", src.bias().to(f16)}};
  dst.load_state_dict(state);
  EXPECT_EQ(dst.weight().dtype(), f32);
  EXPECT_EQ(dst.weight().to_vector<float>(), src.weight().to_vector<float>());
  std::vector<float> want = src.bias().to(f16).to_vector<float>();  // what f16 can represent
  EXPECT_EQ(dst.bias().to_vector<float>(), want);
}

TEST(Module, LoadStateDictRefusesIntegerValuesAndDuplicateKeys) {
  Linear m(2, 2);
  const auto before = values_of(m);
  StateDict ints{{"weight", zeros({2, 2}, i64)}, {"bias", zeros({2})}};
  EXPECT_THROW(m.load_state_dict(ints), Error);
  StateDict dup{{"weight", zeros({2, 2})}, {"bias", zeros({2})}, {"bias", zeros({2})}};
  EXPECT_THROW(m.load_state_dict(dup), Error);
  EXPECT_EQ(values_of(m), before);
}

TEST(Module, NonStrictLoadReportsSkippedKeysButStillRefusesShapeMismatch) {
  Linear m(2, 2);
  StateDict partial{{"weight", full({2, 2}, 0.5)}, {"extra", zeros({1})}};
  LoadStateDictResult r = m.load_state_dict(partial, /*strict=*/false);
  EXPECT_EQ(r.missing_keys, std::vector<std::string>{"bias"});
  EXPECT_EQ(r.unexpected_keys, std::vector<std::string>{"extra"});
  EXPECT_EQ(m.weight().to_vector<float>(), std::vector<float>(4, 0.5f));
  EXPECT_THROW(m.load_state_dict(StateDict{{"weight", zeros({3, 2})}}, false), Error);
}

TEST(Module, LoadingItsOwnStateDictWithSwappedNamesReadsTheOldValues) {
  // Sources aliasing other destinations are copied out before any write.
  Module m;
  Tensor a = m.register_parameter("a", tensor({1, 2}));
  Tensor b = m.register_parameter("b", tensor({3, 4}));
  StateDict swapped{{"a", b.detach()}, {"b", a.detach()}};
  m.load_state_dict(swapped);
  EXPECT_EQ(a.to_vector<float>(), (std::vector<float>{3, 4}));
  EXPECT_EQ(b.to_vector<float>(), (std::vector<float>{1, 2}));
}

// ---- freezing, gradients, placement ----

TEST(Module, FrozenParametersGetNoGradientAndOptimizerLeavesThemAlone) {
  Generator gen(4);
  SmallVgg model(gen);
  model.eval();
  model.features_->set_requires_grad(false);
  EXPECT_EQ(model.num_parameters(/*trainable_only=*/true), 528 + 51);
  const auto frozen_before = model.features_->at<Conv2d>(0)->weight().to_vector<float>();
  const auto head_before = model.classifier_->at<Linear>(0)->weight().to_vector<float>();

  sum(model(sample_input(6))).backward();
  for (const auto& [name, p] : model.named_parameters()) {
    bool frozen = name.rfind("features.", 0) == 0;
    EXPECT_EQ(p.grad().defined(), !frozen) << name;
  }
  optim::SGD sgd(model.parameters(), 0.1);
  sgd.step();
  EXPECT_EQ(model.features_->at<Conv2d>(0)->weight().to_vector<float>(), frozen_before);
  EXPECT_NE(model.classifier_->at<Linear>(0)->weight().to_vector<float>(), head_before);

  model.features_->set_requires_grad(true);
  EXPECT_EQ(model.num_parameters(true), model.num_parameters());
}

TEST(Module, ZeroGradClearsOrZeroesEveryGradient) {
  Generator gen(4);
  Linear m(3, 2, true, gen);
  sum(m(ones({4, 3}))).backward();
  ASSERT_TRUE(m.weight().grad().defined());
  m.zero_grad(/*set_to_none=*/false);
  EXPECT_EQ(m.weight().grad().to_vector<float>(), std::vector<float>(6, 0.0f));
  m.zero_grad();
  EXPECT_FALSE(m.weight().grad().defined());
  EXPECT_FALSE(m.bias().grad().defined());
}

TEST(Module, ToDtypeConvertsInPlaceSoEveryHandleSeesIt) {
  Generator gen(8);
  SmallVgg model(gen);
  model.eval();
  Tensor x = sample_input(9);
  std::vector<float> y32 = model(x).to_vector<float>();
  Tensor handle = model.features_->at<Conv2d>(0)->weight();  // taken before the move
  sum(model(x)).backward();                                   // a gradient that must move too

  model.to(f64);
  EXPECT_EQ(handle.dtype(), f64);
  EXPECT_EQ(handle.grad().dtype(), f64);
  EXPECT_TRUE(handle.requires_grad());
  EXPECT_TRUE(handle.is_leaf());
  EXPECT_EQ(model.mean_.dtype(), f64);
  std::vector<double> y64 = model(x.to(f64)).to_vector<double>();
  for (size_t i = 0; i < y32.size(); ++i) EXPECT_NEAR(y64[i], y32[i], 1e-5);
  // Gradients keep flowing into the converted leaves.
  model.zero_grad();
  sum(model(x.to(f64))).backward();
  EXPECT_TRUE(handle.grad().defined());
  EXPECT_THROW(model.to(i64), Error);
}

TEST(Module, ToDeviceMovesParametersAndGradientsInPlaceKeepingLeaves) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Generator gen(8);
  Linear m(4, 3, true, gen);
  Tensor handle = m.weight();
  std::vector<float> before = handle.to_vector<float>();
  handle.set_grad(full({3, 4}, 0.5));
  optim::SGD sgd(m.parameters(), 0.1);  // holds handles taken before the move
  m.to(Device::cuda());
  EXPECT_TRUE(handle.device().is_cuda());
  EXPECT_TRUE(sgd.params()[0].device().is_cuda());
  EXPECT_TRUE(m.bias().device().is_cuda());
  EXPECT_TRUE(handle.requires_grad());
  EXPECT_TRUE(handle.is_leaf());
  EXPECT_EQ(handle.to_vector<float>(), before);
  EXPECT_TRUE(handle.grad().device().is_cuda());
  EXPECT_EQ(handle.grad().to_vector<float>(), std::vector<float>(12, 0.5f));
  m.to(Device::cpu());
  EXPECT_TRUE(handle.device().is_cpu());
  EXPECT_EQ(handle.to_vector<float>(), before);
}

// ---- printing ----

TEST(Module, ToStringPrintsTheTreeLikePyTorch) {
  Generator gen(1);
  SmallVgg model(gen);
  const std::string expected =
      "SmallVgg(\n"
      "  (features): Sequential(\n"
      "    (0): Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))\n"
      "    (1): ReLU()\n"
      "    (2): MaxPool2d(kernel_size=2, stride=2, padding=0, ceil_mode=False)\n"
      "    (3): Conv2d(4, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))\n"
      "    (4): ReLU()\n"
      "  )\n"
      "  (avgpool): AdaptiveAvgPool2d(output_size=(2, 2))\n"
      "  (classifier): Sequential(\n"
      "    (0): Linear(in_features=32, out_features=16, bias=True)\n"
      "    (1): ReLU()\n"
      "    (2): Dropout(p=0.5)\n"
      "    (3): Linear(in_features=16, out_features=3, bias=True)\n"
      "  )\n"
      ")";
  EXPECT_EQ(model.to_string(), expected);
  EXPECT_EQ(Conv2d(3, 8, {1, 3}, {2, 1}, {0, 0}, false).str(),
            "Conv2d(3, 8, kernel_size=(1, 3), stride=(2, 1), bias=False)");
  EXPECT_EQ(Flatten().str(), "Flatten(start_dim=1, end_dim=-1)");
  EXPECT_EQ(Linear(4, 2, false).str(), "Linear(in_features=4, out_features=2, bias=False)");
}

// ---- layers ----

TEST(Layers, LinearDefaultInitIsUniformWithinOneOverSqrtFanIn) {
  Generator gen(21);
  Linear fc(256, 128, true, gen);
  const double bound = 1.0 / std::sqrt(256.0);
  std::vector<float> w = fc.weight().to_vector<float>();
  double sum_sq = 0.0, sum = 0.0;
  for (float v : w) {
    ASSERT_LE(std::abs(v), bound);
    sum += v;
    sum_sq += static_cast<double>(v) * v;
  }
  double mean = sum / w.size();
  double std = std::sqrt(sum_sq / w.size() - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.002);
  EXPECT_NEAR(std, bound / std::sqrt(3.0), 0.02 * bound);  // U(-b, b) has std b/sqrt(3)
  for (float v : fc.bias().to_vector<float>()) EXPECT_LE(std::abs(v), bound);
  EXPECT_EQ(fc.weight().shape(), (Shape{128, 256}));
}

TEST(Layers, Conv2dDefaultInitIsUniformWithinOneOverSqrtFanIn) {
  Generator gen(22);
  Conv2d conv(16, 32, 3, 1, 1, true, gen);
  EXPECT_EQ(conv.weight().shape(), (Shape{32, 16, 3, 3}));
  const double bound = 1.0 / std::sqrt(16.0 * 9.0);
  std::vector<float> w = conv.weight().to_vector<float>();
  double sum_sq = 0.0;
  float largest = 0.0f;
  for (float v : w) {
    ASSERT_LE(std::abs(v), bound);
    sum_sq += static_cast<double>(v) * v;
    largest = std::max(largest, std::abs(v));
  }
  EXPECT_NEAR(std::sqrt(sum_sq / w.size()), bound / std::sqrt(3.0), 0.03 * bound);
  EXPECT_GT(largest, 0.95 * bound);  // the range is used, not a narrower one
  for (float v : conv.bias().to_vector<float>()) EXPECT_LE(std::abs(v), bound);
}

TEST(Layers, InitialisationIsReproducibleFromTheGeneratorSeed) {
  Generator g1(5), g2(5), g3(6);
  Conv2d a(3, 4, 3, 1, 0, true, g1), b(3, 4, 3, 1, 0, true, g2), c(3, 4, 3, 1, 0, true, g3);
  EXPECT_EQ(a.weight().to_vector<float>(), b.weight().to_vector<float>());
  EXPECT_EQ(a.bias().to_vector<float>(), b.bias().to_vector<float>());
  EXPECT_NE(a.weight().to_vector<float>(), c.weight().to_vector<float>());
  EXPECT_NE(a.weight().to_vector<float>(), a.bias().to_vector<float>());
}

TEST(Layers, ForwardCallsTheOpsWithTheLayerParameters) {
  Generator gen(30);
  Tensor x = randn({2, 3, 7, 7}, gen);
  Conv2d conv(3, 5, 3, 2, 1, true, gen);
  Conv2dOptions co;
  co.stride = {2, 2};
  co.padding = {1, 1};
  Tensor y = conv(x);
  EXPECT_EQ(y.shape(), (Shape{2, 5, 4, 4}));
  EXPECT_EQ(y.to_vector<float>(), conv2d(x, conv.weight(), conv.bias(), co).to_vector<float>());

  Linear fc(7, 4, true, gen);
  Tensor xl = randn({3, 7}, gen);
  EXPECT_EQ(fc(xl).to_vector<float>(), linear(xl, fc.weight(), fc.bias()).to_vector<float>());

  EXPECT_EQ(MaxPool2d(2)(x).shape(), (Shape{2, 3, 3, 3}));
  EXPECT_EQ(MaxPool2d(2, 2, 0, /*ceil_mode=*/true)(x).shape(), (Shape{2, 3, 4, 4}));
  EXPECT_EQ(MaxPool2d(3, 1, 1)(x).shape(), (Shape{2, 3, 7, 7}));
  EXPECT_EQ(AdaptiveAvgPool2d(2, 3)(x).shape(), (Shape{2, 3, 2, 3}));
  EXPECT_EQ(Flatten()(x).shape(), (Shape{2, 147}));
  EXPECT_EQ(Flatten(2)(x).shape(), (Shape{2, 3, 49}));
  std::vector<float> r = ReLU()(x).to_vector<float>();
  std::vector<float> xv = x.to_vector<float>();
  for (size_t i = 0; i < r.size(); ++i) EXPECT_EQ(r[i], xv[i] > 0 ? xv[i] : 0.0f);

  Sequential seq{std::make_shared<Flatten>(), std::make_shared<Linear>(147, 2, true, gen), std::make_shared<ReLU>()};
  Tensor expected = relu(seq.at<Linear>(1)->forward(flatten(x, 1)));
  EXPECT_EQ(seq(x).to_vector<float>(), expected.to_vector<float>());
}

TEST(Layers, LayerArgumentsAreChecked) {
  EXPECT_THROW(Conv2d(0, 4, 3), Error);
  EXPECT_THROW(Conv2d(3, 4, 3, 0), Error);
  EXPECT_THROW(Conv2d(3, 4, 3, 1, -1), Error);
  EXPECT_THROW(Linear(3, 0), Error);
  EXPECT_THROW(MaxPool2d(2, 2, 2), Error);  // padding over half the kernel
  EXPECT_THROW(AdaptiveAvgPool2d(0), Error);
  EXPECT_THROW(Dropout(1.5), Error);
}

TEST(Layers, DropoutDropsAboutPInTrainingAndIsIdentityInEval) {
  Dropout drop(0.5, 42);
  Tensor x = ones({4000});
  std::vector<float> y = drop(x).to_vector<float>();
  int zeros_seen = 0;
  for (float v : y) {
    ASSERT_TRUE(v == 0.0f || v == 2.0f) << v;
    zeros_seen += v == 0.0f;
  }
  EXPECT_NEAR(zeros_seen / 4000.0, 0.5, 0.04);
  EXPECT_NE(drop(x).to_vector<float>(), y);  // the generator moves on

  Dropout same(0.5, 42);
  EXPECT_EQ(same(x).to_vector<float>(), y);  // same seed, same first mask

  drop.eval();
  EXPECT_EQ(drop(x).to_vector<float>(), x.to_vector<float>());
}

TEST(Layers, DropoutSeedsComeFromTheDefaultGenerator) {
  manual_seed(77);
  Dropout a(0.3);
  manual_seed(77);
  Dropout b(0.3);
  Dropout c(0.3);
  EXPECT_EQ(a.generator().seed(), b.generator().seed());
  EXPECT_NE(b.generator().seed(), c.generator().seed());
}

TEST(Layers, SequentialSetReplacesAHeadKeepingTheName) {
  Generator gen(2);
  Sequential head{std::make_shared<Linear>(8, 4, true, gen), std::make_shared<ReLU>(),
                  std::make_shared<Linear>(4, 1000, true, gen)};
  auto new_fc = head.set(2, std::make_shared<Linear>(4, 2, true, gen));
  EXPECT_EQ(head.at<Linear>(2), new_fc);
  EXPECT_EQ(names_of(head.named_parameters()),
            (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"}));
  EXPECT_EQ(head(ones({1, 8})).shape(), (Shape{1, 2}));
  EXPECT_THROW(head.set(3, std::make_shared<ReLU>()), Error);
}

// ---- init ----

TEST(Init, FansOfConvAndLinearWeights) {
  auto [conv_in, conv_out] = init::calculate_fan_in_and_fan_out(zeros({64, 3, 3, 3}));
  EXPECT_EQ(conv_in, 27);
  EXPECT_EQ(conv_out, 576);
  auto [fc_in, fc_out] = init::calculate_fan_in_and_fan_out(zeros({10, 20}));
  EXPECT_EQ(fc_in, 20);
  EXPECT_EQ(fc_out, 10);
  EXPECT_THROW(init::calculate_fan_in_and_fan_out(zeros({5})), Error);
  EXPECT_DOUBLE_EQ(init::calculate_gain(init::Nonlinearity::relu), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(init::calculate_gain(init::Nonlinearity::leaky_relu, std::sqrt(5.0)), std::sqrt(1.0 / 3.0));
  EXPECT_DOUBLE_EQ(init::calculate_gain(init::Nonlinearity::tanh), 5.0 / 3.0);
}

// Standard deviation of a tensor's values, in double.
double std_of(const Tensor& t) {
  std::vector<double> v = t.to_vector<double>();
  double mean = 0, sq = 0;
  for (double x : v) mean += x;
  mean /= v.size();
  for (double x : v) sq += (x - mean) * (x - mean);
  return std::sqrt(sq / v.size());
}

TEST(Init, KaimingAndXavierHaveTheirStandardDeviations) {
  Generator gen(40);
  Tensor w = empty({128, 64, 3, 3});  // fan_in 576, fan_out 1152
  init::kaiming_normal_(w, 0.0, init::FanMode::fan_out, init::Nonlinearity::relu, gen);
  EXPECT_NEAR(std_of(w), std::sqrt(2.0 / 1152.0), 0.01 * std::sqrt(2.0 / 1152.0));

  init::kaiming_uniform_(w, 0.0, init::FanMode::fan_in, init::Nonlinearity::relu, gen);
  double bound = std::sqrt(2.0) * std::sqrt(3.0 / 576.0);
  for (float v : w.to_vector<float>()) ASSERT_LE(std::abs(v), bound);
  EXPECT_NEAR(std_of(w), bound / std::sqrt(3.0), 0.01 * bound);

  Tensor fc = empty({300, 200}, f64);
  init::xavier_uniform_(fc, 1.0, gen);
  double xb = std::sqrt(6.0 / 500.0);
  for (double v : fc.to_vector<double>()) ASSERT_LE(std::abs(v), xb);
  EXPECT_NEAR(std_of(fc), xb / std::sqrt(3.0), 0.01 * xb);
  init::xavier_normal_(fc, 2.0, gen);
  EXPECT_NEAR(std_of(fc), 2.0 * std::sqrt(2.0 / 500.0), 0.02 * std::sqrt(2.0 / 500.0));
}

TEST(Init, FillsWorkInPlaceOnParametersThatRequireGrad) {
  Generator gen(41);
  Linear fc(3, 2, true, gen);
  uint64_t version = fc.weight().version();
  init::constant_(fc.weight(), 0.25);
  EXPECT_EQ(fc.weight().to_vector<float>(), std::vector<float>(6, 0.25f));
  EXPECT_GT(fc.weight().version(), version);
  init::zeros_(fc.bias());
  EXPECT_EQ(fc.bias().to_vector<float>(), std::vector<float>(2, 0.0f));
  init::ones_(fc.bias());
  EXPECT_EQ(fc.bias().to_vector<float>(), std::vector<float>(2, 1.0f));
  init::normal_(fc.weight(), 3.0, 0.0, gen);  // std 0: exactly the mean
  EXPECT_EQ(fc.weight().to_vector<float>(), std::vector<float>(6, 3.0f));
  init::uniform_(fc.weight(), -0.5, -0.25, gen);
  for (float v : fc.weight().to_vector<float>()) {
    EXPECT_GE(v, -0.5f);
    EXPECT_LE(v, -0.25f);
  }
  EXPECT_TRUE(fc.weight().requires_grad());
  EXPECT_THROW(init::uniform_(zeros({2}, i64), 0, 1, gen), Error);
  // Non-contiguous targets are filled through their view.
  Tensor base = zeros({4, 4});
  init::constant_(base.t().slice(0, 0, 2), 7.0);
  EXPECT_EQ(base.at({3, 1}), 7.0);
  EXPECT_EQ(base.at({3, 2}), 0.0);
}

}  // namespace
}  // namespace nn

namespace nn {
namespace {

// Sequential runs a Conv2d followed by a ReLU as one fused conv2d: the values and every gradient
// must equal the two modules run one by one.
TEST(Module, SequentialFusedConvReluMatchesSeparateModules) {
  Generator gen(7);
  auto conv = std::make_shared<Conv2d>(3, 5, 3, 1, 1, true, gen);
  Sequential seq({conv, std::make_shared<ReLU>(), std::make_shared<MaxPool2d>(2)});
  Tensor x = randn({2, 3, 8, 6}, gen);
  x.requires_grad_(true);
  Tensor fused = seq.forward(x);
  sum(mul(fused, fused)).backward();
  const std::vector<float> fused_y = fused.to_vector<float>(), fused_dx = x.grad().to_vector<float>();
  const std::vector<float> fused_dw = conv->weight().grad().to_vector<float>(),
                           fused_db = conv->bias().grad().to_vector<float>();
  seq.zero_grad();
  x.set_grad(Tensor());
  Tensor separate = max_pool2d(relu(conv2d(x, conv->weight(), conv->bias(), [] {
                                 Conv2dOptions o;
                                 o.padding = {1, 1};
                                 return o;
                               }())),
                               Pool2dOptions{});
  sum(mul(separate, separate)).backward();
  EXPECT_EQ(fused_y, separate.to_vector<float>());
  EXPECT_EQ(fused_dx, x.grad().to_vector<float>());
  EXPECT_EQ(fused_dw, conv->weight().grad().to_vector<float>());
  EXPECT_EQ(fused_db, conv->bias().grad().to_vector<float>());
  // A range: the prefix [0, 2) fuses too; [2, 3) is the pool alone; a bad range is an error.
  {
    NoGradGuard no_grad;
    Tensor prefix = seq.forward_range(x, 0, 2);
    EXPECT_EQ(seq.forward_range(prefix, 2, 3).to_vector<float>(), fused_y);
    EXPECT_EQ(seq.forward_range(x, 0, 0).to_vector<float>(), x.to_vector<float>());
    EXPECT_THROW(seq.forward_range(x, 2, 4), Error);
  }
  // Some outputs were clamped, some not: the mask mattered.
  EXPECT_GT(std::count(fused_y.begin(), fused_y.end(), 0.0f), 0);
  EXPECT_LT(std::count(fused_y.begin(), fused_y.end(), 0.0f), static_cast<long>(fused_y.size()));
}

}  // namespace
}  // namespace nn
