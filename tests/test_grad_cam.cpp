// Grad-CAM (nn/explain.h) on small random VGG11s (width 1/16, 64x64 inputs): shapes, range,
// target selection, no mutation of the model (no parameter .grad, no gradient accumulator, the
// training flag kept), determinism and concurrent calls, the bilinear upsampling by hand, the
// colour overlay through PNG; and (suite GradCamGolden, label golden) against a PyTorch Grad-CAM
// with forward/backward hooks on the same weights (tests/golden/grad_cam_reference.py).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <nlohmann/json.hpp>
#include <nn/autograd.h>
#include <nn/data/image.h>
#include <nn/explain.h>
#include <nn/io/safetensors.h>
#include <nn/models/vgg.h>
#include <nn/nn.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "scratch_dir.h"

namespace {

using nn::Tensor;
namespace ex = nn::explain;

std::shared_ptr<nn::models::VGG> small_vgg(int64_t num_classes, uint64_t seed) {
  nn::models::VGGOptions o;
  o.depth = 11;
  o.num_classes = num_classes;
  o.width_multiplier = 1.0 / 16;
  o.input_size = 64;
  nn::Generator gen(seed);
  auto model = std::make_shared<nn::models::VGG>(o, gen);
  // Non-zero biases, so that the logits are not all tiny and the maps are not degenerate.
  nn::Generator bias_gen(seed + 1000);
  for (auto& [name, p] : model->named_parameters())
    if (name.find("bias") != std::string::npos) {
      nn::NoGradGuard g;
      p.copy_(nn::uniform(p.shape(), -0.1, 0.1, bias_gen));
    }
  model->eval();
  return model;
}

Tensor random_input(uint64_t seed) {
  nn::Generator gen(seed);
  return nn::randn({1, 3, 64, 64}, gen);
}

Tensor logits_of(nn::models::VGG& model, const Tensor& x) {
  nn::NoGradGuard g;
  return model.forward(x);
}

bool identical(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return false;
  std::vector<float> u = a.to_vector<float>(), v = b.to_vector<float>();
  return std::memcmp(u.data(), v.data(), u.size() * sizeof(float)) == 0;
}

TEST(GradCam, HeatmapShapeRangeAndMax) {
  auto model = small_vgg(3, 1);
  Tensor x = random_input(2);
  const std::string layer = nn::models::vgg_cam_layer(*model);
  EXPECT_EQ(layer, "features.19");  // VGG11: the ReLU before the last pool (20)
  int nonzero = 0;
  for (int64_t t = 0; t < 3; ++t) {
    ex::GradCam r = ex::grad_cam(*model, x, layer, t);
    EXPECT_EQ(r.target_class, t);
    EXPECT_EQ(r.layer, "features.19");
    ASSERT_EQ(r.heatmap.shape(), (nn::Shape{64, 64}));
    ASSERT_EQ(r.activations_cam.shape(), (nn::Shape{4, 4}));
    std::vector<float> h = r.heatmap.to_vector<float>();
    for (float v : h) ASSERT_TRUE(v >= 0.0f && v <= 1.0f) << v;
    const float mx = *std::max_element(h.begin(), h.end());
    std::vector<float> c = r.activations_cam.to_vector<float>();
    for (float v : c) ASSERT_GE(v, 0.0f);
    if (*std::max_element(c.begin(), c.end()) > 0) {
      EXPECT_EQ(mx, 1.0f);
      ++nonzero;
    } else {
      EXPECT_EQ(mx, 0.0f);
    }
  }
  EXPECT_GE(nonzero, 1);
}

TEST(GradCam, ArgmaxTargetAndLogit) {
  for (int64_t k : {3, 1}) {
    auto model = small_vgg(k, 3);
    Tensor x = random_input(4);
    std::vector<float> logits = logits_of(*model, x).to_vector<float>();
    const std::string layer = nn::models::vgg_cam_layer(*model);
    ex::GradCam r = ex::grad_cam(*model, x, layer, -1);
    const int64_t argmax = std::max_element(logits.begin(), logits.end()) - logits.begin();
    EXPECT_EQ(r.target_class, argmax) << "k=" << k;
    EXPECT_NEAR(r.logit, logits[static_cast<size_t>(argmax)], 1e-4 * (1 + std::fabs(logits[argmax])));
    EXPECT_THROW(ex::grad_cam(*model, x, layer, k), nn::Error);
    EXPECT_THROW(ex::grad_cam(*model, x, layer, -2), nn::Error);
  }
}

TEST(GradCam, LeavesTheModelUntouched) {
  auto model = small_vgg(3, 5);
  Tensor x = random_input(6);
  std::vector<std::vector<float>> before;
  for (const Tensor& p : model->parameters()) before.push_back(p.to_vector<float>());
  const std::string layer = nn::models::vgg_cam_layer(*model);
  ex::GradCam eval_result = ex::grad_cam(*model, x, layer, 1);
  model->train();  // the result uses eval semantics (Dropout off) and keeps the mode
  ex::GradCam train_result = ex::grad_cam(*model, x, layer, 1);
  EXPECT_TRUE(model->is_training());
  EXPECT_TRUE(identical(eval_result.heatmap, train_result.heatmap));
  size_t i = 0;
  for (const Tensor& p : model->parameters()) {
    EXPECT_FALSE(p.grad().defined());
    EXPECT_EQ(p.impl()->grad_accumulator, nullptr);  // not even an accumulator was attached
    EXPECT_TRUE(p.requires_grad());
    EXPECT_EQ(p.to_vector<float>(), before[i++]);
  }
  EXPECT_FALSE(x.requires_grad());
}

TEST(GradCam, DeterministicAndConcurrent) {
  auto model = small_vgg(3, 7);
  Tensor x = random_input(8);
  const std::string layer = nn::models::vgg_cam_layer(*model);
  ex::GradCam a = ex::grad_cam(*model, x, layer), b = ex::grad_cam(*model, x, layer);
  EXPECT_TRUE(identical(a.heatmap, b.heatmap));
  EXPECT_TRUE(identical(a.activations_cam, b.activations_cam));
  EXPECT_EQ(a.logit, b.logit);
  ex::GradCam r[2];
  std::thread t0([&] { r[0] = ex::grad_cam(*model, x, layer); });
  std::thread t1([&] { r[1] = ex::grad_cam(*model, x, layer); });
  t0.join();
  t1.join();
  for (const ex::GradCam& c : r) EXPECT_TRUE(identical(c.heatmap, a.heatmap));
  for (const Tensor& p : model->parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(GradCam, ExplicitLayerAndErrors) {
  auto model = small_vgg(3, 9);
  Tensor x = random_input(10);
  ex::GradCam r = ex::grad_cam(*model, x, "features.14", 0);  // the ReLU before the fourth pool: 8x8
  EXPECT_EQ(r.activations_cam.shape(), (nn::Shape{8, 8}));
  EXPECT_EQ(r.heatmap.shape(), (nn::Shape{64, 64}));
  // After the last max-pool (2x2), a layer that gives no (1, C, h, w) map, the last layer, and a
  // name the model does not have.
  EXPECT_EQ(ex::grad_cam(*model, x, "features.20", 0).activations_cam.shape(), (nn::Shape{2, 2}));
  EXPECT_THROW(ex::grad_cam(*model, x, "classifier.0", 0), nn::Error);
  EXPECT_THROW(ex::grad_cam(*model, x, "classifier.6", 0), nn::Error);
  EXPECT_THROW(ex::grad_cam(*model, x, "features.99", 0), nn::Error);
  EXPECT_THROW(ex::grad_cam(*model, nn::zeros({2, 3, 64, 64}), "features.14", 0), nn::Error);
  {
    nn::NoGradGuard g;
    EXPECT_THROW(ex::grad_cam(*model, x, "features.14", 0), nn::Error);
  }
}

TEST(GradCam, BilinearUpsamplingByHand) {
  // map[y][x] = 2y + x; 2x2 -> 4x4 with PyTorch's align_corners=False: source coordinates
  // -0.25 (clamped to 0), 0.25, 0.75, 1.25 (upper neighbour clamped) -> per axis 0, .25, .75, 1.
  Tensor m = nn::tensor({0, 1, 2, 3}, {2, 2});
  Tensor up = ex::upsample_bilinear(m, 4, 4);
  const float r[4] = {0.0f, 0.25f, 0.75f, 1.0f};
  for (int64_t y = 0; y < 4; ++y)
    for (int64_t x = 0; x < 4; ++x) EXPECT_FLOAT_EQ(up.at({y, x}), 2 * r[y] + r[x]) << y << "," << x;
  // 4 -> 2 (no antialiasing): source 0.5 and 2.5, the mean of each pair.
  Tensor row = ex::upsample_bilinear(nn::tensor({1, 3, 5, 9}, {1, 4}), 1, 2);
  EXPECT_FLOAT_EQ(row.at({0, 0}), 2.0f);
  EXPECT_FLOAT_EQ(row.at({0, 1}), 7.0f);
  // 1x1 -> constant.
  Tensor c = ex::upsample_bilinear(nn::tensor({0.5f}, {1, 1}), 3, 5);
  for (float v : c.to_vector<float>()) EXPECT_EQ(v, 0.5f);
}

TEST(GradCam, JetColours) {
  float c[3];
  ex::jet_color(0.0, c);
  EXPECT_FLOAT_EQ(c[0], 0.0f);
  EXPECT_FLOAT_EQ(c[1], 0.0f);
  EXPECT_FLOAT_EQ(c[2], 0.5f);
  ex::jet_color(1.0, c);
  EXPECT_FLOAT_EQ(c[0], 0.5f);
  EXPECT_FLOAT_EQ(c[1], 0.0f);
  EXPECT_FLOAT_EQ(c[2], 0.0f);
  ex::jet_color(0.5, c);
  EXPECT_NEAR(c[0], 0.15 / 0.31, 1e-6);
  EXPECT_FLOAT_EQ(c[1], 1.0f);
  EXPECT_NEAR(c[2], 1 - 0.16 / 0.31, 1e-6);
}

TEST(GradCam, ColorizeBlendEncodesToPng) {
  auto model = small_vgg(3, 11);
  ex::GradCam r = ex::grad_cam(*model, random_input(12), nn::models::vgg_cam_layer(*model));
  nn::data::Image gray;  // an X-ray-like gray image of another size
  gray.height = 100;
  gray.width = 80;
  gray.channels = 1;
  gray.pixels.assign(100 * 80, 0.5f);
  nn::data::Image overlay = ex::colorize_blend(r.heatmap, gray, 0.4);
  EXPECT_EQ(overlay.height, 100);
  EXPECT_EQ(overlay.width, 80);
  EXPECT_EQ(overlay.channels, 3);
  std::vector<uint8_t> png = nn::data::encode_png(overlay);
  nn::data::Image decoded = nn::data::decode_image(png.data(), png.size(), "overlay.png");
  EXPECT_EQ(decoded.height, 100);
  EXPECT_EQ(decoded.width, 80);
  EXPECT_EQ(decoded.channels, 3);
  for (size_t i = 0; i < overlay.pixels.size(); ++i)
    ASSERT_NEAR(decoded.pixels[i], overlay.pixels[i], 0.5 / 255 + 1e-6);
  // A zero heatmap: jet(0) = (0, 0, 0.5) over gray 0.5 -> (0.3, 0.3, 0.5).
  nn::data::Image flat = ex::colorize_blend(nn::zeros({4, 4}), gray, 0.4);
  EXPECT_NEAR(flat.pixels[0], 0.3f, 1e-6);
  EXPECT_NEAR(flat.pixels[1], 0.3f, 1e-6);
  EXPECT_NEAR(flat.pixels[2], 0.5f, 1e-6);
  EXPECT_THROW(ex::colorize_blend(r.heatmap, gray, 1.5), nn::Error);
}

// ---- golden: PyTorch Grad-CAM with hooks on the same weights ----

TEST(GradCamGolden, MatchesPyTorchHooks) {
  ScratchDir dir("grad_cam_golden");
  struct Case {
    std::shared_ptr<nn::models::VGG> model;
    std::string prefix;
    std::vector<int64_t> targets;
    size_t layer;
  };
  std::vector<Case> cases = {{small_vgg(3, 21), "m0.", {0, 1, 2}, 19},
                             {small_vgg(1, 22), "m1.", {0}, 19},
                             {small_vgg(3, 23), "m2.", {2}, 14}};
  Tensor x = random_input(24);
  std::vector<std::pair<std::string, Tensor>> tensors{{"input", x}};
  nlohmann::json meta = nlohmann::json::array();
  for (const Case& c : cases) {
    for (const auto& [name, t] : c.model->state_dict()) tensors.push_back({c.prefix + name, t});
    nlohmann::json features = nlohmann::json::array(), classifier = nlohmann::json::array();
    for (size_t i = 0; i < c.model->features()->size(); ++i) features.push_back((*c.model->features())[i]->name());
    auto head = std::dynamic_pointer_cast<nn::Sequential>(c.model->classifier());
    ASSERT_NE(head, nullptr);
    for (size_t i = 0; i < head->size(); ++i) classifier.push_back((*head)[i]->name());
    meta.push_back({{"prefix", c.prefix},
                    {"features", features},
                    {"classifier", classifier},
                    {"pooled", c.model->pooled_size()},
                    {"layer", c.layer},
                    {"targets", c.targets}});
  }
  const std::string in = dir.file("in.safetensors"), out = dir.file("out.safetensors");
  nn::io::save_safetensors(in, tensors, {{"models", meta.dump()}});
  const std::string cmd =
      std::string("/usr/bin/python3 ") + NN_SOURCE_DIR "/tests/golden/grad_cam_reference.py " + in + " " + out;
  // One Python start (importing torch takes seconds): the script exits 77 when torch or numpy is
  // missing, the shell 127 when there is no /usr/bin/python3.
  const int status = std::system(cmd.c_str());
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 77 || code == 127) GTEST_SKIP() << "/usr/bin/python3 cannot import torch (install python3-torch)";
  ASSERT_EQ(code, 0) << cmd;
  nn::io::SafetensorsFile ref = nn::io::load_safetensors(out);
  for (const Case& c : cases)
    for (int64_t t : c.targets) {
      const std::string key = c.prefix + std::to_string(t);
      ex::GradCam r = ex::grad_cam(*c.model, x, "features." + std::to_string(c.layer), t);
      const Tensor& want = ref.at("heatmap." + key);
      ASSERT_EQ(r.heatmap.shape(), want.shape()) << key;
      std::vector<float> a = r.heatmap.to_vector<float>(), b = want.to_vector<float>();
      double worst = 0, largest = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]));
        largest = std::max(largest, static_cast<double>(b[i]));
      }
      EXPECT_LE(worst, 1e-4) << key;
      EXPECT_EQ(largest, 1.0) << key << ": the reference map is all zeros (a degenerate case)";
      std::vector<float> ca = r.activations_cam.to_vector<float>(), cb = ref.at("cam." + key).to_vector<float>();
      ASSERT_EQ(ca.size(), cb.size()) << key;
      double cam_scale = 0, cam_worst = 0;
      for (size_t i = 0; i < ca.size(); ++i) {
        cam_scale = std::max(cam_scale, std::fabs(static_cast<double>(cb[i])));
        cam_worst = std::max(cam_worst, std::fabs(static_cast<double>(ca[i]) - cb[i]));
      }
      EXPECT_LE(cam_worst, 1e-4 * cam_scale) << key;
      EXPECT_NEAR(r.logit, ref.at("logit." + key).item<double>(), 1e-4 * (1 + std::fabs(r.logit))) << key;
      std::printf("[ compare  ] Grad-CAM %s: heatmap max |difference| %.3g, cam %.3g of its max %.4g\n", key.c_str(),
                  worst, cam_scale > 0 ? cam_worst / cam_scale : 0.0, cam_scale);
    }
}

}  // namespace

namespace {

TEST(GradCam, BatchEqualsOneByOne) {
  auto model = small_vgg(3, 31);
  const std::string layer = nn::models::vgg_cam_layer(*model);
  nn::Generator gen(32);
  Tensor x = nn::randn({3, 3, 64, 64}, gen);
  std::vector<ex::GradCam> batch = ex::grad_cam_batch(*model, x, layer, {2, -1, 0});
  ASSERT_EQ(batch.size(), 3u);
  const int64_t targets[] = {2, -1, 0};
  for (int64_t i = 0; i < 3; ++i) {
    ex::GradCam one = ex::grad_cam(*model, x.narrow(0, i, 1).contiguous(), layer, targets[i]);
    EXPECT_EQ(batch[i].target_class, one.target_class) << i;
    EXPECT_NEAR(batch[i].logit, one.logit, 1e-5 * (1 + std::fabs(one.logit))) << i;
    std::vector<float> a = batch[i].heatmap.to_vector<float>(), b = one.heatmap.to_vector<float>();
    ASSERT_EQ(a.size(), b.size());
    double worst = 0;
    for (size_t j = 0; j < a.size(); ++j) worst = std::max(worst, std::fabs(static_cast<double>(a[j]) - b[j]));
    EXPECT_LT(worst, 1e-5) << i;
  }
  EXPECT_THROW(ex::grad_cam_batch(*model, x, layer, {0, 1}), nn::Error);  // 2 targets for 3 images
  for (const Tensor& p : model->parameters()) EXPECT_FALSE(p.grad().defined());
}

}  // namespace
