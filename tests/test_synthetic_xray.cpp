// examples/pneumonia/common/synthetic_xray: the synthetic chest X-ray generator and the data set
// writer behind make-synthetic-xrays (suite SyntheticXray).
#ifdef NN_HAVE_PNEUMONIA_COMMON

#include <gtest/gtest.h>
#include <nn/data/image.h>
#include <nn/error.h>
#include <nn/metrics.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "synthetic_xray.h"

namespace {

namespace fs = std::filesystem;
using pneumonia::SyntheticXrayOptions;

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("nn_synthetic_xray_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Mean brightness of two boxes where the lung fields lie (image x in +-[0.25, 0.6] of the half
// width, y in [-0.35, 0.15]; the generator places the lungs around x = +-0.44, y from -0.7 to 0.4).
double lung_mean(const nn::data::Image& im) {
  const int64_t n = im.width;
  double sum = 0.0;
  int64_t count = 0;
  for (int64_t py = 0; py < n; ++py) {
    const double y = (py + 0.5) / n * 2.0 - 1.0;
    if (y < -0.35 || y > 0.15) continue;
    for (int64_t px = 0; px < n; ++px) {
      const double x = std::fabs((px + 0.5) / n * 2.0 - 1.0);
      if (x < 0.25 || x > 0.6) continue;
      sum += im.pixels[static_cast<size_t>(py * n + px)];
      ++count;
    }
  }
  return sum / static_cast<double>(count);
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(SyntheticXray, ShapeRangeAndDeterminism) {
  SyntheticXrayOptions opt;
  opt.size = 96;
  opt.seed = 7;
  for (bool pn : {false, true}) {
    nn::data::Image a = pneumonia::synthetic_xray(pn, 3, opt), b = pneumonia::synthetic_xray(pn, 3, opt);
    EXPECT_EQ(a.height, 96);
    EXPECT_EQ(a.width, 96);
    EXPECT_EQ(a.channels, 1);
    ASSERT_EQ(a.pixels.size(), size_t{96 * 96});
    EXPECT_EQ(a.pixels, b.pixels) << "same (seed, index, class) must give the same image";
    float lo = 1.0f, hi = 0.0f;
    for (float v : a.pixels) {
      ASSERT_TRUE(std::isfinite(v));
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    EXPECT_GE(lo, 0.0f);
    EXPECT_LE(hi, 1.0f);
    EXPECT_GT(hi - lo, 0.4f) << "an X-ray has dark lungs / background and bright bone";
  }
  // Another index, seed or class changes the image.
  const auto base = pneumonia::synthetic_xray(false, 3, opt).pixels;
  EXPECT_NE(base, pneumonia::synthetic_xray(false, 4, opt).pixels);
  EXPECT_NE(base, pneumonia::synthetic_xray(true, 3, opt).pixels);
  SyntheticXrayOptions other = opt;
  other.seed = 8;
  EXPECT_NE(base, pneumonia::synthetic_xray(false, 3, other).pixels);
}

TEST(SyntheticXray, SizesAndRefusals) {
  SyntheticXrayOptions opt;
  for (int64_t size : {16, 64, 224}) {
    opt.size = size;
    nn::data::Image im = pneumonia::synthetic_xray(true, 0, opt);
    EXPECT_EQ(im.height, size);
    EXPECT_EQ(im.width, size);
  }
  opt.size = 8;
  EXPECT_THROW(pneumonia::synthetic_xray(false, 0, opt), nn::Error);
  opt.size = 5000;
  EXPECT_THROW(pneumonia::synthetic_xray(false, 0, opt), nn::Error);
}

// The anatomy is where the generator says: lungs darker than the mediastinum, the body brighter
// than the air around it (averaged over images).
TEST(SyntheticXray, Anatomy) {
  SyntheticXrayOptions opt;
  opt.size = 64;
  double lungs = 0.0, centre = 0.0, corner = 0.0;
  const int n = 20;
  for (int i = 0; i < n; ++i) {
    nn::data::Image im = pneumonia::synthetic_xray(false, static_cast<uint64_t>(i), opt);
    lungs += lung_mean(im);
    double c = 0.0, k = 0.0;
    for (int64_t y = 24; y < 40; ++y)
      for (int64_t x = 30; x < 34; ++x) c += im.at(y, x, 0);
    for (int64_t y = 60; y < 64; ++y)
      for (int64_t x = 0; x < 2; ++x) k += im.at(y, x, 0);  // bottom-left corner: outside the body
    centre += c / 64.0;
    corner += k / 8.0;
  }
  lungs /= n;
  centre /= n;
  corner /= n;
  EXPECT_GT(centre, lungs + 0.15) << "mediastinum " << centre << " lungs " << lungs;
  EXPECT_GT(lungs, corner) << "lungs " << lungs << " outside " << corner;
}

// Pneumonia brightens the lung fields on average, clearly enough that a small CNN trained from
// scratch learns it within the demo's few minutes, but the classes overlap (mild cases and
// exposure variation), so the task is not trivial: the lung brightness alone ranks a pneumonia
// image above a normal one in most pairs, not all (0.65 before the signal was strengthened).
TEST(SyntheticXray, ClassesDifferButOverlap) {
  SyntheticXrayOptions opt;
  opt.size = 64;
  opt.seed = 11;
  const int n = 50;
  std::vector<double> normal, pneu;
  for (int i = 0; i < n; ++i) {
    normal.push_back(lung_mean(pneumonia::synthetic_xray(false, static_cast<uint64_t>(i), opt)));
    pneu.push_back(lung_mean(pneumonia::synthetic_xray(true, static_cast<uint64_t>(i), opt)));
  }
  auto mean = [](const std::vector<double>& v) {
    double s = 0.0;
    for (double x : v) s += x;
    return s / static_cast<double>(v.size());
  };
  const double mn = mean(normal), mp = mean(pneu);
  EXPECT_GT(mp, mn + 0.06) << "pneumonia " << mp << " normal " << mn;
  std::vector<double> scores = normal;
  scores.insert(scores.end(), pneu.begin(), pneu.end());
  std::vector<int64_t> labels(normal.size(), 0);
  labels.resize(scores.size(), 1);
  const double auc = nn::metrics::roc_auc(scores, labels);
  EXPECT_GT(auc, 0.72) << "the class signal is too weak to learn in a short demo";
  EXPECT_LT(auc, 0.95) << "the lung brightness alone nearly separates the classes: too easy";
  // Overlap: some pneumonia images have lung fields darker than some normal ones.
  const double max_normal = *std::max_element(normal.begin(), normal.end());
  const int below = static_cast<int>(std::count_if(pneu.begin(), pneu.end(), [&](double v) { return v < max_normal; }));
  EXPECT_GT(below, 0) << "the lung brightness alone separates the classes: too easy";
}

TEST(SyntheticXray, DatasetLayoutAndCounts) {
  TempDir dir;
  SyntheticXrayOptions opt;
  opt.size = 32;
  opt.seed = 5;
  const fs::path root = dir.path / "xrays";
  EXPECT_EQ(pneumonia::write_synthetic_dataset(root.string(), 3, 5, opt), 8);
  EXPECT_EQ(names_in(root), (std::vector<std::string>{"NORMAL", "PNEUMONIA"}));
  EXPECT_EQ(names_in(root / "NORMAL"),
            (std::vector<std::string>{"normal_0000.png", "normal_0001.png", "normal_0002.png"}));
  EXPECT_EQ(names_in(root / "PNEUMONIA").size(), 5u);
  EXPECT_EQ(names_in(root / "PNEUMONIA").back(), "pneumonia_0004.png");
  // The files decode to the generator's images (8-bit rounding).
  nn::data::Image file = nn::data::load_image((root / "PNEUMONIA" / "pneumonia_0002.png").string());
  nn::data::Image direct = pneumonia::synthetic_xray(true, 2, opt);
  ASSERT_EQ(file.channels, 1);
  ASSERT_EQ(file.pixels.size(), direct.pixels.size());
  for (size_t i = 0; i < file.pixels.size(); ++i) ASSERT_NEAR(file.pixels[i], direct.pixels[i], 0.5 / 255 + 1e-6);

  // An existing empty folder is fine; zero images of a class give an empty folder.
  const fs::path empty = dir.path / "empty";
  fs::create_directories(empty);
  EXPECT_EQ(pneumonia::write_synthetic_dataset(empty.string(), 2, 0, opt), 2);
  EXPECT_EQ(names_in(empty / "NORMAL").size(), 2u);
  EXPECT_TRUE(names_in(empty / "PNEUMONIA").empty());
}

TEST(SyntheticXray, RefusesToOverwrite) {
  TempDir dir;
  SyntheticXrayOptions opt;
  opt.size = 32;
  const fs::path root = dir.path / "xrays";
  ASSERT_EQ(pneumonia::write_synthetic_dataset(root.string(), 4, 4, opt), 8);
  try {
    pneumonia::write_synthetic_dataset(root.string(), 1, 1, opt);
    FAIL() << "a non-empty folder must be refused";
  } catch (const nn::Error& e) {
    EXPECT_NE(std::string(e.what()).find("overwrite"), std::string::npos) << e.what();
  }
  EXPECT_EQ(names_in(root / "NORMAL").size(), 4u) << "a refusal must not touch the files";

  // A file in the way is refused even with overwrite.
  const fs::path file = dir.path / "file";
  std::ofstream(file) << "x";
  EXPECT_THROW(pneumonia::write_synthetic_dataset(file.string(), 1, 1, opt, true), nn::Error);

  // overwrite = true replaces our earlier images (no stale ones) and keeps foreign files.
  std::ofstream(root / "NORMAL" / "notes.txt") << "keep me";
  EXPECT_EQ(pneumonia::write_synthetic_dataset(root.string(), 2, 1, opt, true), 3);
  EXPECT_EQ(names_in(root / "NORMAL"), (std::vector<std::string>{"normal_0000.png", "normal_0001.png", "notes.txt"}));
  EXPECT_EQ(names_in(root / "PNEUMONIA"), (std::vector<std::string>{"pneumonia_0000.png"}));

  EXPECT_THROW(pneumonia::write_synthetic_dataset(root.string(), -1, 1, opt, true), nn::Error);
}

}  // namespace

#endif  // NN_HAVE_PNEUMONIA_COMMON
