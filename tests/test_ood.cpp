// Out-of-distribution detection: nn::ood::MahalanobisDetector against a float64 reference written
// out here (means, pooled covariance, shrinkage, Gauss-Jordan inverse), nn::ood::quantile against
// numpy's values, and (with the pneumonia code) the gate of examples/pneumonia/common/ood_gate.h:
// its input checks on generated images and its round trip through a model file.
#include <gtest/gtest.h>
#include <nn/error.h>
#include <nn/generator.h>
#include <nn/named_layers.h>
#include <nn/ood.h>
#include <nn/tensor.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace {

using Matrix = std::vector<std::vector<double>>;

Matrix inverse(Matrix a) {  // Gauss-Jordan with partial pivoting
  const size_t n = a.size();
  Matrix inv(n, std::vector<double>(n, 0.0));
  for (size_t i = 0; i < n; ++i) inv[i][i] = 1.0;
  for (size_t col = 0; col < n; ++col) {
    size_t pivot = col;
    for (size_t r = col + 1; r < n; ++r)
      if (std::abs(a[r][col]) > std::abs(a[pivot][col])) pivot = r;
    std::swap(a[col], a[pivot]);
    std::swap(inv[col], inv[pivot]);
    const double p = a[col][col];
    for (size_t c = 0; c < n; ++c) a[col][c] /= p, inv[col][c] /= p;
    for (size_t r = 0; r < n; ++r)
      if (r != col) {
        const double f = a[r][col];
        for (size_t c = 0; c < n; ++c) a[r][c] -= f * a[col][c], inv[r][c] -= f * inv[col][c];
      }
  }
  return inv;
}

struct Data {
  std::vector<float> x;  // (n, d)
  std::vector<int64_t> labels;
  int64_t n, d;
};

Data make_data(int64_t n, int64_t d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  Data data{{}, {}, n, d};
  for (int64_t i = 0; i < n; ++i) {
    const int64_t label = i % 3 == 0 ? 1 : 0;
    data.labels.push_back(label);
    double shared = normal(rng);  // correlates the features
    for (int64_t j = 0; j < d; ++j)
      data.x.push_back(static_cast<float>((label ? 2.0 : -1.0) * (j % 2 ? 1 : -0.5) + 0.7 * shared +
                                          (0.3 + 0.2 * static_cast<double>(j)) * normal(rng)));
  }
  return data;
}

// The reference distances of `query` rows under a fit on `train`.
std::vector<double> reference_distances(const Data& train, const std::vector<float>& query, double shrinkage) {
  const int64_t n = train.n, d = train.d;
  Matrix mu(2, std::vector<double>(static_cast<size_t>(d), 0.0));
  int64_t count[2] = {0, 0};
  for (int64_t i = 0; i < n; ++i) {
    ++count[train.labels[i]];
    for (int64_t j = 0; j < d; ++j) mu[train.labels[i]][j] += train.x[i * d + j];
  }
  for (int c = 0; c < 2; ++c)
    for (double& v : mu[c]) v /= static_cast<double>(count[c]);
  Matrix cov(static_cast<size_t>(d), std::vector<double>(static_cast<size_t>(d), 0.0));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t a = 0; a < d; ++a)
      for (int64_t b = 0; b < d; ++b)
        cov[a][b] += (train.x[i * d + a] - mu[train.labels[i]][a]) * (train.x[i * d + b] - mu[train.labels[i]][b]);
  double trace = 0;
  for (int64_t a = 0; a < d; ++a) {
    for (int64_t b = 0; b < d; ++b) cov[a][b] /= static_cast<double>(n - 2);
    trace += cov[a][a];
  }
  for (int64_t a = 0; a < d; ++a) {
    for (int64_t b = 0; b < d; ++b) cov[a][b] *= 1.0 - shrinkage;
    cov[a][a] += shrinkage * trace / static_cast<double>(d);
  }
  const Matrix p = inverse(cov);
  std::vector<double> out;
  for (size_t q = 0; q < query.size() / static_cast<size_t>(d); ++q) {
    double best = std::numeric_limits<double>::infinity();
    for (int c = 0; c < 2; ++c) {
      double s = 0;
      for (int64_t a = 0; a < d; ++a)
        for (int64_t b = 0; b < d; ++b)
          s += (query[q * d + a] - mu[c][a]) * p[a][b] * (query[q * d + b] - mu[c][b]);
      best = std::min(best, s);
    }
    out.push_back(best);
  }
  return out;
}

TEST(Mahalanobis, MatchesFloat64Reference) {
  const Data train = make_data(240, 6, 11), test = make_data(30, 6, 12);
  for (double shrinkage : {0.0, 0.01, 0.3}) {
    auto det = nn::ood::MahalanobisDetector::fit(nn::from_vector(train.x, {train.n, train.d}), train.labels, 2, shrinkage);
    EXPECT_EQ(det.classes(), 2);
    EXPECT_EQ(det.dim(), 6);
    const std::vector<double> got = det.distances(nn::from_vector(test.x, {test.n, test.d}));
    const std::vector<double> want = reference_distances(train, test.x, shrinkage);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-9 * std::max(1.0, want[i])) << i;
  }
}

TEST(Mahalanobis, FarPointsScoreHigherAndStateRoundTrips) {
  const Data train = make_data(300, 4, 3);
  auto det = nn::ood::MahalanobisDetector::fit(nn::from_vector(train.x, {train.n, train.d}), train.labels, 2);
  const std::vector<double> in = det.distances(nn::from_vector(train.x, {train.n, train.d}));
  const double limit = nn::ood::quantile(in, 0.99);
  // A point far off along one feature, and a training point.
  std::vector<float> far = {20, 0, 0, 0};
  far.insert(far.end(), train.x.begin(), train.x.begin() + 4);
  const std::vector<double> out = det.distances(nn::from_vector(far, {2, 4}));
  EXPECT_GT(out[0], 10 * limit);
  EXPECT_DOUBLE_EQ(out[1], in[0]);
  nn::ood::MahalanobisDetector copy(det.means(), det.precision());
  EXPECT_EQ(copy.distances(nn::from_vector(far, {2, 4})), out);
  // Non-finite features are infinitely far.
  const std::vector<float> bad = {NAN, 0, 0, 0};
  EXPECT_TRUE(std::isinf(det.distances(nn::from_vector(bad, {1, 4}))[0]));
}

TEST(Mahalanobis, DeadFeatureStaysFinite) {
  Data train = make_data(100, 3, 5);
  for (int64_t i = 0; i < train.n; ++i) train.x[i * 3 + 2] = 0.0f;  // a ReLU channel that never fires
  auto det = nn::ood::MahalanobisDetector::fit(nn::from_vector(train.x, {train.n, 3}), train.labels, 2);
  const std::vector<float> q = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 1.0f};
  const std::vector<double> d = det.distances(nn::from_vector(q, {2, 3}));
  EXPECT_TRUE(std::isfinite(d[0]) && std::isfinite(d[1]));
  EXPECT_GT(d[1], d[0] + 10.0);  // firing the dead channel is far
}

TEST(Mahalanobis, RefusesBadInput) {
  const Data train = make_data(20, 3, 1);
  const nn::Tensor x = nn::from_vector(train.x, {train.n, 3});
  std::vector<int64_t> labels = train.labels;
  labels[0] = 2;
  EXPECT_THROW(nn::ood::MahalanobisDetector::fit(x, labels, 2), nn::Error);  // label out of range
  EXPECT_THROW(nn::ood::MahalanobisDetector::fit(x, std::vector<int64_t>(20, 0), 2), nn::Error);  // class 1 empty
  EXPECT_THROW(nn::ood::MahalanobisDetector::fit(x, std::vector<int64_t>(19, 0), 2), nn::Error);  // sizes
  EXPECT_THROW(nn::ood::MahalanobisDetector::fit(x, train.labels, 2, 1.0), nn::Error);          // shrinkage
  auto det = nn::ood::MahalanobisDetector::fit(x, train.labels, 2);
  EXPECT_THROW(det.distances(nn::from_vector(std::vector<float>{1, 2}, {1, 2})), nn::Error);  // feature count
  EXPECT_THROW(nn::ood::MahalanobisDetector(det.means(), nn::from_vector(std::vector<double>{1}, {1, 1})), nn::Error);
  EXPECT_THROW(nn::ood::MahalanobisDetector().distances(x), nn::Error);  // not fitted
}

TEST(Mahalanobis, QuantileIsNumpysLinear) {
  // numpy.quantile([3, 1, 4, 1, 5, 9, 2, 6], q) for q = 0, 0.25, 0.5, 0.9, 1.
  const std::vector<double> v = {3, 1, 4, 1, 5, 9, 2, 6};
  EXPECT_DOUBLE_EQ(nn::ood::quantile(v, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(nn::ood::quantile(v, 0.25), 1.75);
  EXPECT_DOUBLE_EQ(nn::ood::quantile(v, 0.5), 3.5);
  EXPECT_NEAR(nn::ood::quantile(v, 0.9), 6.9, 1e-12);
  EXPECT_DOUBLE_EQ(nn::ood::quantile(v, 1.0), 9.0);
  EXPECT_THROW(nn::ood::quantile({}, 0.5), nn::Error);
  EXPECT_THROW(nn::ood::quantile(v, 1.5), nn::Error);
  EXPECT_THROW(nn::ood::quantile({1.0, NAN}, 0.5), nn::Error);
}

}  // namespace

#ifdef NN_HAVE_PNEUMONIA_COMMON

#include <unistd.h>

#include <filesystem>

#include "ood_gate.h"
#include "pneumonia_model.h"
#include "synthetic_xray.h"

namespace {

nn::data::Image filled(int64_t h, int64_t w, int64_t channels, const std::function<float(int64_t, int64_t, int64_t)>& f) {
  nn::data::Image im{h, w, channels, std::vector<float>(static_cast<size_t>(h * w * channels))};
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t c = 0; c < channels; ++c) im.pixels[static_cast<size_t>((y * w + x) * channels + c)] = f(y, x, c);
  return im;
}

TEST(OodGate, InputChecks) {
  pneumonia::SyntheticXrayOptions o;
  o.size = 96;
  std::vector<nn::data::Image> xrays;
  for (uint64_t i = 0; i < 20; ++i) xrays.push_back(pneumonia::synthetic_xray(i % 2 == 1, i, o));
  std::vector<const nn::data::Image*> refs;
  for (const auto& x : xrays) refs.push_back(&x);
  const pneumonia::InputLimits limits = pneumonia::fit_input_limits(refs);
  EXPECT_GT(limits.min_dynamic_range, 0.05);
  EXPECT_GT(limits.min_contrast, 0.01);
  for (const auto& x : xrays) EXPECT_EQ(pneumonia::check_input(pneumonia::input_stats(x), limits), "");
  // The same X-ray as a colour JPEG would store it (three equal channels) still passes.
  const nn::data::Image rgb = nn::data::to_rgb(xrays[0]);
  EXPECT_EQ(pneumonia::check_input(pneumonia::input_stats(rgb), limits), "");

  auto reason = [&](const nn::data::Image& im) { return pneumonia::check_input(pneumonia::input_stats(im), limits); };
  EXPECT_NE(reason(filled(64, 64, 1, [](int64_t, int64_t, int64_t) { return 1.0f; })).find("blank"), std::string::npos);
  EXPECT_NE(reason(filled(64, 64, 3, [](int64_t, int64_t, int64_t) { return 0.0f; })).find("blank"), std::string::npos);
  EXPECT_NE(reason(filled(64, 64, 1, [](int64_t y, int64_t x, int64_t) { return 0.5f + 0.01f * ((x + y) % 2); }))
                .find("blank"),
            std::string::npos);
  EXPECT_NE(reason(filled(64, 64, 3, [](int64_t y, int64_t x, int64_t c) {
              return c == 0 ? static_cast<float>(x) / 63 : c == 1 ? static_cast<float>(y) / 63 : 0.2f;
            })).find("colour"),
            std::string::npos);
  EXPECT_NE(reason(filled(20, 200, 1, [](int64_t, int64_t x, int64_t) { return static_cast<float>(x) / 199; }))
                .find("aspect"),
            std::string::npos);
  const pneumonia::InputStats s = pneumonia::input_stats(filled(10, 20, 1, [](int64_t, int64_t x, int64_t) {
    return x < 10 ? 0.0f : 1.0f;
  }));
  EXPECT_DOUBLE_EQ(s.aspect, 2.0);
  EXPECT_NEAR(s.contrast, 0.5, 1e-9);
  EXPECT_NEAR(s.dynamic_range, 1.0, 1.0 / 512);
  EXPECT_EQ(s.colour, 0.0);
  EXPECT_EQ(pneumonia::InputLimits::from_json(limits.to_json()).to_json(), limits.to_json());
}

TEST(OodGate, RoundTripsThroughTheModelFile) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("nn_ood_gate_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  pneumonia::ModelSpec spec;
  spec.depth = 11;
  spec.batch_norm = true;
  spec.width = 1.0 / 16;
  spec.input_size = 32;
  spec.members = 2;
  spec.temperature = 1.4;
  spec.calibration_bias = -0.6;
  nn::Generator gen(3);
  auto a = pneumonia::build_model(spec, gen), b = pneumonia::build_model(spec, gen);
  a->eval();
  b->eval();
  // Detectors on random features of the members' feature width.
  const std::string layer = pneumonia::last_feature_layer(*a);
  const nn::Tensor x = nn::randn({24, 3, 32, 32}, gen);
  pneumonia::OodGate gate;
  gate.layer = layer;
  std::vector<int64_t> labels;
  for (int i = 0; i < 24; ++i) labels.push_back(i % 2);
  for (auto* m : {a.get(), b.get()}) {
    const nn::Tensor f = pneumonia::pooled_features(nn::forward_to(*m, x, layer));
    pneumonia::FeatureGate g;
    g.detector = nn::ood::MahalanobisDetector::fit(f, labels, 2, 0.5);
    g.limit = nn::ood::quantile(g.detector.distances(f), 0.9);
    gate.members.push_back(g);
  }
  gate.input.min_contrast = 0.0123;
  const std::string path = (dir / "model.safetensors").string();
  pneumonia::save_model(path, {a.get(), b.get()}, spec, gate);
  pneumonia::PneumoniaModel loaded = pneumonia::load_model(path);
  ASSERT_EQ(loaded.gate.members.size(), 2u);
  EXPECT_EQ(loaded.gate.layer, layer);
  EXPECT_DOUBLE_EQ(loaded.gate.input.min_contrast, 0.0123);
  EXPECT_DOUBLE_EQ(loaded.spec.temperature, 1.4);
  EXPECT_DOUBLE_EQ(loaded.spec.calibration_bias, -0.6);
  const std::vector<pneumonia::Assessment> got = loaded.assess(x);
  // The scores: the mean over the members of distance / limit, as fitted.
  std::vector<std::vector<double>> d;
  for (size_t k = 0; k < 2; ++k)
    d.push_back(gate.members[k].detector.distances(pneumonia::pooled_features(nn::forward_to(*(k ? b : a), x, layer))));
  const std::vector<double> want = gate.scores(d);
  int refused = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i].ood_score, want[i], 1e-9 * std::max(1.0, want[i]));
    EXPECT_EQ(got[i].refused, want[i] > 1.0);
    refused += got[i].refused;
    if (got[i].refused) {
      EXPECT_NE(got[i].reason.find("does not look like"), std::string::npos);
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_LT(refused, 24);
  // The logits are the ensemble's own, and Grad-CAM's pass gives the same verdicts.
  const std::vector<float> z = loaded.logits(x).to_vector<float>();
  std::vector<pneumonia::Assessment> explained;
  loaded.explain_batch(x, &explained);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i].logit, z[i], 1e-5);
    EXPECT_NEAR(got[i].probability, 1.0 / (1.0 + std::exp(-(got[i].logit / 1.4 - 0.6))), 1e-12);
    EXPECT_NEAR(explained[i].ood_score, got[i].ood_score, 1e-6 * std::max(1.0, got[i].ood_score));
    EXPECT_EQ(explained[i].refused, got[i].refused);
    EXPECT_NEAR(explained[i].logit, got[i].logit, 1e-4);
  }
  // A gate whose detector count disagrees with the members is refused at load.
  pneumonia::OodGate one = gate;
  one.members.pop_back();
  EXPECT_THROW(pneumonia::save_model(path, {a.get(), b.get()}, spec, one), nn::Error);
  // Files calibrated by a temperature alone (before the bias existed) read with bias 0; a bias
  // that is not a finite number is refused naming it.
  std::map<std::string, std::string> metadata = spec.to_metadata();
  metadata.erase("calibration_bias");
  EXPECT_DOUBLE_EQ(pneumonia::ModelSpec::from_metadata(metadata).calibration_bias, 0.0);
  metadata["calibration_bias"] = "nan";
  try {
    pneumonia::ModelSpec::from_metadata(metadata);
    ADD_FAILURE() << "a NaN bias was accepted";
  } catch (const nn::Error& e) {
    EXPECT_NE(std::string(e.what()).find("calibration_bias"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace

#endif  // NN_HAVE_PNEUMONIA_COMMON
