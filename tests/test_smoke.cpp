#include <gtest/gtest.h>
#include <nn/nn.h>

TEST(Smoke, AddBackward) {
  nn::Generator gen(1);
  nn::Tensor a = nn::randn({2, 3}, gen).requires_grad_();
  nn::Tensor b = nn::randn({3}, gen).requires_grad_();
  nn::Tensor y = nn::sum(nn::mul(a, b));
  y.backward();
  EXPECT_EQ(b.grad().shape(), (nn::Shape{3}));
  std::cout << a << "\n" << b.grad() << "\n";
}
