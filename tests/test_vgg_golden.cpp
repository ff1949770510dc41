// VGG16 weight import against PyTorch (label golden; skipped unless /usr/bin/python3 imports torch,
// torchvision and h5py). tests/golden/vgg_reference.py saves a random torchvision vgg16() with
// torch.save in both formats and as Keras-layout .h5 files (both name styles, full and notop), and
// PyTorch's features and logits on two images. The tests run the real programs, nn-convert and
// classify, and require:
//   - every converted tensor identical to the PyTorch state dict, from every source file;
//   - our features and logits equal PyTorch's within 1e-4 of the largest value (torchvision
//     preprocessing for .pth weights, caffe preprocessing for Keras weights);
//   - refused inputs (a pickle naming a forbidden global, a truncated zip, an .h5 with a wrong
//     kernel shape) exit 1 with a message and write no output.
//
// The references (about 3 GB) are made once per build tree in <build>/golden/vgg16 under a file
// lock, and made again when the script changes.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <nn/io/safetensors.h>
#include <nn/nn.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace {

namespace fs = std::filesystem;
using nn::Tensor;

const std::string kPython = "/usr/bin/python3";
const std::string kScript = NN_SOURCE_DIR "/tests/golden/vgg_reference.py";
const std::string kBin = NN_BINARY_DIR "/bin/";

bool python_ready() {
  static const bool ok =
      std::system((kPython + " -c 'import torch, torchvision, h5py, numpy, PIL' >/dev/null 2>&1").c_str()) == 0;
  return ok;
}

struct Result {
  int exit_code;
  std::string output;  // stdout and stderr
};

Result run(const std::string& command) {
  Result r{-1, ""};
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) r.output.append(buf, n);
  int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Makes the references once per build tree (and again when the script changes); concurrent test
// processes wait on the lock.
const fs::path& reference_dir() {
  static const fs::path dir = fs::path(NN_BINARY_DIR) / "golden" / "vgg16";
  static const bool made = [] {
    fs::create_directories(dir.parent_path());
    const std::string d = dir.string();
    const std::string cmd = "flock " + d + ".lock sh -c '"
                            "if ! (test -f " + d + "/done && cmp -s " + kScript + " " + d + "/script.py); then "
                            "rm -rf " + d + " && " + kPython + " " + kScript + " " + d + " && cp " + kScript + " " +
                            d + "/script.py; fi'";
    Result r = run(cmd);
    if (r.exit_code != 0) ADD_FAILURE() << cmd << "\n" << r.output;
    return r.exit_code == 0;
  }();
  (void)made;
  return dir;
}

std::string ref(const std::string& name) { return (reference_dir() / name).string(); }

// Bitwise equality of two tensors (names are in the messages).
void expect_identical(const Tensor& ours, const Tensor& theirs, const std::string& what) {
  ASSERT_EQ(ours.shape(), theirs.shape()) << what;
  ASSERT_EQ(ours.dtype(), theirs.dtype()) << what;
  std::vector<float> a = ours.contiguous().to_vector<float>(), b = theirs.contiguous().to_vector<float>();
  ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << what << " differs";
}

// |ours - ref| <= 1e-4 * max|ref| everywhere.
void expect_close_to_largest(const Tensor& ours, const Tensor& theirs, const std::string& what) {
  ASSERT_EQ(ours.shape(), theirs.shape()) << what;
  std::vector<float> a = ours.contiguous().to_vector<float>(), b = theirs.contiguous().to_vector<float>();
  double largest = 0, worst = 0;
  for (float v : b) largest = std::max(largest, std::fabs(static_cast<double>(v)));
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]));
  ASSERT_GT(largest, 0.0) << what << ": the reference is all zeros";
  EXPECT_LE(worst, 1e-4 * largest) << what << ": max |difference| " << worst << ", largest |value| " << largest;
  std::printf("[ compare  ] %s: max |difference| %.3g = %.3g of the largest |value| %.4g\n", what.c_str(), worst,
              worst / largest, largest);
}

class VGGGolden : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!python_ready())
      GTEST_SKIP() << kPython << " cannot import torch, torchvision, h5py, numpy and PIL "
                   << "(install python3-torch python3-torchvision python3-h5py)";
    ASSERT_TRUE(fs::exists(kBin + "nn-convert") && fs::exists(kBin + "classify"))
        << "build nn-convert and classify first (" << kBin << ")";
    ASSERT_TRUE(fs::exists(reference_dir() / "done"));
    dir_ = fs::temp_directory_path() / ("nn_vgg_golden_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string tmp(const std::string& name) const { return (dir_ / name).string(); }

  // nn-convert FORMAT IN -o OUT, which must succeed.
  nn::io::SafetensorsFile convert(const std::string& format, const std::string& in, const std::string& out) {
    Result r = run(kBin + "nn-convert " + format + " " + in + " -o " + out);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return nn::io::load_safetensors(out);
  }

  // Every tensor of `file` identical to the PyTorch state dict's tensor of the same name, and the
  // file holds exactly the state dict's tensors (only the features.* ones when notop).
  void expect_state_dict(const nn::io::SafetensorsFile& file, bool notop, const std::string& what) {
    nn::io::SafetensorsFile reference = nn::io::load_safetensors(ref("reference.safetensors"));
    size_t expected = 0;
    for (const auto& [name, tensor] : reference.tensors) {
      bool is_weight = name.find("weight") != std::string::npos || name.find("bias") != std::string::npos;
      if (!is_weight || (notop && name.rfind("classifier.", 0) == 0)) continue;
      ++expected;
      ASSERT_TRUE(file.contains(name)) << what << " lacks " << name;
      expect_identical(file.at(name), tensor, what + ": " + name);
    }
    EXPECT_EQ(file.tensors.size(), expected) << what << " holds other tensors too";
  }

  // classify with --logits/--features on the two images; compares with PyTorch's outputs (in
  // `reference`, reference.safetensors by default).
  void expect_outputs(const std::string& weights, const std::string& preset, bool notop,
                      const std::string& reference_file = "reference.safetensors") {
    const std::string logits = tmp("logits.safetensors"), features = tmp("features.safetensors");
    std::string cmd = kBin + "classify --threads 2 --weights " + weights + " --features " + features;
    if (!notop) cmd += " --json --logits " + logits;
    cmd += " " + ref("image0.png") + " " + ref("image1.png");
    Result r = run(cmd);
    ASSERT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
    nn::io::SafetensorsFile reference = nn::io::load_safetensors(ref(reference_file));
    expect_close_to_largest(nn::io::load_safetensors(features).at("features"), reference.at("features." + preset),
                            preset + " features");
    if (notop) return;
    const Tensor& ref_logits = reference.at("logits." + preset);
    expect_close_to_largest(nn::io::load_safetensors(logits).at("logits"), ref_logits, preset + " logits");
    // The printed top-1 class is PyTorch's argmax.
    nlohmann::json j = nlohmann::json::parse(r.output);
    std::vector<int64_t> top1 = nn::argmax(ref_logits, 1).to_vector<int64_t>();
    ASSERT_EQ(j.size(), 2u);
    for (size_t i = 0; i < 2; ++i) EXPECT_EQ(j[i]["top"][0]["class"].get<int64_t>(), top1[i]) << "image " << i;
  }

  fs::path dir_;
};

TEST_F(VGGGolden, TorchvisionZipAndLegacyFormatsConvertToTheSameTensors) {
  nn::io::SafetensorsFile zip = convert("torchvision", ref("vgg16_zip.pth"), tmp("zip.safetensors"));
  expect_state_dict(zip, false, "zip-format .pth");
  EXPECT_EQ(zip.metadata["preprocessing"], "torchvision");
  EXPECT_EQ(zip.metadata["architecture"], "vgg16");
  nn::io::SafetensorsFile legacy = convert("torchvision", ref("vgg16_legacy.pth"), tmp("legacy.safetensors"));
  expect_state_dict(legacy, false, "legacy-format .pth");
  EXPECT_EQ(legacy.metadata["preprocessing"], "torchvision");
  // Same names in the same order as the state dict.
  ASSERT_EQ(zip.tensors.size(), legacy.tensors.size());
  for (size_t i = 0; i < zip.tensors.size(); ++i) EXPECT_EQ(zip.tensors[i].first, legacy.tensors[i].first);
}

TEST_F(VGGGolden, TorchvisionWeightsGivePyTorchsFeaturesAndLogits) {
  convert("torchvision", ref("vgg16_zip.pth"), tmp("vgg16.safetensors"));
  expect_outputs(tmp("vgg16.safetensors"), "torchvision", false);
}

TEST_F(VGGGolden, TorchvisionVgg16BnConvertsAndGivesPyTorchsEvalLogits) {
  nn::io::SafetensorsFile reference = nn::io::load_safetensors(ref("reference_bn.safetensors"));
  for (const char* format : {"zip", "legacy"}) {
    const std::string out = tmp(std::string("bn_") + format + ".safetensors");
    nn::io::SafetensorsFile file = convert("torchvision", ::ref(std::string("vgg16_bn_") + format + ".pth"), out);
    EXPECT_EQ(file.metadata["architecture"], "vgg16_bn") << format;
    size_t expected = 0;
    for (const auto& [name, tensor] : reference.tensors) {
      if (name.rfind("features.torchvision", 0) == 0 || name.rfind("logits.", 0) == 0) continue;
      ++expected;
      ASSERT_TRUE(file.contains(name)) << format << " lacks " << name;
      if (tensor.dtype() == nn::DType::i64) {
        EXPECT_EQ(file.at(name).to_vector<int64_t>(), tensor.to_vector<int64_t>()) << name;
      } else {
        expect_identical(file.at(name), tensor, std::string(format) + ": " + name);
      }
    }
    EXPECT_EQ(file.tensors.size(), expected) << format;
  }
  expect_outputs(tmp("bn_zip.safetensors"), "torchvision", false, "reference_bn.safetensors");
}

TEST_F(VGGGolden, KerasFullFilesInBothNameStylesConvertToTorchvisionTensors) {
  nn::io::SafetensorsFile k1 = convert("keras", ref("keras1_full.h5"), tmp("k1.safetensors"));
  expect_state_dict(k1, false, "Keras 1 names, full");
  nn::io::SafetensorsFile k2 = convert("keras", ref("keras2_full.h5"), tmp("k2.safetensors"));
  expect_state_dict(k2, false, "Keras 2 names, full");
  EXPECT_EQ(k2.metadata["preprocessing"], "caffe");
  EXPECT_EQ(k2.metadata["architecture"], "vgg16");
  expect_outputs(tmp("k2.safetensors"), "caffe", false);
}

TEST_F(VGGGolden, KerasNotopFilesGivePyTorchsFeatures) {
  nn::io::SafetensorsFile k1 = convert("keras", ref("keras1_notop.h5"), tmp("k1.safetensors"));
  expect_state_dict(k1, true, "Keras 1 names, notop");
  nn::io::SafetensorsFile k2 = convert("keras", ref("keras2_notop.h5"), tmp("k2.safetensors"));
  expect_state_dict(k2, true, "Keras 2 names, notop");
  EXPECT_EQ(k2.metadata["architecture"], "vgg16-notop");
  expect_outputs(tmp("k1.safetensors"), "caffe", true);
  // A notop model has no classes: asking for them is a clear error.
  Result r = run(kBin + "classify --weights " + tmp("k1.safetensors") + " " + ref("image0.png"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("no classifier"), std::string::npos) << r.output;
}

TEST_F(VGGGolden, InspectPrintsNamesShapesAndMetadata) {
  convert("torchvision", ref("vgg16_zip.pth"), tmp("vgg16.safetensors"));
  for (const std::string& file : {tmp("vgg16.safetensors"), ref("vgg16_legacy.pth"), ref("keras2_notop.h5")}) {
    Result r = run(kBin + "nn-convert inspect " + file);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("features.0.weight"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("[64, 3, 3, 3]"), std::string::npos) << r.output;
  }
  Result r = run(kBin + "nn-convert inspect " + tmp("vgg16.safetensors"));
  EXPECT_NE(r.output.find("preprocessing: torchvision"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[1000, 4096]"), std::string::npos) << r.output;
}

TEST_F(VGGGolden, ConvertersRefuseMalformedFilesWithAMessage) {
  struct Case {
    std::string args, expect;
  };
  const Case cases[] = {
      {"torchvision " + ref("bad_global.pth"), "system"},  // os.system pickles as posix.system
      {"torchvision " + ref("truncated.pth"), "truncated.pth"},
      {"keras " + ref("bad_shape.h5"), "block2_conv1"},
      {"inspect " + ref("truncated.pth"), "truncated.pth"},
      {"keras " + ref("vgg16_zip.pth"), "vgg16_zip.pth"},  // not HDF5
      {"torchvision " + ref("keras1_notop.h5"), "keras1_notop.h5"},  // not a torch file
  };
  for (const Case& c : cases) {
    const std::string out = tmp("out.safetensors");
    Result r = run(kBin + "nn-convert " + c.args + (c.args.rfind("inspect", 0) == 0 ? "" : " -o " + out));
    EXPECT_EQ(r.exit_code, 1) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_EQ(r.output.find("must never run"), std::string::npos) << "the pickle's payload ran!";
    EXPECT_FALSE(fs::exists(out)) << c.args << " left an output file";
  }
}

}  // namespace
