// Autograd: accumulation, explicit gradients, no-grad mode, detach, retain_graph and the error on
// a second backward, gradients of intermediate tensors, in-place writes to saved tensors.
#include <gtest/gtest.h>
#include <nn/nn.h>

#include <cmath>

namespace {

using nn::Tensor;

Tensor leaf(std::initializer_list<float> v) { return nn::tensor(v).requires_grad_(); }

TEST(Autograd, BackwardFromScalarAccumulatesIntoGrad) {
  Tensor x = leaf({1, 2, 3});
  nn::sum(nn::mul(x, x)).backward();
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{2, 4, 6}));
  nn::sum(nn::mul(x, 3.0)).backward();  // accumulates
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{5, 7, 9}));
  EXPECT_TRUE(x.is_leaf());
}

TEST(Autograd, BackwardWithAGivenGradient) {
  Tensor x = leaf({1, -2});
  Tensor y = nn::mul(x, 4.0);
  EXPECT_THROW(y.backward(), nn::Error);  // not a scalar
  y.backward(nn::tensor({0.5f, 2.0f}));
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{2, 8}));
  EXPECT_THROW(nn::mul(x, 2.0).backward(nn::tensor({1.0f})), nn::Error);  // wrong shape
}

TEST(Autograd, DiamondGraphSumsBothPaths) {
  Tensor x = leaf({2, -1});
  Tensor y = nn::add(nn::mul(x, x), nn::mul(x, 3.0));  // dy/dx = 2x + 3
  nn::sum(y).backward();
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{7, 1}));
}

TEST(Autograd, NoGradGuardRecordsNothingAndDetachCutsHistory) {
  Tensor x = leaf({1, 2});
  {
    nn::NoGradGuard ng;
    Tensor y = nn::mul(x, 2.0);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_FALSE(nn::grad_mode_enabled());
  }
  EXPECT_TRUE(nn::grad_mode_enabled());
  Tensor d = nn::mul(x, 2.0).detach();
  EXPECT_FALSE(d.requires_grad());
  Tensor z = nn::add(nn::mul(x, d), x);  // d is a constant
  nn::sum(z).backward();
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{3, 5}));
}

TEST(Autograd, SecondBackwardThroughFreedGraphIsAClearError) {
  Tensor x = leaf({1, 2});
  Tensor y = nn::sum(nn::exp(x));
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();  // allowed: the graph was retained
  std::vector<float> g = x.grad().to_vector<float>();
  EXPECT_NEAR(g[0], 2 * std::exp(1.0f), 1e-5);
  try {
    y.backward();
    FAIL() << "third backward must throw";
  } catch (const nn::Error& e) {
    EXPECT_NE(std::string(e.what()).find("second time"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("retain_graph"), std::string::npos) << e.what();
  }
}

TEST(Autograd, GradientOfAnIntermediateTensorIsReadable) {
  nn::Generator gen(1);
  Tensor x = nn::randn({2, 3}, gen).requires_grad_();
  Tensor h = nn::relu(nn::mul(x, 2.0));  // an "activation"
  h.retain_grad();
  Tensor y = nn::sum(nn::mul(h, h));
  y.backward();
  ASSERT_TRUE(h.grad().defined());
  std::vector<float> hv = h.to_vector<float>(), hg = h.grad().to_vector<float>();
  for (size_t i = 0; i < hv.size(); ++i) EXPECT_FLOAT_EQ(hg[i], 2 * hv[i]);
  // Intermediates that did not ask keep no gradient.
  Tensor k = nn::mul(x, 2.0);
  nn::sum(k).backward();
  EXPECT_FALSE(k.grad().defined());
}

TEST(Autograd, InPlaceWriteToASavedTensorIsCaught) {
  Tensor x = leaf({1, 2, 3});
  Tensor b = nn::mul(x, 2.0);
  Tensor c = nn::mul(b, b);  // saves b
  {
    nn::NoGradGuard ng;
    b.fill_(1.0);
  }
  try {
    nn::sum(c).backward();
    FAIL() << "backward must notice the in-place write";
  } catch (const nn::Error& e) {
    EXPECT_NE(std::string(e.what()).find("modified in place"), std::string::npos) << e.what();
  }
}

TEST(Autograd, InPlaceWriteToALeafThatRequiresGradIsRefused) {
  Tensor x = leaf({1, 2});
  EXPECT_THROW(x.fill_(0), nn::Error);
  EXPECT_THROW(x.add_(nn::ones({2})), nn::Error);
  nn::NoGradGuard ng;
  x.add_(nn::ones({2}), 2.0);  // optimizers do this under NoGradGuard
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{3, 4}));
}

TEST(Autograd, GradientsFlowThroughViews) {
  Tensor x = nn::arange(6).reshape({2, 3}).requires_grad_();
  Tensor y = nn::mul(x.narrow(1, 1, 2).t().expand({3, 2, 2}), 2.0);
  nn::sum(y).backward();
  // Each of the 4 selected elements is used 3 times with factor 2.
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{0, 6, 6, 0, 6, 6}));
}

TEST(Autograd, RequiresGradOnlyForFloatingLeaves) {
  EXPECT_THROW(nn::arange(3, nn::i64).requires_grad_(), nn::Error);
  Tensor x = leaf({1});
  Tensor y = nn::mul(x, 2.0);
  EXPECT_FALSE(y.is_leaf());
  EXPECT_THROW(y.requires_grad_(false), nn::Error);
  EXPECT_EQ(y.grad_fn()->name(), "mul");
}

}  // namespace
