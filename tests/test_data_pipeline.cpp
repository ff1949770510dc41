// The data pipeline: image folders, grouped and stratified splits, class weights, epoch orders,
// augmentation and the multithreaded loader. Every image is made here (PNG files in a temporary
// folder); only DataPipelineRealData reads ../shared/data and skips when it is absent.
#include <gtest/gtest.h>
#include <nn/data/augment.h>
#include <nn/data/dataset.h>
#include <nn/data/image.h>
#include <nn/data/loader.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "error_text.h"

namespace fs = std::filesystem;
using nn::data::AugmentOptions;
using nn::data::AugmentParams;
using nn::data::Image;
using nn::data::Sample;

namespace {

class DataTempDir {
 public:
  DataTempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("nn_data_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~DataTempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

Image make_image(int64_t h, int64_t w, int64_t c, float fill = 0.0f) {
  Image im;
  im.height = h;
  im.width = w;
  im.channels = c;
  im.pixels.assign(static_cast<size_t>(h * w * c), fill);
  return im;
}

float& px(Image& im, int64_t y, int64_t x, int64_t c = 0) {
  return im.pixels[static_cast<size_t>((y * im.width + x) * im.channels + c)];
}

// A smooth, non-symmetric pattern in [0, 1].
Image smooth_pattern(int64_t h, int64_t w, int64_t c) {
  Image im = make_image(h, w, c);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t k = 0; k < c; ++k)
        px(im, y, x, k) = static_cast<float>(0.5 + 0.4 * std::sin(0.31 * x + 0.17 * y * (k + 1) + 0.5 * k) *
                                                        std::cos(0.07 * x * y / (1.0 + h)));
  return im;
}

void write_file(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

// A small PNG whose pixels encode `value` (0..255).
void write_png(const fs::path& path, int value, int64_t size = 12) {
  fs::create_directories(path.parent_path());
  Image im = make_image(size, size, 1, static_cast<float>(value) / 255.0f);
  px(im, 0, 0) = 1.0f;  // not flat, so augmentation does something
  nn::data::save_png(path.string(), im);
}

// (C, H, W) float32 tensor of an image.
nn::Tensor chw_tensor(const Image& im) {
  std::vector<float> v(im.pixels.size());
  for (int64_t c = 0; c < im.channels; ++c)
    for (int64_t i = 0; i < im.height * im.width; ++i)
      v[static_cast<size_t>(c * im.height * im.width + i)] = im.pixels[static_cast<size_t>(i * im.channels + c)];
  return nn::from_vector<float>(v, {im.channels, im.height, im.width});
}

std::vector<Sample> make_samples(int64_t n0, int64_t n1) {
  std::vector<Sample> s;
  for (int64_t i = 0; i < n0 + n1; ++i) {
    Sample x;
    x.path = "mem/" + std::to_string(i) + ".png";
    x.label = i < n0 ? 0 : 1;
    x.group = "p" + std::to_string(i);
    s.push_back(x);
  }
  return s;
}

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

}  // namespace

// ---------------------------------------------------------------- folders

TEST(DataPipelineFolder, ScansClassesAndSkipsJunk) {
  DataTempDir dir;
  const fs::path r = dir.path();
  write_png(r / "NORMAL" / "IM-0001-0001.jpeg", 10);
  write_png(r / "NORMAL" / "IM-0001-0002.png", 20);
  write_png(r / "NORMAL" / "sub" / "NORMAL2-IM-0003-0001.JPG", 30);
  write_file(r / "NORMAL" / ".DS_Store", "junk");
  write_file(r / "NORMAL" / "notes.txt", "hello");
  write_png(r / "PNEUMONIA" / "person1_bacteria_1.jpeg", 40);
  write_png(r / "PNEUMONIA" / "person1_virus_2.jpeg", 50);
  write_file(r / "PNEUMONIA" / "._person1_bacteria_1.jpeg", "AppleDouble");
  write_file(r / "PNEUMONIA" / "broken.jpeg", "not an image at all");
  write_file(r / "PNEUMONIA" / "__MACOSX" / "inner.jpeg", "x");
  write_file(r / "__MACOSX" / "PNEUMONIA" / "._x.jpeg", "AppleDouble");
  write_file(r / ".DS_Store", "junk");
  write_file(r / "readme.txt", "top-level file");

  // Groups from the callback: here the first four characters of the file name.
  auto group_of = [](const std::string& path) { return "g:" + fs::path(path).filename().string().substr(0, 4); };
  nn::data::ImageFolder f = nn::data::scan_image_folder(dir.str(), {}, group_of);
  EXPECT_EQ(f.root, dir.str());
  ASSERT_EQ(f.classes, (std::vector<std::string>{"NORMAL", "PNEUMONIA"}));
  std::vector<std::string> names;
  std::vector<int64_t> labels;
  for (const Sample& s : f.samples) {
    names.push_back(fs::relative(s.path, r).generic_string());
    labels.push_back(s.label);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"NORMAL/IM-0001-0001.jpeg", "NORMAL/IM-0001-0002.png",
                                              "NORMAL/sub/NORMAL2-IM-0003-0001.JPG",
                                              "PNEUMONIA/broken.jpeg", "PNEUMONIA/person1_bacteria_1.jpeg",
                                              "PNEUMONIA/person1_virus_2.jpeg"}));
  EXPECT_EQ(labels, (std::vector<int64_t>{0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(f.samples[0].group, "g:IM-0");
  EXPECT_EQ(f.samples[1].group, "g:IM-0");
  EXPECT_EQ(f.samples[2].group, "g:NORM");
  EXPECT_EQ(f.samples[4].group, "g:pers");
  EXPECT_EQ(f.samples[5].group, "g:pers");
  for (const Sample& x : nn::data::scan_image_folder(dir.str()).samples) EXPECT_TRUE(x.group.empty()) << x.path;

  auto skipped = [&](const std::string& rel, const std::string& reason) {
    const std::string path = (r / rel).string();
    for (const std::string& s : f.skipped)
      if (s.rfind(path + ": ", 0) == 0 && contains(s, reason)) return true;
    return false;
  };
  EXPECT_TRUE(skipped("NORMAL/.DS_Store", "hidden file"));
  EXPECT_TRUE(skipped("NORMAL/notes.txt", "not an image"));
  EXPECT_TRUE(skipped("PNEUMONIA/._person1_bacteria_1.jpeg", "AppleDouble"));
  EXPECT_TRUE(skipped("PNEUMONIA/__MACOSX", "macOS"));
  EXPECT_TRUE(skipped("__MACOSX", "macOS"));
  EXPECT_TRUE(skipped(".DS_Store", "hidden"));
  EXPECT_TRUE(skipped("readme.txt", "not inside a class folder"));
  EXPECT_EQ(f.skipped.size(), 7u) << ::testing::PrintToString(f.skipped);

  // Explicit classes fix the labels' order; other folders are skipped.
  fs::create_directories(r / "OTHER");
  write_png(r / "OTHER" / "a.png", 1);
  nn::data::ImageFolder g = nn::data::scan_image_folder(dir.str(), {"PNEUMONIA", "NORMAL"});
  EXPECT_EQ(g.classes, (std::vector<std::string>{"PNEUMONIA", "NORMAL"}));
  EXPECT_EQ(g.samples.size(), 6u);
  EXPECT_EQ(g.samples.front().label, 0);
  EXPECT_TRUE(contains(g.samples.front().path, "PNEUMONIA"));
  EXPECT_EQ(g.samples.back().label, 1);
  EXPECT_TRUE(std::any_of(g.skipped.begin(), g.skipped.end(),
                          [](const std::string& s) { return contains(s, "not one of the requested classes"); }));
}

TEST(DataPipelineFolder, Errors) {
  DataTempDir dir;
  const fs::path r = dir.path();
  EXPECT_TRUE(contains(error_of([&] { nn::data::scan_image_folder((r / "missing").string()); }), "does not exist"));
  write_file(r / "file.txt", "x");
  EXPECT_TRUE(contains(error_of([&] { nn::data::scan_image_folder((r / "file.txt").string()); }), "not a directory"));

  const fs::path one = r / "one";
  write_png(one / "A" / "a.png", 1);
  EXPECT_TRUE(contains(error_of([&] { nn::data::scan_image_folder(one.string()); }), "at least 2 class"));

  const fs::path empty_class = r / "empty_class";
  write_png(empty_class / "A" / "a.png", 1);
  write_file(empty_class / "B" / ".DS_Store", "x");
  write_file(empty_class / "B" / "notes.txt", "x");
  std::string e = error_of([&] { nn::data::scan_image_folder(empty_class.string()); });
  EXPECT_TRUE(contains(e, "holds no images")) << e;
  EXPECT_TRUE(contains(e, "B")) << e;

  write_png(empty_class / "B" / "b.png", 1);
  e = error_of([&] { nn::data::scan_image_folder(empty_class.string(), {"A", "C"}); });
  EXPECT_TRUE(contains(e, "'C' missing")) << e;
  e = error_of([&] { nn::data::scan_image_folder(empty_class.string(), {"A", "A"}); });
  EXPECT_TRUE(contains(e, "twice")) << e;
}

// ---------------------------------------------------------------- splits, weights, orders

TEST(DataPipelineSplit, StratifiedProportionsAndDisjoint) {
  std::vector<Sample> samples = make_samples(100, 300);
  nn::data::Split s = nn::data::stratified_split(samples, 0.1, 7);
  EXPECT_TRUE(std::is_sorted(s.train.begin(), s.train.end()));
  EXPECT_TRUE(std::is_sorted(s.val.begin(), s.val.end()));
  std::vector<int64_t> all = s.train;
  all.insert(all.end(), s.val.begin(), s.val.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, iota(400));  // a partition
  int64_t val0 = 0, val1 = 0;
  for (int64_t i : s.val) (samples[i].label == 0 ? val0 : val1)++;
  EXPECT_EQ(val0, 10);
  EXPECT_EQ(val1, 30);

  nn::data::Split again = nn::data::stratified_split(samples, 0.1, 7);
  EXPECT_EQ(again.val, s.val);
  nn::data::Split other = nn::data::stratified_split(samples, 0.1, 8);
  EXPECT_NE(other.val, s.val);

  // Tiny classes: 2 samples -> 1 in val; 1 sample -> stays in train. Fraction 0 -> no val.
  std::vector<Sample> tiny = make_samples(2, 1);
  nn::data::Split t = nn::data::stratified_split(tiny, 0.1, 1);
  ASSERT_EQ(t.val.size(), 1u);
  EXPECT_EQ(tiny[t.val[0]].label, 0);
  EXPECT_TRUE(nn::data::stratified_split(samples, 0.0, 1).val.empty());
  EXPECT_TRUE(contains(error_of([&] { nn::data::stratified_split(samples, 1.0, 1); }), "val_fraction"));
}

TEST(DataPipelineSplit, GroupedKeepsGroupsTogether) {
  // Patients with 1..4 images each; labels per patient. Half of them carry their group in the
  // samples, the others alone (every image its own group); the callback overload groups them all.
  auto patient_of = [](const std::string& path) { return fs::path(path).stem().string().substr(0, fs::path(path).stem().string().find('_')); };
  std::vector<Sample> samples;
  for (int p = 0; p < 120; ++p) {
    const int images = 1 + p % 4;
    for (int k = 0; k < images; ++k) {
      Sample s;
      s.label = p % 3 == 0 ? 0 : 1;
      s.path = (s.label == 0 ? "NORMAL/p" : "PNEUMONIA/p") + std::to_string(p) + "_" + std::to_string(k) + ".jpeg";
      if (p % 2 == 0) s.group = patient_of(s.path);
      samples.push_back(s);
    }
  }
  for (const bool by_callback : {false, true}) {
    nn::data::Split s = by_callback ? nn::data::stratified_group_split(samples, 0.2, 3, patient_of)
                                    : nn::data::stratified_split(samples, 0.2, 3, /*grouped=*/true);
    EXPECT_EQ(s.train.size() + s.val.size(), samples.size());
    std::set<std::string> train_patients, val_patients;
    for (int64_t i : s.train)
      if (by_callback || !samples[i].group.empty()) train_patients.insert(patient_of(samples[i].path));
    for (int64_t i : s.val)
      if (by_callback || !samples[i].group.empty()) val_patients.insert(patient_of(samples[i].path));
    for (const std::string& p : val_patients) EXPECT_EQ(train_patients.count(p), 0u) << p;
    // About 20% of each label's samples (whole patients of at most 4 images: within 4).
    std::map<int64_t, int64_t> total, in_val;
    for (const Sample& x : samples) ++total[x.label];
    for (int64_t i : s.val) ++in_val[samples[i].label];
    for (auto [label, n] : total) {
      EXPECT_NEAR(static_cast<double>(in_val[label]), 0.2 * n, 4.0) << "label " << label;
      EXPECT_GT(in_val[label], 0);
    }
  }
  nn::data::Split s = nn::data::stratified_split(samples, 0.2, 3, true);
  EXPECT_EQ(nn::data::stratified_split(samples, 0.2, 3, true).val, s.val);
  EXPECT_NE(nn::data::stratified_split(samples, 0.2, 4, true).val, s.val);
}

TEST(DataPipelineSplit, KFoldCoversEverySampleOnceAndKeepsGroupsTogether) {
  std::vector<Sample> samples;
  for (int p = 0; p < 90; ++p) {
    for (int k = 0; k < 1 + p % 3; ++k) {
      Sample s;
      s.label = p % 4 == 0 ? 0 : 1;
      s.path = "p" + std::to_string(p) + "_" + std::to_string(k) + ".png";
      s.group = "p" + std::to_string(p);
      samples.push_back(s);
    }
  }
  const std::vector<nn::data::Split> folds = nn::data::stratified_kfold(samples, 5, 11, true);
  ASSERT_EQ(folds.size(), 5u);
  std::vector<int> seen(samples.size(), 0);
  std::map<int64_t, int64_t> total;
  for (const Sample& x : samples) ++total[x.label];
  for (const nn::data::Split& f : folds) {
    EXPECT_EQ(f.train.size() + f.val.size(), samples.size());
    std::set<std::string> train_groups;
    for (int64_t i : f.train) train_groups.insert(samples[i].group);
    std::map<int64_t, int64_t> in_val;
    for (int64_t i : f.val) {
      ++seen[static_cast<size_t>(i)];
      ++in_val[samples[i].label];
      EXPECT_EQ(train_groups.count(samples[i].group), 0u) << samples[i].path;
    }
    // About a fifth of each label (whole groups of at most 3 images: within 3).
    for (auto [label, n] : total) EXPECT_NEAR(static_cast<double>(in_val[label]), n / 5.0, 3.0) << label;
  }
  for (int s : seen) EXPECT_EQ(s, 1);
  const std::vector<nn::data::Split> again = nn::data::stratified_kfold(samples, 5, 11, true);
  for (size_t k = 0; k < 5; ++k) EXPECT_EQ(again[k].val, folds[k].val);
  EXPECT_NE(nn::data::stratified_kfold(samples, 5, 12, true)[0].val, folds[0].val);
  EXPECT_THROW(nn::data::stratified_kfold(samples, 1, 0), nn::Error);
  EXPECT_THROW(nn::data::stratified_kfold(make_samples(3, 10), 5, 0), nn::Error);  // 3 samples of label 0
}

TEST(DataPipelineSplit, ClassWeights) {
  std::vector<double> w = nn::data::class_weights({0, 0, 0, 1}, 2);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_DOUBLE_EQ(w[0], 4.0 / 6.0);
  EXPECT_DOUBLE_EQ(w[1], 2.0);
  // The real training set's numbers: 5216 / (2 * 1341), 5216 / (2 * 3875).
  std::vector<int64_t> labels(1341, 0);
  labels.resize(5216, 1);
  w = nn::data::class_weights(labels, 2);
  EXPECT_NEAR(w[0], 1.9448173, 1e-6);
  EXPECT_NEAR(w[1], 0.6730323, 1e-6);
  EXPECT_TRUE(contains(error_of([] { nn::data::class_weights({0, 0}, 2); }), "class 1 has no samples"));
  EXPECT_TRUE(contains(error_of([] { nn::data::class_weights({0, 2}, 2); }), "outside"));
}

TEST(DataPipelineSplit, EpochOrders) {
  std::vector<int64_t> labels(200, 0);
  for (int i = 180; i < 200; ++i) labels[i] = 1;
  std::vector<int64_t> indices;
  for (int64_t i = 0; i < 200; i += 2) indices.push_back(i);  // 90 of class 0, 10 of class 1

  EXPECT_EQ(nn::data::epoch_order(indices, labels, 5, 0, false, false), indices);
  std::vector<int64_t> a = nn::data::epoch_order(indices, labels, 5, 0, true, false);
  std::vector<int64_t> b = nn::data::epoch_order(indices, labels, 5, 1, true, false);
  EXPECT_EQ(a, nn::data::epoch_order(indices, labels, 5, 0, true, false));
  EXPECT_NE(a, b);
  EXPECT_NE(a, indices);
  EXPECT_NE(a, nn::data::epoch_order(indices, labels, 6, 0, true, false));
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, indices);

  // Balanced: each class about half of the draws, only from `indices`.
  int64_t ones = 0, draws = 0;
  std::set<int64_t> allowed(indices.begin(), indices.end()), seen1;
  for (int64_t epoch = 0; epoch < 40; ++epoch) {
    std::vector<int64_t> o = nn::data::epoch_order(indices, labels, 9, epoch, true, true);
    ASSERT_EQ(o.size(), indices.size());
    for (int64_t i : o) {
      ASSERT_TRUE(allowed.count(i)) << i;
      if (labels[i] == 1) ++ones, seen1.insert(i);
      ++draws;
    }
  }
  EXPECT_NEAR(static_cast<double>(ones) / draws, 0.5, 0.03);  // 4000 draws: sd 0.008
  EXPECT_EQ(seen1.size(), 10u);  // every minority sample is drawn
  EXPECT_EQ(nn::data::epoch_order(indices, labels, 9, 3, true, true),
            nn::data::epoch_order(indices, labels, 9, 3, false, true));
  EXPECT_TRUE(contains(error_of([&] { nn::data::epoch_order({200}, labels, 0, 0, true, false); }), "outside"));
}

// ---------------------------------------------------------------- augmentation

AugmentOptions no_augmentation() {
  AugmentOptions o;
  o.zoom = o.shear = o.rotation_degrees = o.translate = o.brightness = o.contrast = 0.0;
  o.horizontal_flip = false;
  return o;
}

TEST(DataPipelineAugment, IdentityReturnsInputExactly) {
  AugmentOptions o = no_augmentation();
  EXPECT_TRUE(nn::data::is_identity(o));
  EXPECT_FALSE(nn::data::is_identity(AugmentOptions{}));
  Image im = smooth_pattern(9, 13, 3);
  px(im, 2, 2, 1) = 1.5f;  // out of range values are kept too
  nn::Generator gen(1);
  Image out = nn::data::augment(im, o, gen);
  EXPECT_EQ(out.height, im.height);
  EXPECT_EQ(out.width, im.width);
  EXPECT_EQ(out.channels, im.channels);
  EXPECT_EQ(out.pixels, im.pixels);
  EXPECT_EQ(gen.offset(), 0u);
  // Neutral parameters give the input back too (clamped).
  Image clean = smooth_pattern(9, 13, 3);
  EXPECT_EQ(nn::data::apply_augment(clean, AugmentParams{}).pixels, clean.pixels);
}

TEST(DataPipelineAugment, ZoomMovesPixelsAboutTheCentre) {
  // 41x41, a dot at the centre (20, 20) and a vertical line at x = 26 (6 right of the centre).
  Image im = make_image(41, 41, 1);
  px(im, 20, 20) = 1.0f;
  for (int64_t y = 0; y < 41; ++y) px(im, y, 26) = 1.0f;
  AugmentParams p;
  p.zoom = 0.5;  // samples at half the distance: the content doubles in size
  Image out = nn::data::apply_augment(im, p);
  EXPECT_FLOAT_EQ(out.at(20, 20, 0), 1.0f);               // the centre stays
  EXPECT_FLOAT_EQ(out.at(20, 21, 0), 0.5f);               // and spreads by bilinear interpolation
  EXPECT_FLOAT_EQ(out.at(20, 22, 0), 0.0f);
  EXPECT_FLOAT_EQ(out.at(5, 32, 0), 1.0f);                // the line moved from 26 to 20 + 2 * 6
  EXPECT_FLOAT_EQ(out.at(5, 31, 0), 0.5f);
  EXPECT_FLOAT_EQ(out.at(5, 33, 0), 0.5f);
  EXPECT_FLOAT_EQ(out.at(5, 26, 0), 0.0f);
  p.zoom = 2.0;  // shrinks: the line moves to 23
  out = nn::data::apply_augment(im, p);
  EXPECT_FLOAT_EQ(out.at(20, 20, 0), 1.0f);
  EXPECT_FLOAT_EQ(out.at(5, 23, 0), 1.0f);
  EXPECT_FLOAT_EQ(out.at(5, 26, 0), 0.0f);
  // Far outside samples the nearest edge: the last column (0 here) everywhere at x >= 31.
  EXPECT_FLOAT_EQ(out.at(5, 40, 0), 0.0f);

  // Random zoom-only draws: the centre dot stays the brightest pixel, at the centre.
  AugmentOptions o = no_augmentation();
  o.zoom = 0.3;
  Image dot = make_image(41, 41, 1);
  px(dot, 20, 20) = 1.0f;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    nn::Generator gen(seed);
    nn::Generator copy = gen;
    AugmentParams drawn = nn::data::draw_augment_params(o, copy);
    EXPECT_GE(drawn.zoom, 0.7);
    EXPECT_LE(drawn.zoom, 1.3);
    EXPECT_EQ(drawn.rotation, 0.0);
    Image z = nn::data::augment(dot, o, gen);
    auto it = std::max_element(z.pixels.begin(), z.pixels.end());
    EXPECT_EQ(it - z.pixels.begin(), 20 * 41 + 20);
    EXPECT_FLOAT_EQ(*it, 1.0f);
  }
}

// float64 reference of one output sample, straight from the formula in augment.h.
double reference_sample(const Image& im, const AugmentParams& p, int64_t y, int64_t x, int64_t c) {
  const double W = static_cast<double>(im.width), H = static_cast<double>(im.height);
  const double cx = (W - 1) / 2, cy = (H - 1) / 2, u = x - cx, v = y - cy;
  const double f = p.zoom;
  // q = Sh * Z * (u, v) + t, with Sh = [[cos s, 0], [-sin s, 1]]
  const double qx = std::cos(p.shear) * f * u + p.translate_x * W;
  const double qy = -std::sin(p.shear) * f * u + f * v + p.translate_y * H;
  // src = c + R q, with R = [[cos, sin], [-sin, cos]]
  double sx = cx + std::cos(p.rotation) * qx + std::sin(p.rotation) * qy;
  double sy = cy - std::sin(p.rotation) * qx + std::cos(p.rotation) * qy;
  sx = std::min(std::max(sx, 0.0), W - 1);
  sy = std::min(std::max(sy, 0.0), H - 1);
  const int64_t x0 = static_cast<int64_t>(std::floor(sx)), y0 = static_cast<int64_t>(std::floor(sy));
  const int64_t x1 = std::min<int64_t>(x0 + 1, im.width - 1), y1 = std::min<int64_t>(y0 + 1, im.height - 1);
  const double fx = sx - x0, fy = sy - y0;
  return (1 - fy) * ((1 - fx) * im.at(y0, x0, c) + fx * im.at(y0, x1, c)) +
         fy * ((1 - fx) * im.at(y1, x0, c) + fx * im.at(y1, x1, c));
}

TEST(DataPipelineAugment, RotationMatchesFloat64Reference) {
  Image im = smooth_pattern(31, 37, 1);
  AugmentOptions o = no_augmentation();
  o.rotation_degrees = 25;
  nn::Generator gen(42);
  nn::Generator copy = gen;
  AugmentParams p = nn::data::draw_augment_params(o, copy);
  EXPECT_GT(std::abs(p.rotation), 1e-3);
  EXPECT_LE(std::abs(p.rotation), 25 * M_PI / 180);
  EXPECT_EQ(p.zoom, 1.0);
  EXPECT_EQ(p.shear, 0.0);
  EXPECT_EQ(p.translate_x, 0.0);
  Image out = nn::data::augment(im, o, gen);
  EXPECT_EQ(gen.offset(), copy.offset());
  double worst = 0;
  for (auto [y, x] : std::vector<std::pair<int64_t, int64_t>>{{15, 18}, {0, 0}, {3, 30}, {30, 36}, {20, 5}, {10, 25}})
    worst = std::max(worst, std::abs(out.at(y, x, 0) - reference_sample(im, p, y, x, 0)));
  EXPECT_LT(worst, 2e-6);
  // The centre pixel is a fixed point of a rotation.
  EXPECT_NEAR(out.at(15, 18, 0), im.at(15, 18, 0), 1e-6);

  // Every geometric parameter at once, RGB, against the reference at every pixel.
  AugmentParams q;
  q.zoom = 0.85;
  q.shear = -0.15;
  q.rotation = 0.3;
  q.translate_x = 0.04;
  q.translate_y = -0.03;
  Image rgb = smooth_pattern(23, 29, 3);
  Image r = nn::data::apply_augment(rgb, q);
  worst = 0;
  for (int64_t y = 0; y < 23; ++y)
    for (int64_t x = 0; x < 29; ++x)
      for (int64_t c = 0; c < 3; ++c) worst = std::max(worst, std::abs(r.at(y, x, c) - reference_sample(rgb, q, y, x, c)));
  EXPECT_LT(worst, 2e-6);
  // Positive rotation turns the content clockwise (y down): a point right of the centre comes
  // from above-right of it.
  Image spot = make_image(41, 41, 1);
  px(spot, 20 - 10, 20 + 17) = 1.0f;  // at angle 30 degrees above the +x axis, radius ~19.7
  AugmentParams rot;
  rot.rotation = std::atan2(10.0, 17.0);
  Image turned = nn::data::apply_augment(spot, rot);
  const int64_t target = static_cast<int64_t>(std::lround(20 + std::hypot(10.0, 17.0)));
  EXPECT_GT(turned.at(20, target, 0), 0.3f);
}

TEST(DataPipelineAugment, FlipBrightnessContrast) {
  Image im = smooth_pattern(5, 6, 1);
  AugmentParams p;
  p.flip = true;
  Image f = nn::data::apply_augment(im, p);
  for (int64_t y = 0; y < 5; ++y)
    for (int64_t x = 0; x < 6; ++x) EXPECT_EQ(f.at(y, x, 0), im.at(y, 5 - x, 0));

  Image flat = make_image(2, 2, 2, 0.5f);  // gray + alpha
  px(flat, 0, 0, 0) = 0.2f;
  px(flat, 1, 1, 0) = 0.8f;
  AugmentParams b;
  b.brightness = 0.1;
  b.contrast = 2.0;
  Image bc = nn::data::apply_augment(flat, b);
  // brightness: 0.3, 0.6, 0.6, 0.9 (mean 0.6); contrast x2 about 0.6: 0.0, 0.6, 0.6, 1.2 -> 1.0
  EXPECT_NEAR(bc.at(0, 0, 0), 0.0f, 1e-6);
  EXPECT_NEAR(bc.at(0, 1, 0), 0.6f, 1e-6);
  EXPECT_NEAR(bc.at(1, 1, 0), 1.0f, 1e-6);
  EXPECT_EQ(bc.at(0, 0, 1), 0.5f);  // alpha untouched
  // Flip option: about half of the draws flip.
  AugmentOptions o = no_augmentation();
  o.horizontal_flip = true;
  int flips = 0;
  for (uint64_t s = 0; s < 200; ++s) {
    nn::Generator g(s);
    flips += nn::data::draw_augment_params(o, g).flip;
  }
  EXPECT_GT(flips, 70);
  EXPECT_LT(flips, 130);
}

TEST(DataPipelineAugment, AspectScalesHorizontallyAboutTheCentre) {
  // A bright column 8 pixels right of the centre; a horizontal sampling scale of 2 (the content
  // squeezed to half its width) brings it to 4 pixels right of the centre, rows unchanged.
  Image im{21, 21, 1, std::vector<float>(21 * 21, 0.0f)};
  for (int64_t y = 0; y < 21; ++y) im.pixels[static_cast<size_t>(y * 21 + 18)] = 1.0f;
  nn::data::AugmentParams p;
  p.aspect = 2.0;
  Image out = nn::data::apply_augment(im, p);
  for (int64_t y = 0; y < 21; ++y)
    for (int64_t x = 0; x < 21; ++x)
      EXPECT_NEAR(out.pixels[static_cast<size_t>(y * 21 + x)], x == 14 ? 1.0f : 0.0f, 1e-6) << y << "," << x;
  // Drawn log-uniformly within the range.
  AugmentOptions o{0, 0, 0, 0, false, 0, 0};
  o.aspect = 0.5;
  for (uint64_t seed = 0; seed < 50; ++seed) {
    nn::Generator g(seed);
    const double a = nn::data::draw_augment_params(o, g).aspect;
    EXPECT_TRUE(a >= 1 / 1.5 - 1e-12 && a <= 1.5 + 1e-12) << a;
  }
}

TEST(DataPipelineAugment, RangeAndSeeds) {
  AugmentOptions o;  // the defaults: everything but the flip
  o.horizontal_flip = true;
  o.brightness = 0.3;
  o.contrast = 0.5;
  for (int64_t channels : {1, 3, 4}) {
    Image im = smooth_pattern(32, 24, channels);
    px(im, 0, 0, 0) = 0.0f;
    px(im, 1, 1, 0) = 1.0f;
    std::vector<float> previous;
    for (uint64_t seed = 0; seed < 20; ++seed) {
      nn::Generator g1(seed), g2(seed);
      Image a = nn::data::augment(im, o, g1);
      Image b = nn::data::augment(im, o, g2);
      ASSERT_EQ(a.height, 32);
      ASSERT_EQ(a.width, 24);
      ASSERT_EQ(a.channels, channels);
      EXPECT_EQ(a.pixels, b.pixels) << "same seed, same output";
      EXPECT_EQ(g1.offset(), 3u);
      for (float v : a.pixels) {
        ASSERT_GE(v, 0.0f);
        ASSERT_LE(v, 1.0f);
      }
      if (!previous.empty()) {
        EXPECT_NE(a.pixels, previous) << "different seeds, different outputs";
      }
      previous = a.pixels;
      // A second draw from the same generator differs from the first.
      EXPECT_NE(nn::data::augment(im, o, g1).pixels, a.pixels);
    }
  }
}

TEST(DataPipelineAugment, Errors) {
  Image im = make_image(4, 4, 1);
  nn::Generator g(0);
  AugmentOptions o;
  o.zoom = 1.0;
  EXPECT_TRUE(contains(error_of([&] { nn::data::augment(im, o, g); }), "zoom"));
  o = AugmentOptions{};
  o.brightness = -0.1;
  EXPECT_TRUE(contains(error_of([&] { nn::data::augment(im, o, g); }), "brightness"));
  EXPECT_TRUE(contains(error_of([&] { nn::data::augment(Image{}, AugmentOptions{}, g); }), "empty image"));
}

// ---------------------------------------------------------------- loader

// In-memory samples: sample i is a 1x4x4 image whose pixels are i / 1000 (+ the label channel).
Image memory_image(const Sample& s) {
  const int64_t i = std::stoll(fs::path(s.path).stem().string());
  Image im = make_image(4, 4, 1, static_cast<float>(i) / 1000.0f);
  return im;
}

nn::Tensor plain_transform(const Image& im, nn::Generator&) { return chw_tensor(im); }

TEST(DataPipelineLoader, EverySampleOncePerEpoch) {
  std::vector<Sample> samples = make_samples(30, 45);
  std::vector<int64_t> indices;
  for (int64_t i = 0; i < 75; i += 1)
    if (i % 5 != 0) indices.push_back(i);  // 60 samples
  nn::data::LoaderOptions opt;
  opt.batch_size = 8;
  opt.workers = 3;
  opt.seed = 11;
  nn::data::DataLoader loader(samples, indices, plain_transform, opt, memory_image);
  EXPECT_EQ(loader.batches_per_epoch(), 8);
  EXPECT_EQ(loader.size(), 60);
  EXPECT_FALSE(loader.next().has_value());  // before start_epoch
  std::vector<int64_t> first_order;
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    loader.start_epoch(epoch);
    std::vector<int64_t> seen;
    int64_t batches = 0;
    while (auto batch = loader.next()) {
      ++batches;
      const int64_t n = static_cast<int64_t>(batch->indices.size());
      EXPECT_EQ(n, batches < 8 ? 8 : 4);
      ASSERT_EQ(batch->images.shape(), (nn::Shape{n, 1, 4, 4}));
      ASSERT_EQ(batch->labels.shape(), (nn::Shape{n}));
      EXPECT_EQ(batch->images.dtype(), nn::DType::f32);
      EXPECT_EQ(batch->labels.dtype(), nn::DType::i64);
      EXPECT_TRUE(batch->failed.empty());
      std::vector<float> px = batch->images.to_vector<float>();
      std::vector<int64_t> lb = batch->labels.to_vector<int64_t>();
      for (int64_t k = 0; k < n; ++k) {
        const int64_t idx = batch->indices[k];
        EXPECT_EQ(lb[k], samples[idx].label);
        EXPECT_FLOAT_EQ(px[k * 16 + 5], static_cast<float>(idx) / 1000.0f);
        seen.push_back(idx);
      }
    }
    EXPECT_EQ(batches, 8);
    EXPECT_FALSE(loader.next().has_value());  // stays at the end
    EXPECT_EQ(seen, nn::data::epoch_order(indices, [&] {
                std::vector<int64_t> l;
                for (auto& s : samples) l.push_back(s.label);
                return l;
              }(), 11, epoch, true, false));
    std::vector<int64_t> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, indices);
    if (epoch == 0) first_order = seen;
    else EXPECT_NE(seen, first_order);
  }

  // drop_last and no shuffle.
  opt.drop_last = true;
  opt.shuffle = false;
  nn::data::DataLoader dl(samples, indices, plain_transform, opt, memory_image);
  EXPECT_EQ(dl.batches_per_epoch(), 7);
  EXPECT_EQ(dl.size(), 56);
  dl.start_epoch(0);
  std::vector<int64_t> seen;
  while (auto b = dl.next()) seen.insert(seen.end(), b->indices.begin(), b->indices.end());
  EXPECT_EQ(seen, std::vector<int64_t>(indices.begin(), indices.begin() + 56));
}

TEST(DataPipelineLoader, DeterministicAcrossWorkerCounts) {
  DataTempDir dir;
  std::vector<Sample> samples;
  for (int i = 0; i < 23; ++i) {
    Sample s;
    s.path = (dir.path() / (std::to_string(i) + ".png")).string();
    s.label = i % 3 == 0;
    write_png(s.path, 7 * i, 16);
    samples.push_back(s);
  }
  AugmentOptions aug;  // the defaults
  aug.horizontal_flip = true;
  nn::data::SampleTransform transform = [aug](const Image& im, nn::Generator& gen) {
    return chw_tensor(nn::data::augment(nn::data::resize(im, 10, 10), aug, gen));
  };
  auto run = [&](int workers, int prefetch, bool balanced) {
    nn::data::LoaderOptions opt;
    opt.batch_size = 5;
    opt.workers = workers;
    opt.prefetch = prefetch;
    opt.balanced = balanced;
    opt.seed = 3;
    nn::data::DataLoader loader(samples, iota(23), transform, opt);
    std::vector<std::vector<float>> images;
    std::vector<std::vector<int64_t>> indices;
    for (int64_t epoch : {0, 1}) {
      loader.start_epoch(epoch);
      while (auto b = loader.next()) {
        images.push_back(b->images.to_vector<float>());
        indices.push_back(b->indices);
      }
    }
    return std::make_pair(images, indices);
  };
  for (bool balanced : {false, true}) {
    auto one = run(1, 1, balanced);
    auto three = run(3, 2, balanced);
    auto four = run(4, 5, balanced);
    ASSERT_EQ(one.first.size(), 10u);
    EXPECT_EQ(one.second, three.second);
    EXPECT_TRUE(one.first == three.first) << "batches differ between 1 and 3 workers";
    EXPECT_TRUE(one.first == four.first) << "batches differ between 1 and 4 workers";
    EXPECT_NE(one.first[0], one.first[5]);  // epochs differ
  }
}

TEST(DataPipelineLoader, FailedFilesAreReported) {
  DataTempDir dir;
  const fs::path r = dir.path();
  for (int i = 0; i < 6; ++i) write_png(r / "NORMAL" / ("IM-000" + std::to_string(i) + "-0001.png"), 10 * i);
  for (int i = 0; i < 5; ++i) write_png(r / "PNEUMONIA" / ("person" + std::to_string(i) + "_virus_1.png"), 100 + i);
  write_file(r / "PNEUMONIA" / "person9_virus_9.jpeg", std::string("\xff\xd8\xff\xe0 corrupt", 13));
  write_file(r / "PNEUMONIA" / "._person9_virus_9.jpeg", "AppleDouble");
  nn::data::ImageFolder f = nn::data::scan_image_folder(dir.str());
  ASSERT_EQ(f.samples.size(), 12u);  // the corrupt file is accepted by name
  const std::string broken = (r / "PNEUMONIA" / "person9_virus_9.jpeg").string();

  for (int64_t batch_size : {4, 1}) {
    nn::data::LoaderOptions opt;
    opt.batch_size = batch_size;
    opt.workers = 2;
    nn::data::DataLoader loader(f.samples, iota(12), plain_transform, opt);
    for (int64_t epoch : {0, 1}) {
      loader.start_epoch(epoch);
      int64_t delivered = 0;
      std::vector<std::string> failed;
      while (auto b = loader.next()) {
        delivered += static_cast<int64_t>(b->indices.size());
        EXPECT_EQ(b->images.size(0), static_cast<int64_t>(b->indices.size()));
        failed.insert(failed.end(), b->failed.begin(), b->failed.end());
      }
      EXPECT_EQ(delivered, 11);
      std::vector<std::string> all = loader.failures();
      ASSERT_EQ(all.size(), 1u);
      EXPECT_EQ(all[0].rfind(broken + ": ", 0), 0u) << all[0];
      // With batch_size 1 the broken sample's batch is skipped; its failure comes with the next
      // batch unless it was the last one.
      EXPECT_LE(failed.size(), 1u);
      if (batch_size == 4) {
        EXPECT_EQ(failed, all);
      }
    }
  }

  // cache_images: the same failure, images in sample order.
  nn::data::ImageCache cache = nn::data::cache_images(
      f.samples, [](const std::string& p) { return nn::data::to_grayscale(nn::data::load_image(p)); }, 3);
  ASSERT_EQ(cache.images.size(), 12u);
  ASSERT_EQ(cache.failed.size(), 1u);
  EXPECT_EQ(cache.failed[0].rfind(broken + ": ", 0), 0u);
  for (size_t i = 0; i < 12; ++i) {
    if (f.samples[i].path == broken) {
      EXPECT_EQ(cache.images[i].height, 0);
      continue;
    }
    Image direct = nn::data::to_grayscale(nn::data::load_image(f.samples[i].path));
    EXPECT_EQ(cache.images[i].pixels, direct.pixels);
  }
  // A loader served from the cache.
  auto from_cache = [&cache, &f](const Sample& s) {
    for (size_t i = 0; i < f.samples.size(); ++i)
      if (f.samples[i].path == s.path) {
        if (cache.images[i].pixels.empty()) throw nn::Error("not in the cache");
        return cache.images[i];
      }
    throw nn::Error("unknown sample");
  };
  nn::data::LoaderOptions opt;
  opt.batch_size = 12;
  nn::data::DataLoader cached(f.samples, iota(12), plain_transform, opt, from_cache);
  cached.start_epoch(0);
  auto b = cached.next();
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->indices.size(), 11u);
  ASSERT_EQ(b->failed.size(), 1u);
  EXPECT_TRUE(contains(b->failed[0], "not in the cache"));
  EXPECT_FALSE(cached.next().has_value());
}

TEST(DataPipelineLoader, AllFailedBatchesAreSkipped) {
  std::vector<Sample> samples = make_samples(6, 6);
  auto load = [](const Sample& s) {
    const int64_t i = std::stoll(fs::path(s.path).stem().string());
    if (i < 4 || i >= 10) throw std::runtime_error("boom " + std::to_string(i));
    return memory_image(s);
  };
  nn::data::LoaderOptions opt;
  opt.batch_size = 2;
  opt.shuffle = false;
  nn::data::DataLoader loader(samples, iota(12), plain_transform, opt, load);
  loader.start_epoch(0);
  std::vector<std::vector<int64_t>> batches;
  std::vector<std::string> failed;
  while (auto b = loader.next()) {
    batches.push_back(b->indices);
    failed.insert(failed.end(), b->failed.begin(), b->failed.end());
  }
  EXPECT_EQ(batches, (std::vector<std::vector<int64_t>>{{4, 5}, {6, 7}, {8, 9}}));
  EXPECT_EQ(failed.size(), 4u);  // 0..3 come with the first delivered batch; 10, 11 end the epoch
  EXPECT_EQ(loader.failures().size(), 6u);
  EXPECT_EQ(loader.failures()[5], "mem/11.png: boom 11");
}

TEST(DataPipelineLoader, BadTransformOutputIsAnError) {
  std::vector<Sample> samples = make_samples(3, 3);
  nn::data::LoaderOptions opt;
  opt.batch_size = 6;
  opt.shuffle = false;
  nn::data::SampleTransform varying = [](const Image& im, nn::Generator&) {
    return im.pixels[0] > 0.0025f ? nn::zeros({1, 3, 3}) : nn::zeros({1, 4, 4});
  };
  nn::data::DataLoader loader(samples, iota(6), varying, opt, memory_image);
  loader.start_epoch(0);
  EXPECT_TRUE(contains(error_of([&] { loader.next(); }), "different shapes"));
  nn::data::SampleTransform flat = [](const Image&, nn::Generator&) { return nn::zeros({16}); };
  nn::data::DataLoader loader2(samples, iota(6), flat, opt, memory_image);
  loader2.start_epoch(0);
  EXPECT_TRUE(contains(error_of([&] { loader2.next(); }), "(C, H, W)"));

  EXPECT_TRUE(contains(error_of([&] { nn::data::DataLoader(samples, {6}, plain_transform, opt, memory_image); }), "outside"));
  opt.batch_size = 0;
  EXPECT_TRUE(contains(error_of([&] { nn::data::DataLoader(samples, {0}, plain_transform, opt, memory_image); }), "batch_size"));
  opt.batch_size = 1;
  EXPECT_TRUE(contains(error_of([&] { nn::data::DataLoader(samples, {0}, nn::data::SampleTransform{}, opt); }), "transform"));
}

TEST(DataPipelineLoader, DestructorMidEpochDoesNotHang) {
  std::vector<Sample> samples = make_samples(100, 100);
  std::atomic<int> calls{0};
  nn::data::SampleTransform slow = [&calls](const Image& im, nn::Generator&) {
    ++calls;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return chw_tensor(im);
  };
  nn::data::LoaderOptions opt;
  opt.batch_size = 4;
  opt.workers = 3;
  opt.prefetch = 2;
  const auto t0 = std::chrono::steady_clock::now();
  {
    nn::data::DataLoader loader(samples, iota(200), slow, opt, memory_image);
    loader.start_epoch(0);
    ASSERT_TRUE(loader.next().has_value());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    // Prefetching is bounded: at most (1 + prefetch) batches were claimed.
    EXPECT_LE(calls.load(), (1 + opt.prefetch) * 4);
    loader.start_epoch(1);  // abandons epoch 0 mid-way
    ASSERT_TRUE(loader.next().has_value());
  }  // destroyed with samples in flight
  {
    nn::data::DataLoader idle(samples, iota(200), slow, opt, memory_image);  // never started
  }
  {
    nn::data::DataLoader started(samples, iota(200), slow, opt, memory_image);
    started.start_epoch(0);  // destroyed before the first batch
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // A hang would never end; the bounded work above takes well under a second, so 20 s is only a
  // margin for a loaded machine (CI must not fail by chance), not a speed target.
  EXPECT_LT(seconds, 20.0);
  EXPECT_LT(calls.load(), 100);  // nowhere near a whole epoch
}

TEST(DataPipelineLoader, RestartingEpochsMidWay) {
  std::vector<Sample> samples = make_samples(40, 40);
  std::vector<int64_t> labels;
  for (const Sample& s : samples) labels.push_back(s.label);
  nn::data::LoaderOptions opt;
  opt.batch_size = 3;
  opt.workers = 4;
  opt.prefetch = 3;
  opt.seed = 5;
  nn::data::DataLoader loader(samples, iota(80), plain_transform, opt, memory_image);
  for (int64_t round = 0; round < 60; ++round) {
    const int64_t epoch = round % 7;
    loader.start_epoch(epoch);
    std::vector<int64_t> order = nn::data::epoch_order(iota(80), labels, 5, epoch, true, false);
    std::vector<int64_t> seen;
    for (int64_t k = 0; k < round % 4; ++k) {
      auto b = loader.next();
      ASSERT_TRUE(b.has_value());
      seen.insert(seen.end(), b->indices.begin(), b->indices.end());
    }
    EXPECT_EQ(seen, std::vector<int64_t>(order.begin(), order.begin() + static_cast<int64_t>(seen.size())));
  }
}

// ---------------------------------------------------------------- the real data (label: data)

TEST(DataPipelineRealData, ScanSplitLoad) {
  const std::string root = NN_SOURCE_DIR "/../shared/data/chest_xray/train";
  if (!fs::is_directory(root)) GTEST_SKIP() << root << " is absent";
  nn::data::ImageFolder f = nn::data::scan_image_folder(root);
  EXPECT_EQ(f.classes, (std::vector<std::string>{"NORMAL", "PNEUMONIA"}));
  ASSERT_EQ(f.samples.size(), 5216u);
  std::vector<int64_t> labels;
  for (const Sample& s : f.samples) labels.push_back(s.label);
  EXPECT_EQ(std::count(labels.begin(), labels.end(), 0), 1341);
  EXPECT_EQ(std::count(labels.begin(), labels.end(), 1), 3875);
  // (The patient-level split of this folder: ChestXrayFolderRealData in test_chest_xray_folder.cpp.)
  nn::data::Split split = nn::data::stratified_split(f.samples, 0.1, 0);
  int64_t val_normal = 0;
  for (int64_t i : split.val) val_normal += labels[i] == 0;
  EXPECT_EQ(split.val.size(), 522u);
  EXPECT_EQ(val_normal, 134);
  std::vector<double> w = nn::data::class_weights(labels, 2);
  EXPECT_NEAR(w[0], 5216.0 / 2682.0, 1e-12);

  nn::data::LoaderOptions opt;
  opt.batch_size = 8;
  opt.seed = 1;
  AugmentOptions aug;
  nn::data::DataLoader loader(f.samples, split.train, [aug](const Image& im, nn::Generator& gen) {
    return chw_tensor(nn::data::augment(nn::data::resize(nn::data::to_grayscale(im), 64, 64), aug, gen));
  }, opt);
  loader.start_epoch(0);
  auto b = loader.next();
  ASSERT_TRUE(b.has_value());
  EXPECT_TRUE(b->failed.empty()) << ::testing::PrintToString(b->failed);
  EXPECT_EQ(b->images.shape(), (nn::Shape{8, 1, 64, 64}));
  EXPECT_EQ(b->labels.shape(), (nn::Shape{8}));
  std::vector<float> v = b->images.to_vector<float>();
  EXPECT_GE(*std::min_element(v.begin(), v.end()), 0.0f);
  EXPECT_LE(*std::max_element(v.begin(), v.end()), 1.0f);
  EXPECT_GT(*std::max_element(v.begin(), v.end()), 0.5f);
}
