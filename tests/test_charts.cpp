// The pneumonia programs' charts (examples/pneumonia/common/charts.h, PLplot pngcairo): the PNGs
// decode with nn::data::load_image, have the promised size, a mostly white background and the
// series' colours; edge cases (one epoch, NaNs, no operating point) draw without PLplot printing
// anything; unwritable paths are nn::Error and leave no file behind.
#ifdef NN_HAVE_PNEUMONIA_COMMON

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "charts.h"
#include "nn/data/image.h"
#include "nn/error.h"

namespace {

namespace fs = std::filesystem;
const double kNaN = std::numeric_limits<double>::quiet_NaN();

class Charts : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("nn_charts_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, ec);
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> files() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  fs::path dir_;
};

struct PixelStats {
  double white = 0;         // fraction of near-white pixels
  int64_t near_colour = 0;  // pixels within a distance of the colour asked for
  bool uniform = true;
};

PixelStats pixel_stats(const nn::data::Image& image, int r, int g, int b) {
  PixelStats st;
  int64_t white = 0;
  const float* first = image.pixels.data();
  for (int64_t y = 0; y < image.height; ++y) {
    for (int64_t x = 0; x < image.width; ++x) {
      const float* p = image.pixels.data() + (y * image.width + x) * image.channels;
      float pr = p[0], pg = image.channels >= 3 ? p[1] : p[0], pb = image.channels >= 3 ? p[2] : p[0];
      if (pr > 0.95f && pg > 0.95f && pb > 0.95f) ++white;
      double d = std::abs(pr * 255 - r) + std::abs(pg * 255 - g) + std::abs(pb * 255 - b);
      if (d < 40) ++st.near_colour;
      for (int64_t c = 0; c < image.channels; ++c) {
        if (p[c] != first[c]) st.uniform = false;
      }
    }
  }
  st.white = static_cast<double>(white) / static_cast<double>(image.height * image.width);
  return st;
}

pneumonia::EpochCurves keras_like_curves(int epochs) {
  pneumonia::EpochCurves c;
  for (int e = 0; e < epochs; ++e) {
    c.train_loss.push_back(0.6 * std::exp(-0.25 * e) + 0.08);
    c.val_loss.push_back(0.65 * std::exp(-0.18 * e) + 0.15 + 0.02 * std::sin(e));
    c.train_accuracy.push_back(0.97 - 0.25 * std::exp(-0.3 * e));
    c.val_accuracy.push_back(0.92 - 0.25 * std::exp(-0.22 * e) + 0.01 * std::cos(e));
  }
  return c;
}

TEST_F(Charts, TrainingCurvesPng) {
  std::string png = path("curves.png");
  testing::internal::CaptureStderr();
  pneumonia::plot_training_curves(png, keras_like_curves(15), "VGG16 transfer learning");
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  auto image = nn::data::load_image(png);
  EXPECT_EQ(image.width, 1200);
  EXPECT_EQ(image.height, 500);
  auto blue = pixel_stats(image, 31, 119, 180);     // training
  auto orange = pixel_stats(image, 255, 127, 14);   // validation
  EXPECT_FALSE(blue.uniform);
  EXPECT_GT(blue.white, 0.75);
  EXPECT_GT(blue.near_colour, 500);
  EXPECT_GT(orange.near_colour, 500);
  EXPECT_EQ(files(), std::vector<std::string>{"curves.png"});  // no temporary left behind
}

TEST_F(Charts, RocPng) {
  std::vector<double> fpr{0, 0, 0.05, 0.1, 0.2, 0.4, 0.7, 1};
  std::vector<double> tpr{0, 0.4, 0.7, 0.85, 0.93, 0.97, 0.99, 1};
  std::string png = path("roc.png");
  testing::internal::CaptureStderr();
  pneumonia::plot_roc(png, fpr, tpr, 0.945, 0.1, 0.85);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  auto image = nn::data::load_image(png);
  EXPECT_EQ(image.width, 600);
  EXPECT_EQ(image.height, 600);
  auto blue = pixel_stats(image, 31, 119, 180);
  auto red = pixel_stats(image, 214, 39, 40);  // the operating point
  EXPECT_FALSE(blue.uniform);
  EXPECT_GT(blue.white, 0.75);
  EXPECT_GT(blue.near_colour, 500);
  EXPECT_GT(red.near_colour, 20);

  // Without an operating point there is no red; a NaN AUC and NaN points are accepted.
  std::string plain = path("roc_plain.png");
  testing::internal::CaptureStderr();
  pneumonia::plot_roc(plain, {0, kNaN, 0.5, 1}, {0, 0.3, kNaN, 1}, kNaN);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  EXPECT_EQ(pixel_stats(nn::data::load_image(plain), 214, 39, 40).near_colour, 0);

  EXPECT_THROW(pneumonia::plot_roc(path("bad.png"), {0, 1}, {0}, 0.5), nn::Error);
  EXPECT_THROW(pneumonia::plot_roc(path("bad.png"), {0, 1}, {0, 1}, 0.5, 1.5, 0.5), nn::Error);
}

TEST_F(Charts, OneEpochAndNaNValuesDrawQuietly) {
  pneumonia::EpochCurves one{{0.7}, {0.8}, {0.6}, {0.55}};
  testing::internal::CaptureStderr();
  pneumonia::plot_training_curves(path("one.png"), one);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  auto image = nn::data::load_image(path("one.png"));
  EXPECT_EQ(image.width, 1200);
  EXPECT_GT(pixel_stats(image, 31, 119, 180).near_colour, 20);  // the markers

  // NaNs break the lines; constant series and a missing validation series are fine.
  pneumonia::EpochCurves gaps{{0.9, kNaN, 0.5, 0.4}, {}, {0.5, 0.5, 0.5, 0.5}, {kNaN, kNaN}};
  testing::internal::CaptureStderr();
  pneumonia::plot_training_curves(path("gaps.png"), gaps, "Title with # and % signs");
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  EXPECT_EQ(nn::data::load_image(path("gaps.png")).height, 500);

  EXPECT_THROW(pneumonia::plot_training_curves(path("none.png"), {}), nn::Error);
}

TEST_F(Charts, UnwritablePathsThrowAndLeaveNoFile) {
  auto curves = keras_like_curves(3);
  EXPECT_THROW(pneumonia::plot_training_curves(path("missing/dir/curves.png"), curves), nn::Error);
  EXPECT_THROW(pneumonia::plot_roc(path("missing/roc.png"), {0, 1}, {0, 1}, 0.5), nn::Error);
  EXPECT_THROW(pneumonia::plot_roc(dir_.string(), {0, 1}, {0, 1}, 0.5), nn::Error);  // a directory
  if (::geteuid() != 0) {  // root writes anywhere
    fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec);
    try {
      pneumonia::plot_training_curves(path("curves.png"), curves);
      ADD_FAILURE() << "expected nn::Error";
    } catch (const nn::Error& e) {
      EXPECT_NE(std::string(e.what()).find("curves.png"), std::string::npos) << e.what();
    }
    fs::permissions(dir_, fs::perms::owner_all);
  }
  EXPECT_TRUE(files().empty());
  // Overwriting an existing chart replaces it.
  pneumonia::plot_training_curves(path("curves.png"), curves);
  pneumonia::plot_training_curves(path("curves.png"), keras_like_curves(5));
  EXPECT_EQ(files(), std::vector<std::string>{"curves.png"});
}

}  // namespace

#endif  // NN_HAVE_PNEUMONIA_COMMON
