// Tensor basics: aliasing and deep copies, views and their strides, factories, seeded random
// numbers, dtype conversion, element access, printing, broadcasting rules, the thread knob.
#include <gtest/gtest.h>
#include <nn/nn.h>

#include <cmath>
#include <numeric>

namespace {

using nn::Shape;
using nn::Tensor;

std::vector<float> values(const Tensor& t) { return t.to_vector<float>(); }

TEST(Tensor, CopyAliasesAndCloneDeepCopies) {
  Tensor a = nn::arange(6).reshape({2, 3});
  Tensor alias = a;
  Tensor deep = a.clone();
  a.set({0, 1}, 42);
  EXPECT_EQ(alias.at({0, 1}), 42);
  EXPECT_EQ(deep.at({0, 1}), 1);
  EXPECT_TRUE(alias.same(a));
  EXPECT_NE(deep.storage(), a.storage());
}

TEST(Tensor, ViewsShareStorageWithExpectedStrides) {
  Tensor a = nn::arange(24).reshape({2, 3, 4});
  EXPECT_EQ(a.strides(), (Shape{12, 4, 1}));
  Tensor p = a.permute({2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(p.strides(), (Shape{1, 12, 4}));
  EXPECT_FALSE(p.is_contiguous());
  EXPECT_EQ(p.at({3, 1, 2}), a.at({1, 2, 3}));
  Tensor n = a.narrow(2, 1, 2);
  EXPECT_EQ(n.shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(n.offset(), 1);
  EXPECT_EQ(n.at({1, 2, 1}), 1 * 12 + 2 * 4 + 2);
  Tensor s = a.slice(1, 0, 3, 2);
  EXPECT_EQ(s.shape(), (Shape{2, 2, 4}));
  EXPECT_EQ(s.at({0, 1, 0}), 8);
  Tensor e = nn::tensor({1, 2, 3}).unsqueeze(0).expand({4, 3});
  EXPECT_EQ(e.strides(), (Shape{0, 1}));
  EXPECT_EQ(e.at({3, 2}), 3);
  EXPECT_EQ(a.unsqueeze(1).shape(), (Shape{2, 1, 3, 4}));
  EXPECT_EQ(a.unsqueeze(1).squeeze(1).shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(a.select(1, 2).shape(), (Shape{2, 4}));
  EXPECT_EQ(a.select(1, 2).at({1, 3}), 23);
  EXPECT_EQ(a.flatten(1).shape(), (Shape{2, 12}));
  // Writing through a view is visible in the base.
  {
    nn::NoGradGuard ng;
    n.fill_(-1);
  }
  EXPECT_EQ(a.at({0, 0, 1}), -1);
  EXPECT_EQ(a.at({0, 0, 0}), 0);
}

TEST(Tensor, ViewRefusesIncompatibleStridesAndReshapeCopies) {
  Tensor a = nn::arange(12).reshape({3, 4});
  Tensor t = a.t();
  EXPECT_THROW(t.view({12}), nn::Error);
  Tensor r = t.reshape({12});
  EXPECT_TRUE(r.is_contiguous());
  EXPECT_EQ(values(r), (std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  EXPECT_EQ(a.view({2, -1}).shape(), (Shape{2, 6}));
  EXPECT_THROW(a.view({5, -1}), nn::Error);
  EXPECT_TRUE(a.contiguous().same(a));
  EXPECT_FALSE(t.contiguous().same(t));
}

TEST(Tensor, FactoriesFillTheirValues) {
  EXPECT_EQ(values(nn::zeros({2, 2})), (std::vector<float>{0, 0, 0, 0}));
  EXPECT_EQ(values(nn::ones({3})), (std::vector<float>{1, 1, 1}));
  EXPECT_EQ(values(nn::full({2}, 2.5)), (std::vector<float>{2.5, 2.5}));
  EXPECT_EQ(values(nn::arange(1.0, 2.0, 0.25)), (std::vector<float>{1, 1.25, 1.5, 1.75}));
  EXPECT_EQ(nn::arange(5, nn::i64).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  Tensor v = nn::from_vector(std::vector<double>{1.5, -2, 3}, {3, 1});
  EXPECT_EQ(v.dtype(), nn::f64);
  EXPECT_EQ(v.at({2, 0}), 3);
  EXPECT_THROW(nn::from_vector(std::vector<float>{1, 2}, {3}), nn::Error);
  EXPECT_EQ(nn::scalar_tensor(7).dim(), 0);
  EXPECT_EQ(nn::scalar_tensor(7).item<float>(), 7);
  EXPECT_EQ(nn::zeros({0, 3}).numel(), 0);
}

TEST(Tensor, RandomNumbersAreSeededAndDistributedAsAsked) {
  nn::Generator g1(123), g2(123), g3(124);
  Tensor a = nn::rand({10000}, g1), b = nn::rand({10000}, g2), c = nn::rand({10000}, g3);
  EXPECT_EQ(values(a), values(b));
  EXPECT_NE(values(a), values(c));
  // The generator advances: a second draw differs from the first.
  EXPECT_NE(values(nn::rand({10000}, g1)), values(a));
  std::vector<float> u = values(a);
  double mean = std::accumulate(u.begin(), u.end(), 0.0) / u.size();
  EXPECT_NEAR(mean, 0.5, 0.02);
  for (float x : u) ASSERT_TRUE(x >= 0.0f && x < 1.0f);
  nn::Generator g4(9);
  std::vector<double> n = nn::normal({20000}, 2.0, 3.0, g4, nn::f64).to_vector<double>();
  double m = std::accumulate(n.begin(), n.end(), 0.0) / n.size();
  double var = 0;
  for (double x : n) var += (x - m) * (x - m);
  var /= n.size();
  EXPECT_NEAR(m, 2.0, 0.08);
  EXPECT_NEAR(std::sqrt(var), 3.0, 0.08);
  // Results do not depend on the thread count.
  int threads = nn::get_num_threads();
  nn::set_num_threads(1);
  nn::Generator g5(123);
  EXPECT_EQ(values(nn::rand({10000}, g5)), values(a));
  nn::set_num_threads(threads);
}

TEST(Tensor, DtypeConversionsRoundCorrectly) {
  Tensor a = nn::tensor({1.0f, -2.5f, 65504.0f, 1e-8f, 3.14159f});
  std::vector<float> h = a.to(nn::f16).to(nn::f32).to_vector<float>();
  EXPECT_EQ(h[0], 1.0f);
  EXPECT_EQ(h[1], -2.5f);
  EXPECT_EQ(h[2], 65504.0f);
  EXPECT_NEAR(h[3], 1e-8f, 6e-8f);  // subnormal in half
  EXPECT_NEAR(h[4], 3.14159f, 2e-3f);
  std::vector<float> b = a.to(nn::bf16).to(nn::f32).to_vector<float>();
  EXPECT_EQ(b[0], 1.0f);
  EXPECT_EQ(b[1], -2.5f);
  EXPECT_NEAR(b[4], 3.14159f, 2e-2f);
  EXPECT_EQ(nn::tensor({2.7f, -1.2f}).to(nn::i64).to_vector<int64_t>(), (std::vector<int64_t>{2, -1}));
  EXPECT_EQ(nn::half_to_float(nn::float_to_half(INFINITY)), INFINITY);
  EXPECT_TRUE(std::isnan(nn::half_to_float(nn::float_to_half(NAN))));
}

TEST(Tensor, PrintingShowsValuesShapeAndDtype) {
  std::string s = nn::tensor({1.5f, 2.0f, -3.0f, 4.0f}, {2, 2}).str();
  EXPECT_NE(s.find("1.5000"), std::string::npos) << s;
  EXPECT_NE(s.find("-3.0000"), std::string::npos) << s;
  EXPECT_NE(s.find("shape=[2, 2]"), std::string::npos) << s;
  EXPECT_NE(s.find("dtype=f32"), std::string::npos) << s;
  std::string big = nn::zeros({100, 100}).str();
  EXPECT_NE(big.find("..."), std::string::npos);
  EXPECT_LT(big.size(), 2000u);
}

TEST(Tensor, BadShapesAndIndicesGiveClearErrors) {
  try {
    nn::add(nn::zeros({2, 3}), nn::zeros({4}));
    FAIL();
  } catch (const nn::Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 3] and [4]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(nn::zeros({2}).at({2}), nn::Error);
  EXPECT_THROW(nn::zeros({2}).narrow(0, 1, 2), nn::Error);
  EXPECT_THROW(nn::zeros({2, 3}).permute({0, 0}), nn::Error);
  EXPECT_THROW(nn::zeros({2, 3}).expand({3, 3}), nn::Error);
  EXPECT_THROW(nn::add(nn::zeros({2}), nn::zeros({2}, nn::f64)), nn::Error);
  EXPECT_THROW(nn::zeros({-1}), nn::Error);
  EXPECT_THROW(Tensor().shape(), nn::Error);
}

TEST(Tensor, ThreadCountDoesNotChangeResults) {
  nn::Generator gen(5);
  Tensor a = nn::randn({64, 300}, gen), b = nn::randn({300, 70}, gen);
  int threads = nn::get_num_threads();
  nn::set_num_threads(1);
  std::vector<float> one = values(nn::matmul(a, b));
  std::vector<float> s1 = values(nn::sum(a, {1}));
  nn::set_num_threads(2);
  std::vector<float> two = values(nn::matmul(a, b));
  std::vector<float> s2 = values(nn::sum(a, {1}));
  nn::set_num_threads(threads);
  ASSERT_EQ(one.size(), two.size());
  for (size_t i = 0; i < one.size(); ++i) ASSERT_NEAR(one[i], two[i], 1e-4f);
  EXPECT_EQ(s1, s2);
  EXPECT_THROW(nn::set_num_threads(0), nn::Error);
}

}  // namespace
