// Keras .h5 reader (weights/src/keras_h5.h). The files are written here with the HDF5 C API, in
// Keras' layout: a small VGG11 (reduced channels, so nothing may assume 64..512) in both weight
// naming styles (Keras 1 "block1_conv1_W_1:0", Keras 2 "block1_conv1/kernel:0"), with and
// without the top, at the root and under /model_weights, with fixed- and variable-length string
// attributes. Every converted tensor is compared element by element with the transpose or
// reorder computed here by explicit index loops, and fc1's reorder is also checked semantically
// (the logits of a torchvision-flattened feature map equal Keras' on its HWC flattening; a converted
// uniform-width VGG11 loads into nn::models::VGG and its logits equal Keras' head). Then one
// test per refused input, each an nn::Error with a message naming what is wrong, never a crash or
// output on stderr. KerasH5Golden writes files with h5py exactly as Keras does
// (tests/golden/make_keras_h5.py) and skips when /usr/bin/python3 lacks h5py or numpy.
#include <gtest/gtest.h>

#include "scratch_dir.h"
#if __has_include(<hdf5.h>)
#include <hdf5.h>
#else
#include <hdf5/serial/hdf5.h>  // Debian's location, when HDF5's include directory is not on the path
#endif
#include <keras_h5.h>
#include <nn/models/vgg.h>
#include <nn/nn.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using nn::weights::ConvertedWeights;
using nn::weights::read_keras_h5;

namespace {


// ---- A Keras file described in memory ---------------------------------------------------------

enum class DataType { f32, f64, i32 };

struct Weight {
  std::string name;  // as listed in weight_names, relative to the layer's group
  nn::Shape shape;
  std::vector<float> values;  // row-major over shape
  DataType type = DataType::f32;
  bool written = true;  // false: listed in weight_names, but no dataset
};

struct Layer {
  std::string name;
  std::vector<Weight> weights;  // empty: a weightless layer (input, pool, flatten)
  bool has_weight_names = true;
};

struct KerasFile {
  std::vector<Layer> layers;
  bool model_weights_group = false;  // model.save(): everything under /model_weights
  bool variable_length_strings = false;
  bool write_layer_names = true;
  bool chunked_layer_names = false;  // layer_names0, layer_names1 (Keras' split of big attributes)
  std::string backend;               // the 'backend' attribute, when not empty

  Layer& layer(const std::string& name) {
    for (Layer& l : layers)
      if (l.name == name) return l;
    throw std::runtime_error("no layer " + name);
  }
  const Layer& layer(const std::string& name) const { return const_cast<KerasFile*>(this)->layer(name); }
};

enum class Style { keras1, keras2 };

// The small VGG11: conv layers (Keras names) with their output channels, pools after each block,
// a 3x3 last pooling grid and dense layers 72 -> 10 -> 10 -> 5.
struct ConvSpec {
  const char* name;
  int64_t out;
  bool pool_after;
};
const std::vector<ConvSpec> kConvs = {
    {"block1_conv1", 4, true},  {"block2_conv1", 5, true},  {"block3_conv1", 6, false},
    {"block3_conv2", 6, true},  {"block4_conv1", 7, false}, {"block4_conv2", 7, true},
    {"block5_conv1", 8, false}, {"block5_conv2", 8, true}};
constexpr int64_t kGrid = 3;  // the last pool's H = W
const std::vector<std::pair<const char*, int64_t>> kDense = {{"fc1", 10}, {"fc2", 10}, {"predictions", 5}};
// torchvision's names of those layers, in order (VGG11: convolutions at features.0, 3, 6, ...).
const std::vector<std::string> kTorchConvs = {"features.0",  "features.3",  "features.6",  "features.8",
                                              "features.11", "features.13", "features.16", "features.18"};
const std::vector<std::string> kTorchDense = {"classifier.0", "classifier.3", "classifier.6"};

std::vector<float> random_values(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<Weight> kernel_and_bias(const std::string& layer, Style style, const nn::Shape& kernel_shape,
                                    std::mt19937& rng) {
  const int64_t out = kernel_shape.back();
  const std::string kernel = style == Style::keras2 ? layer + "/kernel:0" : layer + "_W_1:0";
  const std::string bias = style == Style::keras2 ? layer + "/bias:0" : layer + "_b_1:0";
  return {{kernel, kernel_shape, random_values(nn::shape_numel(kernel_shape), rng)},
          {bias, {out}, random_values(out, rng)}};
}

// The Keras layer list of the small VGG11 with random weights from `seed`.
KerasFile small_vgg11(Style style, bool include_top, uint32_t seed = 7) {
  std::mt19937 rng(seed);
  KerasFile f;
  f.layers.push_back({"input_1", {}});
  int64_t in = 3;
  for (const ConvSpec& c : kConvs) {
    f.layers.push_back({c.name, kernel_and_bias(c.name, style, {3, 3, in, c.out}, rng)});
    in = c.out;
    if (c.pool_after) f.layers.push_back({std::string(c.name).substr(0, 6) + "_pool", {}});
  }
  if (include_top) {
    f.layers.push_back({"flatten", {}});
    int64_t features = in * kGrid * kGrid;
    for (const auto& [name, out] : kDense) {
      f.layers.push_back({name, kernel_and_bias(name, style, {features, out}, rng)});
      features = out;
    }
  }
  return f;
}

// ---- Writing it with the HDF5 C API -----------------------------------------------------------

// Owns one HDF5 identifier.
class Id {
 public:
  Id(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {
    if (id < 0) throw std::runtime_error("HDF5 call failed while writing a test file");
  }
  ~Id() { close_(id_); }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  operator hid_t() const { return id_; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

void ok(herr_t status) {
  if (status < 0) throw std::runtime_error("HDF5 call failed while writing a test file");
}

// A 1-D string attribute: fixed-length NULLPAD byte strings (numpy 'S', as h5py writes the
// published files) or variable-length UTF-8 strings.
void write_strings(hid_t loc, const std::string& name, const std::vector<std::string>& values, bool variable) {
  const hsize_t n = values.size();
  Id space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Id type(H5Tcopy(H5T_C_S1), H5Tclose);
  if (variable) {
    ok(H5Tset_size(type, H5T_VARIABLE));
    ok(H5Tset_cset(type, H5T_CSET_UTF8));
    Id attr(H5Acreate2(loc, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    std::vector<const char*> pointers;
    for (const std::string& v : values) pointers.push_back(v.c_str());
    ok(H5Awrite(attr, type, pointers.data()));
  } else {
    size_t width = 1;
    for (const std::string& v : values) width = std::max(width, v.size());
    ok(H5Tset_size(type, width));
    ok(H5Tset_strpad(type, H5T_STR_NULLPAD));
    std::vector<char> bytes(values.size() * width, '\0');
    for (size_t i = 0; i < values.size(); ++i) std::copy(values[i].begin(), values[i].end(), &bytes[i * width]);
    Id attr(H5Acreate2(loc, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    ok(H5Awrite(attr, type, bytes.data()));
  }
}

// An empty float64 array attribute: what Keras stores as weight_names of weightless layers.
void write_empty_attribute(hid_t loc, const std::string& name) {
  const hsize_t zero = 0;
  Id space(H5Screate_simple(1, &zero, nullptr), H5Sclose);
  Id attr(H5Acreate2(loc, name.c_str(), H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
}

void write_dataset(hid_t group, const Weight& w) {
  std::vector<hsize_t> dims(w.shape.begin(), w.shape.end());
  Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  Id lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  ok(H5Pset_create_intermediate_group(lcpl, 1));  // Keras 2 names hold a '/'
  hid_t file_type = w.type == DataType::f32 ? H5T_IEEE_F32LE : w.type == DataType::f64 ? H5T_IEEE_F64LE : H5T_STD_I32LE;
  Id dataset(H5Dcreate2(group, w.name.c_str(), file_type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
  if (w.type == DataType::f64) {
    std::vector<double> values(w.values.begin(), w.values.end());
    ok(H5Dwrite(dataset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()));
  } else if (w.type == DataType::i32) {
    std::vector<int32_t> values(w.values.begin(), w.values.end());
    ok(H5Dwrite(dataset, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()));
  } else {
    ok(H5Dwrite(dataset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w.values.data()));
  }
}

void write_keras_file(const std::string& path, const KerasFile& f) {
  Id file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  Id group(f.model_weights_group ? H5Gcreate2(file, "model_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)
                                 : H5Gopen2(file, "/", H5P_DEFAULT),
           H5Gclose);
  std::vector<std::string> names;
  for (const Layer& l : f.layers) names.push_back(l.name);
  if (f.write_layer_names && f.chunked_layer_names) {
    const size_t half = names.size() / 2;
    write_strings(group, "layer_names0", {names.begin(), names.begin() + half}, f.variable_length_strings);
    write_strings(group, "layer_names1", {names.begin() + half, names.end()}, f.variable_length_strings);
  } else if (f.write_layer_names) {
    write_strings(group, "layer_names", names, f.variable_length_strings);
  }
  if (!f.backend.empty()) write_strings(group, "backend", {f.backend}, f.variable_length_strings);
  for (const Layer& l : f.layers) {
    Id layer(H5Gcreate2(group, l.name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    std::vector<std::string> weight_names;
    for (const Weight& w : l.weights) weight_names.push_back(w.name);
    if (l.has_weight_names && weight_names.empty()) write_empty_attribute(layer, "weight_names");
    if (l.has_weight_names && !weight_names.empty())
      write_strings(layer, "weight_names", weight_names, f.variable_length_strings);
    for (const Weight& w : l.weights)
      if (w.written) write_dataset(layer, w);
  }
}

// ---- Expectations computed independently ------------------------------------------------------

const nn::Tensor& find(const ConvertedWeights& c, const std::string& name) {
  for (const auto& [n, t] : c.tensors)
    if (n == name) return t;
  throw std::runtime_error("no tensor " + name);
}

void expect_values(const nn::Tensor& actual, const nn::Shape& shape, const std::vector<float>& expected,
                   const std::string& what) {
  ASSERT_EQ(actual.dtype(), nn::f32) << what;
  ASSERT_EQ(actual.shape(), shape) << what;
  std::vector<float> got = actual.to_vector<float>();
  ASSERT_EQ(got.size(), expected.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], expected[i]) << what << " element " << i;
}

// Keras (kh, kw, in, out) -> torchvision (out, in, kh, kw).
std::vector<float> expected_conv(const Weight& k) {
  const int64_t KH = k.shape[0], KW = k.shape[1], I = k.shape[2], O = k.shape[3];
  std::vector<float> t(k.values.size());
  for (int64_t o = 0; o < O; ++o)
    for (int64_t i = 0; i < I; ++i)
      for (int64_t h = 0; h < KH; ++h)
        for (int64_t w = 0; w < KW; ++w)
          t[((o * I + i) * KH + h) * KW + w] = k.values[((h * KW + w) * I + i) * O + o];
  return t;
}

// Keras (in, out) with in flattened as (H, W, C) -> torchvision (out, in) with in as (C, H, W).
std::vector<float> expected_dense(const Weight& k, int64_t C, int64_t H, int64_t W) {
  const int64_t in = k.shape[0], O = k.shape[1];
  std::vector<float> t(k.values.size());
  for (int64_t o = 0; o < O; ++o)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w) t[o * in + c * H * W + h * W + w] = k.values[(h * W * C + w * C + c) * O + o];
  return t;
}

// Checks every tensor of the conversion of `f` (a small_vgg11) against the expectations above.
void expect_converted(const ConvertedWeights& c, const KerasFile& f, bool include_top, const std::string& file) {
  std::vector<std::string> expected_names;
  for (size_t k = 0; k < kConvs.size(); ++k) {
    const Layer& l = f.layer(kConvs[k].name);
    const Weight& kernel = l.weights[0];
    const int64_t in = kernel.shape[2], out = kernel.shape[3];
    expect_values(find(c, kTorchConvs[k] + ".weight"), {out, in, 3, 3}, expected_conv(kernel), kTorchConvs[k]);
    expect_values(find(c, kTorchConvs[k] + ".bias"), {out}, l.weights[1].values, kTorchConvs[k] + ".bias");
    expected_names.push_back(kTorchConvs[k] + ".weight");
    expected_names.push_back(kTorchConvs[k] + ".bias");
  }
  if (include_top) {
    for (size_t k = 0; k < kDense.size(); ++k) {
      const Layer& l = f.layer(kDense[k].first);
      const Weight& kernel = l.weights[0];
      const int64_t in = kernel.shape[0], out = kernel.shape[1];
      const std::vector<float> expected =
          k == 0 ? expected_dense(kernel, kConvs.back().out, kGrid, kGrid) : expected_dense(kernel, in, 1, 1);
      expect_values(find(c, kTorchDense[k] + ".weight"), {out, in}, expected, kTorchDense[k]);
      expect_values(find(c, kTorchDense[k] + ".bias"), {out}, l.weights[1].values, kTorchDense[k] + ".bias");
      expected_names.push_back(kTorchDense[k] + ".weight");
      expected_names.push_back(kTorchDense[k] + ".bias");
    }
  }
  std::vector<std::string> names;
  for (const auto& [name, t] : c.tensors) names.push_back(name);
  EXPECT_EQ(names, expected_names);  // every tensor, in the file's order, nothing else
  const std::map<std::string, std::string> meta = {{"preprocessing", "caffe"},
                                                   {"source_format", "keras-h5"},
                                                   {"source_file", fs::path(file).filename().string()},
                                                   {"architecture", "vgg11"}};
  EXPECT_EQ(c.metadata, meta);
}

// Reads `f` back after writing it, and checks everything.
void roundtrip(const KerasFile& f, bool include_top) {
  ScratchDir dir("keras_h5");
  const std::string path = dir.file("vgg11_weights.h5");
  write_keras_file(path, f);
  ConvertedWeights c = read_keras_h5(path);
  expect_converted(c, f, include_top, path);
}

// The message of the nn::Error reading `path` throws (fails the test when it throws anything else
// or nothing), checked to be silent on stderr.
std::string refusal(const std::string& path) {
  ::testing::internal::CaptureStderr();
  std::string message;
  try {
    read_keras_h5(path);
    ADD_FAILURE() << path << " was accepted";
  } catch (const nn::Error& e) {
    message = e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << path << ": not an nn::Error: " << e.what();
  }
  const std::string printed = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(printed, "") << "the reader printed on stderr";
  return message;
}

// Writes `f`, reads it, expects an nn::Error whose message contains every one of `parts`.
void expect_refused(const KerasFile& f, const std::vector<std::string>& parts) {
  ScratchDir dir("keras_h5");
  const std::string path = dir.file("bad.h5");
  write_keras_file(path, f);
  const std::string message = refusal(path);
  EXPECT_NE(message.find(path), std::string::npos) << "no file name in: " << message;
  for (const std::string& part : parts) EXPECT_NE(message.find(part), std::string::npos) << message;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// ---- Conversions ------------------------------------------------------------------------------

TEST(KerasH5, Keras2NamesWithTop) { roundtrip(small_vgg11(Style::keras2, true), true); }

TEST(KerasH5, Keras1NamesWithTop) { roundtrip(small_vgg11(Style::keras1, true, 11), true); }

TEST(KerasH5, Keras2NamesNoTop) { roundtrip(small_vgg11(Style::keras2, false, 13), false); }

TEST(KerasH5, Keras1NamesNoTop) { roundtrip(small_vgg11(Style::keras1, false, 17), false); }

TEST(KerasH5, ModelSaveLayoutWithVariableLengthStrings) {
  KerasFile f = small_vgg11(Style::keras2, true, 19);
  f.model_weights_group = true;
  f.variable_length_strings = true;
  f.backend = "tensorflow";
  roundtrip(f, true);
}

TEST(KerasH5, ChunkedLayerNames) {
  KerasFile f = small_vgg11(Style::keras2, true, 23);
  f.chunked_layer_names = true;
  roundtrip(f, true);
}

TEST(KerasH5, Float64DatasetsReadAsFloat32) {
  KerasFile f = small_vgg11(Style::keras1, true, 29);
  for (Layer& l : f.layers)
    for (Weight& w : l.weights) w.type = DataType::f64;  // values are floats: the round trip is exact
  roundtrip(f, true);
}

// Keras flattens the last pool's (H, W, C) output; torchvision flattens (C, H, W). With the
// converted fc1 weight, torchvision's logits on a feature map equal Keras' on the same map.
TEST(KerasH5, Fc1ReorderKeepsLogits) {
  ScratchDir dir("keras_h5");
  const std::string path = dir.file("top.h5");
  const KerasFile f = small_vgg11(Style::keras2, true, 31);
  write_keras_file(path, f);
  ConvertedWeights c = read_keras_h5(path);

  const int64_t C = kConvs.back().out, in = C * kGrid * kGrid, out = kDense[0].second;
  nn::Generator gen(5);
  nn::Tensor features = nn::randn({2, C, kGrid, kGrid}, gen);  // NCHW, as nn's VGG produces
  nn::Tensor torch_logits = nn::linear(nn::flatten(features, 1), find(c, "classifier.0.weight"));
  const Weight& keras_kernel = f.layer("fc1").weights[0];
  nn::Tensor keras_flat = features.permute({0, 2, 3, 1}).contiguous().reshape({2, in});  // NHWC, flattened
  nn::Tensor keras_logits = nn::matmul(keras_flat, nn::from_vector(keras_kernel.values, {in, out}));
  std::vector<float> a = torch_logits.to_vector<float>(), b = keras_logits.to_vector<float>();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4f) << i;
}

// A global-pooled head (fc1 takes C inputs: a 1x1 grid) and a single dense layer are VGG tops too.
TEST(KerasH5, OneByOneGridAndShortTop) {
  KerasFile f = small_vgg11(Style::keras2, false, 37);
  std::mt19937 rng(3);
  f.layers.push_back({"dense", kernel_and_bias("dense", Style::keras2, {8, 2}, rng)});
  ScratchDir dir("keras_h5");
  const std::string path = dir.file("gap.h5");
  write_keras_file(path, f);
  ConvertedWeights c = read_keras_h5(path);
  expect_values(find(c, "classifier.0.weight"), {2, 8}, expected_dense(f.layer("dense").weights[0], 8, 1, 1),
                "classifier.0");
  EXPECT_EQ(c.tensors.size(), 18u);
}

// A uniform-width VGG11 (torchvision's channels / 16, 64x64 inputs: a 2x2 last pool) converted
// from Keras loads strictly into nn::models::VGG, and its logits equal Keras' head applied by hand
// to the same features: flattened in (H, W, C) order through the Keras kernels.
TEST(KerasH5, ConvertedWeightsLoadIntoVGG) {
  std::mt19937 rng(41);
  KerasFile f;
  int64_t in = 3, hw = 64;
  int block = 1, conv_in_block = 0;
  for (int64_t c : nn::models::vgg_config(11)) {
    if (c == 0) {
      f.layers.push_back({"block" + std::to_string(block++) + "_pool", {}});
      conv_in_block = 0;
      hw /= 2;
      continue;
    }
    const std::string name = "block" + std::to_string(block) + "_conv" + std::to_string(++conv_in_block);
    f.layers.push_back({name, kernel_and_bias(name, Style::keras2, {3, 3, in, c / 16}, rng)});
    in = c / 16;
  }
  const std::vector<std::pair<std::string, int64_t>> dense = {{"fc1", 16}, {"fc2", 16}, {"predictions", 3}};
  int64_t features = in * hw * hw;
  for (const auto& [name, out] : dense) {
    f.layers.push_back({name, kernel_and_bias(name, Style::keras2, {features, out}, rng)});
    features = out;
  }
  ScratchDir dir("keras_h5");
  const std::string path = dir.file("vgg11_w16.h5");
  write_keras_file(path, f);
  ConvertedWeights c = read_keras_h5(path);

  nn::models::VGGOptions options = nn::models::infer_vgg_options(c.tensors);
  EXPECT_EQ(options.depth, 11);
  EXPECT_EQ(options.input_size, 64);
  EXPECT_EQ(options.num_classes, 3);
  nn::Generator gen(0);
  nn::models::VGG model(options, gen);
  model.load_state_dict(c.tensors, /*strict=*/true);
  model.eval();

  nn::NoGradGuard no_grad;
  nn::Tensor x = nn::randn({2, 3, 64, 64}, gen);
  nn::Tensor logits = model.forward(x);
  nn::Tensor h = model.forward_features(x).permute({0, 2, 3, 1}).contiguous().reshape({2, in * hw * hw});
  for (const auto& [name, out] : dense) {
    const Layer& l = f.layer(name);
    const nn::Shape& k = l.weights[0].shape;
    h = nn::add(nn::matmul(h, nn::from_vector(l.weights[0].values, k)), nn::from_vector(l.weights[1].values, {out}));
    if (name != "predictions") h = nn::relu(h);
  }
  std::vector<float> a = logits.to_vector<float>(), b = h.to_vector<float>();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4f * (1.0f + std::abs(b[i]))) << i;
}

// ---- Refusals ---------------------------------------------------------------------------------

TEST(KerasH5, RefusesKernelNot3x3) {
  KerasFile f = small_vgg11(Style::keras2, true);
  std::mt19937 rng(1);
  f.layer("block2_conv1").weights = kernel_and_bias("block2_conv1", Style::keras2, {5, 5, 4, 5}, rng);
  expect_refused(f, {"block2_conv1", "5x5", "3x3"});
}

TEST(KerasH5, RefusesChannelMismatch) {
  KerasFile f = small_vgg11(Style::keras2, true);
  std::mt19937 rng(1);
  f.layer("block3_conv2").weights = kernel_and_bias("block3_conv2", Style::keras2, {3, 3, 7, 6}, rng);
  expect_refused(f, {"block3_conv2", "takes 7 input channels", "'block3_conv1') has 6"});
}

TEST(KerasH5, RefusesFirstConvNotRgb) {
  KerasFile f = small_vgg11(Style::keras1, false);
  std::mt19937 rng(1);
  f.layer("block1_conv1").weights = kernel_and_bias("block1_conv1", Style::keras1, {3, 3, 1, 4}, rng);
  expect_refused(f, {"block1_conv1", "3-channel"});
}

TEST(KerasH5, RefusesFc1NotCHW) {
  for (int64_t fc1_in : {73, 8 * 6}) {  // not a multiple of C = 8; a multiple, but 6 is no square
    KerasFile f = small_vgg11(Style::keras2, true);
    std::mt19937 rng(1);
    f.layer("fc1").weights = kernel_and_bias("fc1", Style::keras2, {fc1_in, 10}, rng);
    expect_refused(f, {"fc1", "takes " + std::to_string(fc1_in) + " inputs", "C*H*W", "C = 8"});
  }
}

TEST(KerasH5, RefusesBiasLengthMismatch) {
  KerasFile f = small_vgg11(Style::keras2, true);
  f.layer("block4_conv1").weights[1].shape = {3};
  f.layer("block4_conv1").weights[1].values.resize(3);
  expect_refused(f, {"block4_conv1", "bias", "has 3 elements", "7 outputs"});
}

TEST(KerasH5, RefusesDenseChainMismatch) {
  KerasFile f = small_vgg11(Style::keras2, true);
  std::mt19937 rng(1);
  f.layer("fc2").weights = kernel_and_bias("fc2", Style::keras2, {11, 10}, rng);
  expect_refused(f, {"fc2", "takes 11 inputs", "previous dense layer has 10"});
}

TEST(KerasH5, RefusesWrongRank) {
  KerasFile f = small_vgg11(Style::keras2, true);
  std::mt19937 rng(1);
  f.layer("block2_conv1").weights = kernel_and_bias("block2_conv1", Style::keras2, {9, 4, 5}, rng);
  expect_refused(f, {"block2_conv1", "rank 4"});
  f = small_vgg11(Style::keras2, true);
  f.layer("fc1").weights[1].shape = {1, 10};
  expect_refused(f, {"fc1", "bias", "rank 1"});
}

TEST(KerasH5, RefusesUnknownConvCount) {
  KerasFile f = small_vgg11(Style::keras2, false);
  std::vector<Layer> kept;
  for (Layer& l : f.layers)
    if (l.name != "block5_conv2") kept.push_back(l);  // block5_conv1 keeps 8 channels: a chain of 7
  f.layers = kept;
  expect_refused(f, {"7 convolution layers", "8, 10, 13 and 16"});
}

TEST(KerasH5, RefusesMoreThanThreeDense) {
  KerasFile f = small_vgg11(Style::keras2, true);
  std::mt19937 rng(1);
  f.layers.push_back({"extra", kernel_and_bias("extra", Style::keras2, {5, 5}, rng)});
  expect_refused(f, {"4 dense layers", "at most 3"});
}

TEST(KerasH5, RefusesConvAfterDense) {
  KerasFile f = small_vgg11(Style::keras2, true);
  std::mt19937 rng(1);
  f.layers.push_back({"late_conv", kernel_and_bias("late_conv", Style::keras2, {3, 3, 5, 5}, rng)});
  expect_refused(f, {"late_conv", "after a dense layer"});
}

TEST(KerasH5, RefusesMissingDataset) {
  KerasFile f = small_vgg11(Style::keras2, true);
  f.layer("block3_conv1").weights[0].written = false;
  expect_refused(f, {"block3_conv1", "'block3_conv1/kernel:0'", "no dataset /block3_conv1/block3_conv1/kernel:0"});
  f = small_vgg11(Style::keras1, true);
  f.model_weights_group = true;
  f.layer("fc2").weights[1].written = false;
  expect_refused(f, {"fc2", "no dataset /model_weights/fc2/fc2_b_1:0"});
}

TEST(KerasH5, RefusesMissingLayerGroup) {
  KerasFile f = small_vgg11(Style::keras2, true);
  ScratchDir dir("keras_h5");
  const std::string path = dir.file("ghost.h5");
  write_keras_file(path, f);
  {  // list a layer that has no group
    Id file(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
    ok(H5Adelete(file, "layer_names"));
    std::vector<std::string> names = {"input_1", "ghost"};
    write_strings(file, "layer_names", names, false);
  }
  const std::string message = refusal(path);
  EXPECT_NE(message.find("layer 'ghost'"), std::string::npos) << message;
  EXPECT_NE(message.find("no group /ghost"), std::string::npos) << message;
}

TEST(KerasH5, RefusesMissingLayerNames) {
  KerasFile f = small_vgg11(Style::keras2, true);
  f.write_layer_names = false;
  expect_refused(f, {"no 'layer_names' attribute"});
  f.model_weights_group = true;
  expect_refused(f, {"/model_weights has no 'layer_names' attribute"});
}

TEST(KerasH5, RefusesMissingWeightNames) {
  KerasFile f = small_vgg11(Style::keras2, true);
  f.layer("block2_pool").has_weight_names = false;
  expect_refused(f, {"block2_pool", "no 'weight_names' attribute"});
}

TEST(KerasH5, RefusesNonFloatData) {
  KerasFile f = small_vgg11(Style::keras2, true);
  f.layer("block1_conv1").weights[0].type = DataType::i32;
  expect_refused(f, {"block1_conv1", "holds integer data", "float32 or float64"});
}

TEST(KerasH5, RefusesNonStringLayerNames) {
  ScratchDir dir("keras_h5");
  const std::string path = dir.file("numbers.h5");
  {
    Id file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    const hsize_t n = 2;
    const int32_t values[2] = {1, 2};
    Id space(H5Screate_simple(1, &n, nullptr), H5Sclose);
    Id attr(H5Acreate2(file, "layer_names", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    ok(H5Awrite(attr, H5T_NATIVE_INT32, values));
  }
  const std::string message = refusal(path);
  EXPECT_NE(message.find("'layer_names' holds integer data"), std::string::npos) << message;
}

TEST(KerasH5, RefusesOddWeightCount) {
  KerasFile f = small_vgg11(Style::keras2, true);
  Layer& l = f.layer("block2_conv1");
  l.weights.push_back({"block2_conv1/extra:0", {5}, std::vector<float>(5, 1.0f)});
  expect_refused(f, {"block2_conv1", "has 3 weights", "(kernel, bias) pairs"});
}

TEST(KerasH5, RefusesTheanoFiles) {
  KerasFile f = small_vgg11(Style::keras1, true);
  f.backend = "theano";
  expect_refused(f, {"Theano"});
}

TEST(KerasH5, RefusesMissingFile) {
  ScratchDir dir("keras_h5");
  const std::string message = refusal(dir.file("absent.h5"));
  EXPECT_NE(message.find("absent.h5: cannot open: no such file"), std::string::npos) << message;
}

TEST(KerasH5, RefusesNonHdf5File) {
  ScratchDir dir("keras_h5");
  const std::string path = dir.file("weights.h5");
  write_bytes(path, "this is not an HDF5 file, just some text that is long enough to be read\n");
  const std::string message = refusal(path);
  EXPECT_NE(message.find(path + ": not an HDF5 file"), std::string::npos) << message;
}

TEST(KerasH5, RefusesEmptyFile) {
  ScratchDir dir("keras_h5");
  const std::string path = dir.file("empty.h5");
  write_bytes(path, "");
  const std::string message = refusal(path);
  EXPECT_NE(message.find(path + ": the file is empty"), std::string::npos) << message;
}

// Every prefix of a valid file is refused with an nn::Error (most at open: HDF5 checks the file's
// end against the size recorded in its superblock).
TEST(KerasH5, RefusesTruncatedFiles) {
  ScratchDir dir("keras_h5");
  const std::string valid = dir.file("valid.h5"), cut = dir.file("cut.h5");
  write_keras_file(valid, small_vgg11(Style::keras2, true));
  const std::string bytes = read_bytes(valid);
  ASSERT_GT(bytes.size(), 1000u);
  for (size_t length : {size_t{4}, size_t{100}, bytes.size() / 4, bytes.size() / 2, bytes.size() * 3 / 4,
                        bytes.size() - 100, bytes.size() - 1}) {
    write_bytes(cut, bytes.substr(0, length));
    const std::string message = refusal(cut);
    EXPECT_NE(message.find(cut), std::string::npos) << length << ": " << message;
    if (length == bytes.size() / 2) {
      EXPECT_NE(message.find("truncated or corrupt"), std::string::npos) << message;
    }
  }
}

// HDF5's automatic error printing is off after a read, and stays off: HDF5 also prints through it
// at process exit when a corrupt file left internal state behind (seen with fuzzed files).
TEST(KerasH5, LeavesHdf5ErrorPrintingOff) {
  ScratchDir dir("keras_h5");
  const std::string path = dir.file("text.h5");
  write_bytes(path, "not hdf5");
  EXPECT_THROW(read_keras_h5(path), nn::Error);
  H5E_auto2_t handler = nullptr;
  void* data = nullptr;
  ASSERT_GE(H5Eget_auto2(H5E_DEFAULT, &handler, &data), 0);
  EXPECT_EQ(handler, nullptr);
}

// ---- Links, external data, sizes and in-memory files -------------------------------------------

// The bytes of an HDF5 file in memory give the same conversion as the file (parse_keras_h5), and
// are refused with the same messages.
TEST(KerasH5, ParsesFileImageInMemory) {
  ScratchDir dir("keras_h5");
  const KerasFile f = small_vgg11(Style::keras2, true, 23);
  const std::string path = dir.file("vgg11_weights.h5");
  write_keras_file(path, f);
  const std::string bytes = read_bytes(path);
  ConvertedWeights c = nn::weights::parse_keras_h5(bytes.data(), bytes.size(), path);
  expect_converted(c, f, true, path);
  for (size_t length : {size_t{0}, size_t{6}, bytes.size() / 2}) {
    try {
      nn::weights::parse_keras_h5(bytes.data(), length, "cut.h5");
      ADD_FAILURE() << length << " bytes accepted";
    } catch (const nn::Error& e) {
      EXPECT_NE(std::string(e.what()).find("cut.h5: "), std::string::npos) << e.what();
    }
  }
  const std::string text = "not an hdf5 file at all, but long enough to look at";
  EXPECT_THROW(nn::weights::parse_keras_h5(text.data(), text.size(), "text.h5"), nn::Error);
}

// Writes the small VGG11, then lets `edit` change the open file.
std::string edited_file(const ScratchDir& dir, const std::function<void(hid_t)>& edit) {
  const std::string path = dir.file("edited.h5");
  write_keras_file(path, small_vgg11(Style::keras2, true));
  Id file(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
  edit(file);
  return path;
}

// Soft and external links are refused wherever they are: a weight, a group on a weight's path, a
// layer group, the model_weights group. An external link would otherwise open another file.
TEST(KerasH5, RefusesSoftAndExternalLinks) {
  ScratchDir dir("keras_h5");
  const std::string other = dir.file("other.h5");
  write_keras_file(other, small_vgg11(Style::keras2, true, 5));
  const std::string soft_weight = edited_file(dir, [](hid_t file) {
    ok(H5Ldelete(file, "/block2_conv1/block2_conv1/kernel:0", H5P_DEFAULT));
    ok(H5Lcreate_soft("/block1_conv1/block1_conv1/kernel:0", file, "/block2_conv1/block2_conv1/kernel:0",
                      H5P_DEFAULT, H5P_DEFAULT));
  });
  std::string message = refusal(soft_weight);
  EXPECT_NE(message.find("layer 'block2_conv1'"), std::string::npos) << message;
  EXPECT_NE(message.find("goes through a soft link at 'block2_conv1/kernel:0'"), std::string::npos) << message;

  const std::string soft_group = edited_file(dir, [](hid_t file) {
    ok(H5Lmove(file, "/fc2/fc2", file, "/fc2/real", H5P_DEFAULT, H5P_DEFAULT));
    ok(H5Lcreate_soft("/fc2/real", file, "/fc2/fc2", H5P_DEFAULT, H5P_DEFAULT));
  });
  message = refusal(soft_group);
  EXPECT_NE(message.find("soft link at 'fc2'"), std::string::npos) << message;

  const std::string external_weight = edited_file(dir, [&](hid_t file) {
    ok(H5Ldelete(file, "/fc1/fc1/bias:0", H5P_DEFAULT));
    ok(H5Lcreate_external(other.c_str(), "/fc1/fc1/bias:0", file, "/fc1/fc1/bias:0", H5P_DEFAULT, H5P_DEFAULT));
  });
  message = refusal(external_weight);
  EXPECT_NE(message.find("an external link (to another file) at 'fc1/bias:0'"), std::string::npos) << message;

  const std::string external_layer = edited_file(dir, [&](hid_t file) {
    ok(H5Ldelete(file, "/block5_conv2", H5P_DEFAULT));
    ok(H5Lcreate_external(other.c_str(), "/block5_conv2", file, "/block5_conv2", H5P_DEFAULT, H5P_DEFAULT));
  });
  message = refusal(external_layer);
  EXPECT_NE(message.find("the layer group 'block5_conv2' goes through an external link"), std::string::npos)
      << message;
}

// Layer and weight names are relative to their group: absolute names and '..' are refused.
TEST(KerasH5, RefusesAbsoluteAndDotDotNames) {
  ScratchDir dir("keras_h5");
  for (const std::string& bad : {std::string("/block1_conv1"), std::string("block1_conv1/../block1_conv1")}) {
    const std::string path = edited_file(dir, [&](hid_t file) {
      ok(H5Adelete(file, "layer_names"));
      write_strings(file, "layer_names", {"input_1", bad}, false);
    });
    const std::string message = refusal(path);
    EXPECT_NE(message.find("the layer group '" + bad + "'"), std::string::npos) << message;
  }
}

// Data kept in other files: a dataset with external raw storage.
TEST(KerasH5, RefusesExternalStorage) {
  ScratchDir dir("keras_h5");
  const std::string raw = dir.file("bias.raw");
  write_bytes(raw, std::string(4 * 10, '\0'));
  const std::string path = edited_file(dir, [&](hid_t file) {
    ok(H5Ldelete(file, "/fc2/fc2/bias:0", H5P_DEFAULT));
    const hsize_t n = 10;
    Id space(H5Screate_simple(1, &n, nullptr), H5Sclose);
    Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    ok(H5Pset_external(dcpl, raw.c_str(), 0, 4 * 10));
    Id dataset(H5Dcreate2(file, "/fc2/fc2/bias:0", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
               H5Dclose);
  });
  const std::string message = refusal(path);
  EXPECT_NE(message.find("the dataset 'fc2/bias:0' keeps its data in other files (external storage)"),
            std::string::npos)
      << message;
}

// A dataset whose data was never written (it would read as fill values), and a declared shape
// beyond the size budget: refused before anything is allocated for them.
TEST(KerasH5, RefusesUnwrittenAndOversizedDatasets) {
  ScratchDir dir("keras_h5");
  auto replace_dataset = [](hid_t file, const char* name, std::vector<hsize_t> dims) {
    ok(H5Ldelete(file, name, H5P_DEFAULT));
    Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
    Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    std::vector<hsize_t> chunk(dims.size(), 1);
    ok(H5Pset_chunk(dcpl, static_cast<int>(dims.size()), chunk.data()));
    Id dataset(H5Dcreate2(file, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), H5Dclose);
  };
  std::string message = refusal(edited_file(dir, [&](hid_t file) {
    replace_dataset(file, "/fc2/fc2/bias:0", {10});
  }));
  EXPECT_NE(message.find("'fc2/bias:0' does not hold all its data (0 bytes stored for 10 elements"),
            std::string::npos)
      << message;
  // fc1 declared (2^20, 2^10): 2^30 elements, 4 GiB as float32, in a file of a few KiB.
  message = refusal(edited_file(dir, [&](hid_t file) {
    replace_dataset(file, "/fc1/fc1/kernel:0", {hsize_t{1} << 20, hsize_t{1} << 10});
  }));
  EXPECT_NE(message.find("'fc1/kernel:0' has an empty or implausibly large shape (1048576, 1024; at most"),
            std::string::npos)
      << message;
}

// ---- Golden: files written by h5py exactly as Keras writes them --------------------------------

const char* kPython = "/usr/bin/python3";

bool h5py_available() {
  static const bool ok =
      std::system((std::string(kPython) + " -c 'import h5py, numpy' >/dev/null 2>&1").c_str()) == 0;
  return ok;
}

// make_keras_h5.py fills the kernel of the l-th layer with weights (counting from 0) with
// l * 10000 + j at flat index j and its bias with l * 10000 + 5000 + j (all exact in float32).
KerasFile golden_expectation(Style style, bool include_top) {
  KerasFile f = small_vgg11(style, include_top);
  int l = 0;
  for (Layer& layer : f.layers) {
    if (layer.weights.empty()) continue;
    for (size_t j = 0; j < layer.weights[0].values.size(); ++j) layer.weights[0].values[j] = l * 10000.0f + j;
    for (size_t j = 0; j < layer.weights[1].values.size(); ++j) layer.weights[1].values[j] = l * 10000.0f + 5000 + j;
    ++l;
  }
  return f;
}

void golden_case(const std::string& style_name, Style style, bool include_top) {
  if (!h5py_available()) GTEST_SKIP() << kPython << " cannot import h5py and numpy (install python3-h5py)";
  ScratchDir dir("keras_h5");
  const std::string path = dir.file("vgg11_" + style_name + (include_top ? "" : "_notop") + ".h5");
  const std::string cmd = std::string(kPython) + " " NN_SOURCE_DIR "/tests/golden/make_keras_h5.py " + path +
                          " " + style_name + " " + (include_top ? "top" : "notop");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  ::testing::internal::CaptureStderr();
  ConvertedWeights c = read_keras_h5(path);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
  expect_converted(c, golden_expectation(style, include_top), include_top, path);
}

TEST(KerasH5Golden, Keras1StyleFromH5py) { golden_case("keras1", Style::keras1, true); }

TEST(KerasH5Golden, Keras2StyleFromH5py) { golden_case("keras2", Style::keras2, true); }

TEST(KerasH5Golden, Keras2StyleNoTopFromH5py) { golden_case("keras2", Style::keras2, false); }

}  // namespace
