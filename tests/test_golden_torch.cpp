// Golden comparisons with PyTorch (Debian's python3-torch, run at test time by
// tests/golden/torch_reference.py; skipped when /usr/bin/python3 cannot import torch): conv2d,
// pooling, linear, log_softmax, the losses (forward and backward) and SGD/Adam/AdamW steps, all in
// float32, agreeing within 1e-5 relative; batch norm (training, eval, running statistics over steps).
#include <gtest/gtest.h>
#include <nn/io/safetensors.h>
#include <nn/nn.h>
#include <nn/optim.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>

namespace {

using nn::Tensor;
using json = nlohmann::json;

const char* kPython = "/usr/bin/python3";

bool torch_available() {
  static const bool ok = std::system((std::string(kPython) + " -c 'import torch, numpy' >/dev/null 2>&1").c_str()) == 0;
  return ok;
}

struct GoldenCase {
  std::string name, op;
  json params;
  std::vector<Tensor> inputs;
  std::vector<bool> grad;
  std::function<Tensor(const std::vector<Tensor>&)> run;  // our side
};

class GoldenTorch : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch_available()) GTEST_SKIP() << kPython << " cannot import torch (install python3-torch)";
    dir_ = std::filesystem::temp_directory_path() /
           ("nn_golden_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Runs every case through PyTorch and compares outputs and input gradients with ours.
  void check(std::vector<GoldenCase> cases) {
    std::vector<std::pair<std::string, Tensor>> tensors;
    json meta = json::array();
    nn::Generator proj_gen(99);
    std::vector<Tensor> projections;
    std::vector<Tensor> ours;
    for (GoldenCase& c : cases) {
      json names = json::array();
      for (size_t k = 0; k < c.inputs.size(); ++k) {
        tensors.push_back({c.name + "." + std::to_string(k), c.inputs[k]});
        names.push_back(std::to_string(k));
        if (c.grad[k]) c.inputs[k].requires_grad_();
      }
      meta.push_back({{"name", c.name}, {"op", c.op}, {"params", c.params}, {"inputs", names}, {"grad", c.grad}});
      Tensor y = c.run(c.inputs);
      Tensor proj = nn::uniform(y.shape(), 0.5, 1.5, proj_gen);
      tensors.push_back({c.name + ".proj", proj});
      if (std::find(c.grad.begin(), c.grad.end(), true) != c.grad.end()) nn::sum(nn::mul(y, proj)).backward();
      ours.push_back(y);
    }
    std::string in = (dir_ / "in.safetensors").string(), out = (dir_ / "out.safetensors").string();
    nn::io::save_safetensors(in, tensors, {{"cases", meta.dump()}});
    std::string cmd = std::string(kPython) + " " + NN_SOURCE_DIR "/tests/golden/torch_reference.py " + in + " " + out;
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    nn::io::SafetensorsFile ref = nn::io::load_safetensors(out);
    for (size_t i = 0; i < cases.size(); ++i) {
      const GoldenCase& c = cases[i];
      expect_close(ours[i], ref.at(c.name + ".out"), c.name + " output");
      for (size_t k = 0; k < c.inputs.size(); ++k)
        if (c.grad[k]) expect_close(c.inputs[k].grad(), ref.at(c.name + ".grad." + std::to_string(k)),
                                    c.name + " gradient of input " + std::to_string(k));
    }
  }

  // Elementwise |ours - torch| <= 1e-5 * |torch| + 1e-5 * max|torch| (relative, with the
  // tensor's scale as the floor for elements that cancel to nearly zero).
  static void expect_close(const Tensor& got, const Tensor& want, const std::string& what) {
    ASSERT_TRUE(got.defined()) << what;
    ASSERT_EQ(got.shape(), want.shape()) << what;
    std::vector<double> a = got.to_vector<double>(), b = want.to_vector<double>();
    double scale = 0;
    for (double v : b) scale = std::max(scale, std::abs(v));
    ASSERT_GT(scale, 0) << what << ": the reference is all zeros";
    int bad = 0;
    for (size_t i = 0; i < a.size(); ++i)
      if (!(std::abs(a[i] - b[i]) <= 1e-5 * std::abs(b[i]) + 1e-5 * scale) && bad++ < 5)
        ADD_FAILURE() << what << ": element " << i << " ours " << a[i] << " torch " << b[i];
  }

  std::filesystem::path dir_;
};

Tensor rnd(const nn::Shape& s, uint64_t seed, double lo = -1, double hi = 1) {
  nn::Generator g(seed);
  return nn::uniform(s, lo, hi, g);
}

TEST_F(GoldenTorch, Conv2dAndPoolingMatchPyTorch) {
  auto conv = [](const std::string& name, nn::Shape x, nn::Shape w, bool bias, int64_t stride, int64_t pad) {
    GoldenCase c{name, "conv2d", {{"stride", stride}, {"padding", pad}}, {rnd(x, 1), rnd(w, 2)}, {true, true}, nullptr};
    if (bias) {
      c.inputs.push_back(rnd({w[0]}, 3));
      c.grad.push_back(true);
    }
    c.run = [stride, pad](const std::vector<Tensor>& t) {
      nn::Conv2dOptions o;
      o.stride = {stride, stride};
      o.padding = {pad, pad};
      return nn::conv2d(t[0], t[1], t.size() > 2 ? t[2] : Tensor(), o);
    };
    return c;
  };
  auto pool = [](const std::string& name, const std::string& op, nn::Shape x, int64_t k, int64_t s, int64_t p,
                 bool ceil, bool include_pad) {
    GoldenCase c{name, op, {{"kernel", k}, {"stride", s}, {"padding", p}, {"ceil_mode", ceil}, {"count_include_pad", include_pad}},
                 {rnd(x, 4)}, {true}, nullptr};
    c.run = [=](const std::vector<Tensor>& t) {
      nn::Pool2dOptions o;
      o.kernel = {k, k};
      o.stride = {s, s};
      o.padding = {p, p};
      o.ceil_mode = ceil;
      o.count_include_pad = include_pad;
      return op == "max_pool2d" ? nn::max_pool2d(t[0], o) : nn::avg_pool2d(t[0], o);
    };
    return c;
  };
  GoldenCase adaptive{"adaptive", "adaptive_avg_pool2d", {{"size", {3, 2}}}, {rnd({2, 3, 8, 7}, 5)}, {true},
                      [](const std::vector<Tensor>& t) { return nn::adaptive_avg_pool2d(t[0], {3, 2}); }};
  check({conv("conv3x3_pad1_bias", {2, 3, 9, 8}, {4, 3, 3, 3}, true, 1, 1),
         conv("conv5x5_stride2_nobias", {1, 2, 11, 12}, {3, 2, 5, 5}, false, 2, 2),
         conv("conv1x1", {2, 8, 5, 5}, {6, 8, 1, 1}, true, 1, 0),
         conv("conv_vgg_like", {1, 16, 14, 14}, {32, 16, 3, 3}, true, 1, 1),
         pool("maxpool2x2", "max_pool2d", {2, 3, 8, 8}, 2, 2, 0, false, true),
         pool("maxpool3x3_s2_p1_ceil", "max_pool2d", {1, 2, 9, 10}, 3, 2, 1, true, true),
         pool("avgpool3x3_s2_p1", "avg_pool2d", {1, 2, 9, 9}, 3, 2, 1, false, true),
         pool("avgpool3x3_s2_p1_exclude_pad_ceil", "avg_pool2d", {1, 2, 8, 9}, 3, 2, 1, true, false),
         adaptive});
}

TEST_F(GoldenTorch, LinearSoftmaxAndLossesMatchPyTorch) {
  Tensor labels = nn::from_vector(std::vector<int64_t>{2, 0, 3, 1, 3, 2}, {6});
  Tensor targets01 = nn::from_vector(std::vector<float>{1, 0, 1, 1, 0, 0, 1, 0}, {8, 1});
  GoldenCase lin{"linear", "linear", json::object(), {rnd({5, 7}, 10), rnd({3, 7}, 11), rnd({3}, 12)}, {true, true, true},
                 [](const std::vector<Tensor>& t) { return nn::linear(t[0], t[1], t[2]); }};
  GoldenCase lsm{"log_softmax", "log_softmax", {{"dim", 1}}, {rnd({4, 6}, 13, -3, 3)}, {true},
                 [](const std::vector<Tensor>& t) { return nn::log_softmax(t[0], 1); }};
  GoldenCase bce{"bce_weighted", "bce_with_logits", {{"reduction", "mean"}, {"weight", true}, {"pos_weight", true}},
                 {rnd({8, 1}, 14, -4, 4), targets01, rnd({8, 1}, 15, 0.5, 2), nn::tensor({2.9f})}, {true, false, false, false},
                 [](const std::vector<Tensor>& t) {
                   nn::BceWithLogitsOptions o;
                   o.weight = t[2];
                   o.pos_weight = t[3];
                   return nn::binary_cross_entropy_with_logits(t[0], t[1], o);
                 }};
  GoldenCase bce_big{"bce_extreme_logits", "bce_with_logits", {{"reduction", "none"}},
                     {nn::tensor({1000, -1000, 30, -30, 0.5f}, {5, 1}), nn::tensor({0, 1, 1, 0, 1}, {5, 1})},
                     {true, false},
                     [](const std::vector<Tensor>& t) {
                       nn::BceWithLogitsOptions o;
                       o.reduction = nn::Reduction::none;
                       return nn::binary_cross_entropy_with_logits(t[0], t[1], o);
                     }};
  GoldenCase ce{"cross_entropy_weighted", "cross_entropy", {{"reduction", "mean"}, {"weight", true}},
                {rnd({6, 4}, 16, -2, 2), labels, nn::tensor({1.0f, 2.5f, 0.5f, 1.5f})}, {true, false, false},
                [](const std::vector<Tensor>& t) {
                  nn::CrossEntropyOptions o;
                  o.weight = t[2];
                  return nn::cross_entropy(t[0], t[1], o);
                }};
  GoldenCase mse{"mse_sum", "mse_loss", {{"reduction", "sum"}}, {rnd({3, 4}, 17), rnd({3, 4}, 18)}, {true, true},
                 [](const std::vector<Tensor>& t) { return nn::mse_loss(t[0], t[1], nn::Reduction::sum); }};
  check({lin, lsm, bce, bce_big, ce, mse});
}

TEST_F(GoldenTorch, BatchNormMatchesPyTorch) {
  auto bn = [](const std::string& name, nn::Shape x, bool training, bool affine, uint64_t seed) {
    const int64_t c = x[1];
    GoldenCase k{name, "batch_norm", {{"training", training}, {"momentum", 0.1}, {"eps", 1e-5}},
                 {nn::add(nn::mul(rnd(x, seed), 3.0), 1.5), rnd({c}, seed + 1), rnd({c}, seed + 2, 0.5, 2.0)},
                 {true, false, false}, nullptr};
    if (affine) {
      k.inputs.push_back(rnd({c}, seed + 3, 0.5, 1.5));
      k.inputs.push_back(rnd({c}, seed + 4));
      k.grad.push_back(true);
      k.grad.push_back(true);
    }
    k.run = [training, affine](const std::vector<Tensor>& t) {
      Tensor rm = t[1].detach().clone(), rv = t[2].detach().clone();  // training updates them
      return nn::batch_norm(t[0], rm, rv, affine ? t[3] : Tensor(), affine ? t[4] : Tensor(), training, 0.1, 1e-5);
    };
    return k;
  };
  // Running statistics over several training steps (momentum 0.2), then eval on another batch.
  GoldenCase steps{"batch_norm_steps", "batch_norm_module_steps", {{"momentum", 0.2}},
                   {nn::add(rnd({4, 3, 2, 5, 5}, 40, -2, 2), 0.7), rnd({2, 2, 5, 5}, 41)}, {false, false},
                   [](const std::vector<Tensor>& t) {
                     nn::BatchNorm2d module(2, 1e-5, 0.2);
                     module.train();
                     for (int64_t k = 0; k < t[0].size(0); ++k) module(t[0].select(0, k));
                     module.eval();
                     nn::NoGradGuard g;
                     Tensor y = module(t[1]);
                     return nn::concat({module.running_mean(), module.running_var(),
                                        module.num_batches_tracked().to(nn::f32).reshape({1}), y.reshape({-1})},
                                       0);
                   }};
  check({bn("bn2d_train_affine", {4, 3, 5, 6}, true, true, 30), bn("bn2d_train_plain", {2, 4, 3, 3}, true, false, 31),
         bn("bn1d_train_affine", {8, 5}, true, true, 32), bn("bn2d_eval_affine", {3, 3, 4, 4}, false, true, 33),
         bn("bn1d_eval_ncl", {3, 4, 7}, false, true, 34), steps});
}

TEST_F(GoldenTorch, OptimizerStepsMatchPyTorch) {
  const int steps = 5;
  Tensor param = rnd({4, 3}, 20);
  Tensor grads = rnd({steps, 4, 3}, 21);
  auto sgd = [&](const std::string& name, double momentum, double dampening, double wd, bool nesterov) {
    GoldenCase c{name, "sgd", {{"lr", 0.1}, {"momentum", momentum}, {"dampening", dampening}, {"weight_decay", wd}, {"nesterov", nesterov}},
                 {param, grads}, {false, false}, nullptr};
    c.run = [=](const std::vector<Tensor>& t) {
      Tensor p = t[0].clone().requires_grad_();
      nn::optim::SgdOptions o;
      o.momentum = momentum;
      o.dampening = dampening;
      o.weight_decay = wd;
      o.nesterov = nesterov;
      nn::optim::SGD opt({p}, 0.1, o);
      for (int s = 0; s < steps; ++s) {
        p.set_grad(t[1].select(0, s).clone());
        opt.step();
      }
      return p.detach();
    };
    return c;
  };
  auto adam = [&](const std::string& name, bool decoupled, double wd) {
    GoldenCase c{name, decoupled ? "adamw" : "adam",
                 {{"lr", 0.01}, {"beta1", 0.8}, {"beta2", 0.95}, {"eps", 1e-6}, {"weight_decay", wd}},
                 {param, grads}, {false, false}, nullptr};
    c.run = [=](const std::vector<Tensor>& t) {
      Tensor p = t[0].clone().requires_grad_();
      nn::optim::AdamOptions o;
      o.beta1 = 0.8;
      o.beta2 = 0.95;
      o.eps = 1e-6;
      o.weight_decay = wd;
      std::unique_ptr<nn::optim::Optimizer> opt;
      if (decoupled) opt = std::make_unique<nn::optim::AdamW>(std::vector<Tensor>{p}, 0.01, o);
      else opt = std::make_unique<nn::optim::Adam>(std::vector<Tensor>{p}, 0.01, o);
      for (int s = 0; s < steps; ++s) {
        p.set_grad(t[1].select(0, s).clone());
        opt->step();
      }
      return p.detach();
    };
    return c;
  };
  check({sgd("sgd_plain", 0, 0, 0, false), sgd("sgd_momentum_dampening_wd", 0.9, 0.1, 0.01, false),
         sgd("sgd_nesterov", 0.9, 0, 0.001, true), adam("adam_l2", false, 0.01), adam("adamw", true, 0.1)});
}

}  // namespace
