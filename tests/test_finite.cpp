// Finiteness checks (docs/reliability.md item 14): all_finite finds NaN and +-inf in any position, dtype
// and layout without false alarms on values near the float range; parameters_with_non_finite_grad
// names the bad gradients in model order; first_non_finite_output reruns a forward pass layer by
// layer and names the first layer whose output is not finite, in Sequentials and in a VGG.
#include <gtest/gtest.h>
#include <nn/finite.h>
#include <nn/models/vgg.h>
#include <nn/nn.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Writes `value` into element `index` of a (contiguous, CPU) parameter or gradient, bypassing
// autograd's in-place guard, as a corrupted update would.
void poke(const nn::Tensor& t, int64_t index, float value) { t.detach().data<float>()[index] = value; }

nn::Tensor random_input(const nn::Shape& shape, uint64_t seed) {
  nn::Generator gen(seed);
  return nn::randn(shape, gen);
}

}  // namespace

TEST(AllFinite, RandomValuesAndValuesNearTheFloatLimitAreFinite) {
  EXPECT_TRUE(nn::all_finite(random_input({37, 5}, 1)));
  // A plain sum of these overflows to inf; the check must not mistake that for a non-finite value.
  EXPECT_TRUE(nn::all_finite(nn::full({1000}, 3.0e38)));
  EXPECT_TRUE(nn::all_finite(nn::full({1000}, -3.0e38)));
  EXPECT_TRUE(nn::all_finite(nn::full({100}, 1.0e308, nn::f64)));
  EXPECT_TRUE(nn::all_finite(nn::zeros({0, 3})));
  EXPECT_TRUE(nn::all_finite(nn::arange(10, nn::i64)));
  EXPECT_TRUE(nn::all_finite(nn::Tensor()));
}

TEST(AllFinite, OneNaNOrInfinityAnywhereIsFound) {
  for (float bad : {kNaN, kInf, -kInf}) {
    for (int64_t index : {0, 17, 184}) {
      nn::Tensor t = random_input({37, 5}, 2);
      t.data<float>()[index] = bad;
      EXPECT_FALSE(nn::all_finite(t)) << bad << " at " << index;
    }
  }
  EXPECT_FALSE(nn::all_finite(nn::full({3}, kInf, nn::f64)));
  EXPECT_FALSE(nn::all_finite(nn::full({3}, kInf, nn::f16)));
  EXPECT_FALSE(nn::all_finite(nn::full({3}, kNaN, nn::bf16)));
  EXPECT_TRUE(nn::all_finite(nn::full({3}, 65504.0, nn::f16)));  // the largest half
}

TEST(AllFinite, NonContiguousViewsAreCheckedOverTheirOwnElementsOnly) {
  nn::Tensor t = random_input({4, 6}, 3);
  t.data<float>()[1 * 6 + 5] = kNaN;             // row 1, column 5
  EXPECT_FALSE(nn::all_finite(t.t()));           // transposed view: still there
  EXPECT_TRUE(nn::all_finite(t.narrow(1, 0, 5)));  // columns 0-4 exclude it
  EXPECT_FALSE(nn::all_finite(t.narrow(0, 1, 1)));
}

TEST(AllFinite, ListIsFiniteOnlyWhenEveryTensorIsAndSkipsUndefined) {
  nn::Tensor a = random_input({8}, 4), b = random_input({3, 3}, 5);
  EXPECT_TRUE(nn::all_finite(std::vector<nn::Tensor>{a, nn::Tensor(), b, nn::arange(4, nn::i64)}));
  EXPECT_TRUE(nn::all_finite(std::vector<nn::Tensor>{}));
  nn::Tensor c = b.clone();
  c.data<float>()[8] = -kInf;
  EXPECT_FALSE(nn::all_finite(std::vector<nn::Tensor>{a, nn::Tensor(), c}));
  // Large finite tensors summed together stay finite.
  EXPECT_TRUE(nn::all_finite(std::vector<nn::Tensor>{nn::full({500}, 3e38), nn::full({500}, 3e38)}));
}

TEST(NonFiniteGradients, NamesTheBadGradientsInParameterOrder) {
  nn::Generator gen(6);
  nn::Sequential model{std::make_shared<nn::Linear>(3, 4, true, gen), std::make_shared<nn::ReLU>(),
                       std::make_shared<nn::Linear>(4, 1, true, gen)};
  EXPECT_TRUE(nn::parameters_with_non_finite_grad(model).empty());  // no gradients yet
  nn::sum(model.forward(random_input({5, 3}, 7))).backward();
  EXPECT_TRUE(nn::parameters_with_non_finite_grad(model).empty());
  auto params = model.named_parameters();
  ASSERT_EQ(params[3].first, "2.bias");
  ASSERT_EQ(params[1].first, "0.bias");
  poke(params[3].second.grad(), 0, kNaN);
  poke(params[1].second.grad(), 2, -kInf);
  EXPECT_EQ(nn::parameters_with_non_finite_grad(model), (std::vector<std::string>{"0.bias", "2.bias"}));
  EXPECT_TRUE(nn::non_finite_parameters(model).empty());
  poke(params[2].second, 1, kInf);
  EXPECT_EQ(nn::non_finite_parameters(model), (std::vector<std::string>{"2.weight"}));
}

TEST(FirstNonFiniteOutput, NamesTheFirstLayerWhoseOutputIsNotFinite) {
  nn::Generator gen(8);
  auto inner = std::make_shared<nn::Sequential>(
      std::vector<std::shared_ptr<nn::Module>>{std::make_shared<nn::Linear>(4, 4, true, gen), std::make_shared<nn::ReLU>()});
  nn::Sequential model{std::make_shared<nn::Linear>(3, 4, true, gen), std::make_shared<nn::ReLU>(), inner,
                       std::make_shared<nn::Linear>(4, 2, true, gen)};
  const nn::Tensor x = random_input({6, 3}, 9);

  // All finite: no site, and the output is the model's own.
  nn::Tensor out;
  EXPECT_FALSE(nn::first_non_finite_output(model, x, "", "", &out).has_value());
  const std::vector<float> expected = model.forward(x).to_vector<float>();
  const std::vector<float> got = out.to_vector<float>();
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_FLOAT_EQ(got[i], expected[i]) << i;

  // An infinite weight in the nested Linear: found there, by dotted name.
  poke(inner->at<nn::Linear>(0)->weight(), 6, kInf);
  auto site = nn::first_non_finite_output(model, x, "", "net");
  ASSERT_TRUE(site.has_value());
  EXPECT_EQ(site->layer, "net.2.0");
  EXPECT_EQ(site->type, "Linear");
  EXPECT_EQ(site->str(), "net.2.0 (Linear)");

  // A NaN weight earlier wins.
  poke(model.at<nn::Linear>(0)->weight(), 5, kNaN);
  site = nn::first_non_finite_output(model, x);
  ASSERT_TRUE(site.has_value());
  EXPECT_EQ(site->str(), "0 (Linear)");
  // Starting after it, the nested layer is first again.
  site = nn::first_non_finite_output(model, nn::relu(random_input({6, 4}, 10)), "1");
  ASSERT_TRUE(site.has_value());
  EXPECT_EQ(site->str(), "2.0 (Linear)");

  // A non-finite input is reported as the input.
  nn::Tensor bad_input = x.clone();
  bad_input.data<float>()[4] = kInf;
  site = nn::first_non_finite_output(model, bad_input);
  ASSERT_TRUE(site.has_value());
  EXPECT_TRUE(site->layer.empty());
  EXPECT_EQ(site->str(), "the input");
}

TEST(FirstNonFiniteOutput, VggNamesFeatureAndClassifierLayersAndHonoursTheFrozenPrefix) {
  nn::Generator gen(12);
  nn::models::VGGOptions o;
  o.depth = 11;
  o.num_classes = 1;
  o.width_multiplier = 1.0 / 16;
  o.input_size = 32;
  o.hidden_features = 8;
  nn::models::VGG vgg(o, gen);
  vgg.eval();
  const nn::Tensor x = random_input({2, 3, 32, 32}, 13);
  EXPECT_FALSE(nn::first_non_finite_output(vgg, x).has_value());

  // VGG11 features: 0 conv, 1 relu, 2 pool, 3 conv, ...; classifier: 0 linear, 1 relu, 2 dropout, 3 linear.
  poke(vgg.classifier()->named_parameters()[2].second, 0, kNaN);  // classifier.3.weight
  ASSERT_EQ(vgg.classifier()->named_parameters()[2].first, "3.weight");
  auto site = nn::first_non_finite_output(vgg, x);
  ASSERT_TRUE(site.has_value());
  EXPECT_EQ(site->str(), "classifier.3 (Linear)");

  poke(vgg.features()->at<nn::Conv2d>(3)->weight(), 0, -kInf);
  site = nn::first_non_finite_output(vgg, x);
  ASSERT_TRUE(site.has_value());
  EXPECT_EQ(site->str(), "features.3 (Conv2d)");

  // From a cached prefix: the input is features.2's output (N, C, 16, 16).
  const int64_t c = vgg.features()->at<nn::Conv2d>(0)->weight().size(0);
  site = nn::first_non_finite_output(vgg, nn::relu(random_input({2, c, 16, 16}, 14)), "features.2");
  ASSERT_TRUE(site.has_value());
  EXPECT_EQ(site->str(), "features.3 (Conv2d)");
  site = nn::first_non_finite_output(vgg, nn::full({2, c, 16, 16}, kNaN), "features.2");
  ASSERT_TRUE(site.has_value());
  EXPECT_EQ(site->str(), "the input");
}
