// batch_norm (ops/batch_norm.cpp) and the BatchNorm2d / BatchNorm1d modules: op table cases
// against a float64 reference written with plain loops (training with batch statistics, eval with
// running statistics; 2-D, 3-D and 4-D inputs; affine or not; non-contiguous inputs), with float64
// gradient checks of the input, weight and bias; the running-statistics update (momentum, unbiased
// variance, num_batches_tracked), the one-value-per-channel error, eval semantics under
// EvalModeGuard, torchvision's names, and the Conv2d + BatchNorm2d folding for inference.
#include <gtest/gtest.h>
#include <nn/named_layers.h>

#include <cmath>
#include <string>
#include <vector>

#include "op_harness.h"

namespace nn::test {
namespace {

using V = std::vector<Tensor>;
using R = std::vector<Ref>;

// y = (x - mean_c) / sqrt(var_c + eps) * w_c + b_c over x (N, C, *), with the batch's mean and
// biased variance (training) or the given running ones.
Ref ref_batch_norm(const Ref& x, const Ref* running_mean, const Ref* running_var, const Ref* w, const Ref* b,
                   bool training, double eps) {
  const int64_t n = x.size(0), c = x.size(1), s = x.numel() / (n * c);
  Ref y(x.shape);
  for (int64_t ch = 0; ch < c; ++ch) {
    double mean = 0, var = 0;
    if (training) {
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < s; ++j) mean += x.v[(i * c + ch) * s + j];
      mean /= static_cast<double>(n * s);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < s; ++j) var += std::pow(x.v[(i * c + ch) * s + j] - mean, 2);
      var /= static_cast<double>(n * s);
    } else {
      mean = running_mean->v[ch];
      var = running_var->v[ch];
    }
    const double scale = (w ? w->v[ch] : 1.0) / std::sqrt(var + eps), shift = b ? b->v[ch] : 0.0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < s; ++j) y.v[(i * c + ch) * s + j] = (x.v[(i * c + ch) * s + j] - mean) * scale + shift;
  }
  return y;
}

// Training: inputs x, weight, bias (or x alone); running statistics are made inside (they are
// updated in place, which must not touch the harness's inputs).
OpCase train_case(const std::string& name, Input x, bool affine, double eps = 1e-5) {
  const int64_t c = x.shape[1];
  std::vector<Input> inputs{x};
  if (affine) {
    inputs.push_back(Input{{c}, Fill::positive});
    inputs.push_back(Input{{c}});
  }
  OpCase k{name, inputs,
           [affine, eps](const V& t) {
             Tensor rm = zeros({t[0].size(1)}, t[0].dtype(), t[0].device());
             Tensor rv = ones({t[0].size(1)}, t[0].dtype(), t[0].device());
             return batch_norm(t[0], rm, rv, affine ? t[1] : Tensor(), affine ? t[2] : Tensor(), true, 0.1, eps);
           },
           [affine, eps](const R& r) {
             return ref_batch_norm(r[0], nullptr, nullptr, affine ? &r[1] : nullptr, affine ? &r[2] : nullptr, true, eps);
           }};
  // Normalizing divides by a batch standard deviation: finite differences in f64 need a small
  // step, and the f32 forward agrees to a few ulps of the normalized values.
  k.atol = 2e-5;
  k.rtol = 2e-5;
  return k;
}

// Eval: inputs x, running mean, running var (not differentiated), weight, bias.
OpCase eval_case(const std::string& name, Input x, bool affine) {
  const int64_t c = x.shape[1];
  Input rm{{c}}, rv{{c}, Fill::positive};
  rm.differentiable = false;
  rv.differentiable = false;
  std::vector<Input> inputs{x, rm, rv};
  if (affine) {
    inputs.push_back(Input{{c}, Fill::positive});
    inputs.push_back(Input{{c}});
  }
  return {name, inputs,
          [affine](const V& t) {
            return batch_norm(t[0], t[1], t[2], affine ? t[3] : Tensor(), affine ? t[4] : Tensor(), false, 0.1, 1e-5);
          },
          [affine](const R& r) {
            return ref_batch_norm(r[0], &r[1], &r[2], affine ? &r[3] : nullptr, affine ? &r[4] : nullptr, false, 1e-5);
          }};
}

}  // namespace

NN_OP_CASES(batch_norm) {
  return {
      train_case("train_2d_affine", Input{{4, 3, 5, 6}}, true),
      train_case("train_2d_plain", Input{{3, 2, 4, 4}}, false),
      train_case("train_1d_nc", Input{{7, 5}}, true),
      train_case("train_1d_ncl", Input{{3, 4, 6}}, true),
      train_case("train_transposed_input", Input{{2, 3, 5, 5}, Fill::normal, Layout::transposed}, true),
      train_case("train_strided_input_eps", Input{{2, 3, 4, 6}, Fill::normal, Layout::strided}, true, 1e-3),
      eval_case("eval_2d_affine", Input{{2, 3, 4, 5}}, true),
      eval_case("eval_1d_plain", Input{{6, 4}}, false),
  };
}

namespace {

TEST(BatchNormOp, RunningStatisticsFollowMomentumAndTheUnbiasedVariance) {
  Generator gen(5);
  Tensor x = randn({4, 2, 3, 3}, gen);
  Tensor rm = tensor({0.5f, -0.25f}), rv = tensor({2.0f, 0.5f});
  batch_norm(x, rm, rv, Tensor(), Tensor(), true, 0.3, 1e-5);
  const std::vector<float> xv = x.to_vector<float>();
  const int64_t m = 4 * 9;
  const std::vector<float> rm0 = {0.5f, -0.25f}, rv0 = {2.0f, 0.5f};
  for (int64_t c = 0; c < 2; ++c) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 9; ++j) mean += xv[(i * 2 + c) * 9 + j];
    mean /= m;
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 9; ++j) var += std::pow(xv[(i * 2 + c) * 9 + j] - mean, 2);
    var /= m - 1;  // unbiased
    EXPECT_NEAR(rm.to_vector<float>()[c], 0.7 * rm0[c] + 0.3 * mean, 1e-6) << c;
    EXPECT_NEAR(rv.to_vector<float>()[c], 0.7 * rv0[c] + 0.3 * var, 1e-5) << c;
  }
}

TEST(BatchNormOp, OneValuePerChannelInTrainingIsAnError) {
  try {
    batch_norm(ones({1, 3}), zeros({3}), ones({3}), Tensor(), Tensor(), true);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("more than 1 value per channel"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(batch_norm(ones({1, 3}), zeros({3}), ones({3}), Tensor(), Tensor(), false));  // eval is fine
  EXPECT_THROW(batch_norm(ones({2, 3}), zeros({4}), ones({4}), Tensor(), Tensor(), true), Error);
  EXPECT_THROW(batch_norm(ones({2, 3}), Tensor(), Tensor(), Tensor(), Tensor(), false), Error);
}

TEST(BatchNormModule, TorchvisionNamesAndTheTrainEvalSwitch) {
  BatchNorm2d bn(3);
  std::vector<std::string> names;
  for (const auto& [name, t] : bn.state_dict()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}));
  EXPECT_EQ(bn.num_batches_tracked().dtype(), DType::i64);
  EXPECT_EQ(bn.parameters().size(), 2u);
  Generator gen(7);
  Tensor x = add(mul(randn({5, 3, 4, 4}, gen), 2.0), 3.0);
  Tensor y_train = bn(x);
  EXPECT_EQ(bn.num_batches_tracked().to_vector<int64_t>(), std::vector<int64_t>{1});
  // Training output: each channel has mean 0 and (biased) variance 1.
  Tensor m = mean(y_train, {0, 2, 3});
  for (float v : m.to_vector<float>()) EXPECT_NEAR(v, 0.0f, 1e-5);
  const std::vector<float> running = bn.running_mean().to_vector<float>();
  bn.eval();
  Tensor y_eval = bn(x);
  EXPECT_EQ(bn.num_batches_tracked().to_vector<int64_t>(), std::vector<int64_t>{1});
  EXPECT_EQ(bn.running_mean().to_vector<float>(), running);  // eval does not update
  EXPECT_NE(y_eval.to_vector<float>(), y_train.to_vector<float>());
  bn.train();
  {
    EvalModeGuard eval;  // eval semantics without changing the flag
    EXPECT_EQ(bn(x).to_vector<float>(), y_eval.to_vector<float>());
  }
  EXPECT_TRUE(bn.is_training());
  EXPECT_THROW(bn(ones({5, 4, 2, 2})), Error);  // 4 channels
  EXPECT_THROW(bn(ones({5, 3})), Error);        // BatchNorm2d wants 4 dims
  BatchNorm1d bn1(3);
  EXPECT_EQ(bn1(randn({4, 3}, gen)).shape(), (Shape{4, 3}));
  EXPECT_EQ(bn1(randn({4, 3, 5}, gen)).shape(), (Shape{4, 3, 5}));
}

TEST(BatchNormModule, FoldingIntoTheConvolutionKeepsTheOutput) {
  Generator gen(9);
  auto conv = std::make_shared<Conv2d>(3, 4, 3, 1, 1, true, gen);
  auto bn = std::make_shared<BatchNorm2d>(4);
  Sequential net{conv, bn, std::make_shared<ReLU>(), std::make_shared<Conv2d>(4, 2, 1, 1, 0, false, gen),
                 std::make_shared<BatchNorm2d>(2)};
  // Give the batch norms non-trivial statistics and affine parameters.
  net.train();
  for (int k = 0; k < 3; ++k) net(randn({4, 3, 6, 6}, gen));
  {
    NoGradGuard g;
    for (auto& [name, p] : net.named_parameters())
      if (name.find(".weight") != std::string::npos && p.dim() == 1) p.copy_(uniform(p.shape(), 0.5, 1.5, gen));
  }
  net.eval();
  NoGradGuard g;
  Tensor x = randn({2, 3, 6, 6}, gen);
  const std::vector<float> before = net(x).to_vector<float>();
  EXPECT_EQ(fold_batch_norms(net), 2);
  EXPECT_EQ(net[1]->name(), "Identity");
  EXPECT_EQ(net[4]->name(), "Identity");
  ASSERT_TRUE(std::dynamic_pointer_cast<Conv2d>(net[3])->bias().defined());  // a bias was added
  const std::vector<float> after = net(x).to_vector<float>();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) EXPECT_NEAR(after[i], before[i], 1e-5 * (1 + std::fabs(before[i]))) << i;
  EXPECT_EQ(fold_batch_norms(net), 0);  // nothing left
  // Conv, Identity, ReLU runs as one fused convolution; a range that stops at the Identity gets the
  // convolution's own output, and the fused result is its ReLU.
  const std::vector<float> conv_out = forward_to(net, x, "1").to_vector<float>();
  const std::vector<float> fused = forward_to(net, x, "2").to_vector<float>();
  ASSERT_EQ(conv_out.size(), fused.size());
  int negative = 0;
  for (size_t i = 0; i < fused.size(); ++i) {
    EXPECT_NEAR(fused[i], std::max(conv_out[i], 0.0f), 1e-6f * (1 + std::fabs(conv_out[i]))) << i;
    negative += conv_out[i] < 0;
  }
  EXPECT_GT(negative, 0);
  // Only in eval mode.
  net.train();
  EXPECT_THROW(fold_batch_norms(net), Error);
}

}  // namespace
}  // namespace nn::test
