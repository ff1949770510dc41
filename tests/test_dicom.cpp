// DICOM input of nn/data/image.h (libnn/src/data/dicom_decode.cpp, through GDCM). The files are
// made at test time by tests/golden/make_dicom.py (/usr/bin/python3 with Debian's python3-pydicom;
// the compressed transfer syntaxes with GDCM's gdcmconv, Debian libgdcm-tools) from the cases
// below, whose stored values the expectations are computed from by hand. Suites: DicomDecode (the
// processing rules: modality LUT, VOI LUT, MONOCHROME1, bit depths, signedness, the PNG
// equivalence), DicomTransferSyntax (every syntax that can be made decodes to the same floats),
// DicomRefuse (every refusal, truncation and corruption), DicomPrivacy (no patient data in any
// message or output), DicomFileName. Skipped when nn was built without GDCM (NN_DICOM=OFF; then
// DicomRefuse.WithoutGdcmDicomIsRefusedByName runs) or when pydicom is missing; a compressed case
// is skipped when gdcmconv is missing.
#include <gtest/gtest.h>
#include <nn/data/dataset.h>
#include <nn/data/image.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>

#include "error_text.h"
#include "scratch_dir.h"

namespace {

using nn::data::Image;
using Bytes = std::vector<uint8_t>;
using json = nlohmann::json;


Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

Image decode_bytes(const Bytes& b, const std::string& source, const nn::data::ImageLimits& limits = {}) {
  return nn::data::decode_image(b.data(), b.size(), source, limits);
}

// nn built with GDCM refuses a bare "DICM" as corrupt DICOM; without, it refuses DICOM by name.
bool dicom_built_in() {
  Bytes b(128, 0);
  b.insert(b.end(), {'D', 'I', 'C', 'M'});
  return !contains(error_if_any([&] { decode_bytes(b, "probe"); }), "built without GDCM");
}

// ---- the cases (stored values, and what make_dicom.py writes them as) ----

// 2 x 3, 12 bits stored in 16.
const std::vector<int> kTwelveBit = {0, 100, 4095, 2000, 1, 7};
// Signed 16-bit values that, with intercept -1024, land on a 40/400 window's edges.
const std::vector<int> kWindowed = {-976, 864, 865, 1064, 1262, 1263, 1264};
// A 37 x 41 image of 12-bit values, smooth with noise (what the compressed syntaxes get).
std::vector<int> twelve_bit_image() {
  std::mt19937 rng(7);
  std::vector<int> v;
  for (int y = 0; y < 37; ++y)
    for (int x = 0; x < 41; ++x)
      v.push_back(std::clamp(int(2048 + 1500 * std::sin(x / 6.0) * std::cos(y / 9.0)) + int(rng() % 64) - 32, 0, 4095));
  return v;
}
// A 33 x 40 8-bit image with 0 and 255 in it.
std::vector<int> eight_bit_image() {
  std::vector<int> v;
  for (int y = 0; y < 33; ++y)
    for (int x = 0; x < 40; ++x) v.push_back(int(127.5 + 127.5 * std::sin(x / 5.0 + y / 7.0)));
  v[0] = 0;
  v[1] = 255;
  return v;
}

json image_case(const std::string& name, int rows, int columns, int bits_allocated, int bits_stored,
                const std::vector<int>& pixels) {
  return {{"name", name}, {"rows", rows}, {"columns", columns}, {"bits_allocated", bits_allocated},
          {"bits_stored", bits_stored}, {"pixels", pixels}};
}

json with(json c, const json& more) {
  c.update(more);
  return c;
}

const std::vector<const char*> kLosslessSyntaxes = {"implicit", "big", "deflated", "jpeg-lossless", "jpeg-ls", "j2k", "rle"};

json all_cases() {
  json cases = json::array();
  auto add = [&](const json& c) { cases.push_back(c); };
  const json twelve = image_case("rescale_full_range", 2, 3, 16, 12, kTwelveBit);
  add(with(twelve, {{"slope", "2"}, {"intercept", "-1000"}}));
  add(image_case("defaults", 1, 3, 16, 16, {5, 10, 25}));
  const json windowed = with(image_case("window_linear", 1, 7, 16, 16, kWindowed),
                             {{"signed", true}, {"intercept", "-1024"}, {"window_center", {"40", "80"}},
                              {"window_width", {"400", "800"}}});
  add(windowed);
  add(with(windowed, {{"name", "window_linear_mono1"}, {"photometric", "MONOCHROME1"}}));
  add(with(twelve, {{"name", "full_range_mono1"}, {"photometric", "MONOCHROME1"}}));
  add(with(image_case("window_step", 1, 3, 16, 16, {198, 199, 200}),
           {{"slope", "0.5"}, {"window_center", "100"}, {"window_width", "1"}}));
  add(with(image_case("window_linear_exact", 1, 5, 16, 16, {75, 76, 100, 125, 126}),
           {{"window_center", "100"}, {"window_width", "50"}, {"voi_lut_function", "LINEAR_EXACT"}}));
  add(with(image_case("window_sigmoid", 1, 3, 16, 16, {50, 100, 130}),
           {{"window_center", "100"}, {"window_width", "50"}, {"voi_lut_function", "SIGMOID"}}));
  add(image_case("constant", 2, 2, 16, 12, {9, 9, 9, 9}));
  add(with(image_case("constant_mono1", 2, 2, 16, 12, {9, 9, 9, 9}), {{"photometric", "MONOCHROME1"}}));
  // Raw words: 12 bits stored, the upper 4 bits set (overlay bits); signed: sign bit 11.
  add(with(image_case("signed_12", 1, 4, 16, 12, {0x07ff, 0x0800, 0x0fff, 0xf001}), {{"signed", true}, {"raw", true}}));
  add(with(image_case("unused_high_bits", 1, 3, 16, 12, {0xf000, 0xa005, 0x0fff}), {{"raw", true}}));
  add(with(image_case("signed_8", 1, 4, 8, 8, {-128, 0, 127, -1}), {{"signed", true}}));
  add(with(image_case("signed_16", 1, 3, 16, 16, {-32768, 0, 32767}), {{"signed", true}}));
  add(image_case("eight_bit", 33, 40, 8, 8, eight_bit_image()));
  // The same images in every transfer syntax.
  const json ref16 = image_case("ts16_explicit", 37, 41, 16, 12, twelve_bit_image());
  const json ref8 = image_case("ts8_explicit", 33, 40, 8, 8, eight_bit_image());
  add(ref16);
  add(ref8);
  for (const char* ts : kLosslessSyntaxes) {
    add(with(ref16, {{"name", std::string("ts16_") + ts}, {"transfer_syntax", ts}}));
    add(with(ref8, {{"name", std::string("ts8_") + ts}, {"transfer_syntax", ts}}));
  }
  // A frame in several fragments (PS3.5 A.4), which nn joins before decoding.
  for (const char* ts : {"jpeg-lossless", "j2k"}) {
    add(with(ref16, {{"name", std::string("ts16_") + ts + "-split"}, {"transfer_syntax", ts}, {"split", 256}}));
    add(with(ref8, {{"name", std::string("ts8_") + ts + "-split"}, {"transfer_syntax", ts}, {"split", 256}}));
  }
  // Lossy: 8 bits through a fixed window (y = x / 255), so that errors are in stored levels.
  const json lossy = with(ref8, {{"window_center", "128"}, {"window_width", "256"}});
  add(with(lossy, {{"name", "lossy_reference"}}));
  add(with(lossy, {{"name", "jpeg_baseline"}, {"transfer_syntax", "jpeg-baseline"}}));
  add(with(lossy, {{"name", "jpeg_ls_near"}, {"transfer_syntax", "jpeg-ls-near"}}));
  // Refusals.
  const json small = image_case("small", 2, 2, 16, 12, {1, 2, 3, 4});
  add(small);
  add(with(small, {{"name", "multi_frame"}, {"frames", 2}, {"pixels", {1, 2, 3, 4, 5, 6, 7, 8}}}));
  add(with(small, {{"name", "no_pixel_data"}, {"no_pixel_data", true}}));
  add(with(small, {{"name", "float_pixel_data"}, {"float_pixel_data", true}}));
  add(with(image_case("rgb", 2, 2, 8, 8, std::vector<int>(12, 7)), {{"samples_per_pixel", 3}, {"photometric", "RGB"}}));
  add(with(image_case("ybr_full", 2, 2, 8, 8, std::vector<int>(12, 7)),
           {{"samples_per_pixel", 3}, {"photometric", "YBR_FULL"}}));
  add(with(image_case("palette", 2, 2, 8, 8, {1, 2, 3, 4}), {{"photometric", "PALETTE COLOR"}}));
  add(with(small, {{"name", "unknown_photometric"}, {"photometric", "FOO"}}));
  add(image_case("bits_32", 2, 2, 32, 32, {1, 2, 3, 4}));
  add(image_case("bits_8_stored_6", 2, 2, 8, 6, {1, 2, 3, 4}));
  add(with(small, {{"name", "high_bit"}, {"high_bit", 15}}));
  add(with(small, {{"name", "center_without_width"}, {"window_center", "40"}}));
  add(with(small, {{"name", "slope_zero"}, {"slope", "0"}}));
  add(with(small, {{"name", "bad_window"}, {"window_center", "40"}, {"window_width", "0.5"}}));
  add(with(small, {{"name", "short_pixel_data"}, {"pixels", {1, 2, 3}}}));
  add(with(small, {{"name", "mpeg2"}, {"transfer_syntax_uid", "1.2.840.10008.1.2.4.100"}}));
  add(image_case("huge_header", 65535, 65535, 16, 12, {1, 2, 3, 4}));
  add(image_case("twenty", 20, 20, 8, 8, std::vector<int>(400, 3)));
  // Patient data: names in several attributes, in every kind of file that gets corrupted.
  const std::vector<int> image = twelve_bit_image();
  const json doe = with(image_case("doe_explicit", 6, 7, 16, 12, std::vector<int>(image.begin(), image.begin() + 42)),
                        {{"patient_name", "Doe^Jane"}, {"patient_id", "Doe-4711"}, {"institution", "Doe Memorial"},
                         {"window_center", "2000"}, {"window_width", "3000"}});
  add(doe);
  for (const char* ts : {"implicit", "big", "deflated", "jpeg-lossless", "jpeg-ls", "j2k", "rle"})
    add(with(doe, {{"name", std::string("doe_") + ts}, {"transfer_syntax", ts}}));
  add(with(doe, {{"name", "doe_jpeg_baseline"}, {"transfer_syntax", "jpeg-baseline"}, {"bits_allocated", 8},
                 {"bits_stored", 8}, {"pixels", std::vector<int>(42, 77)}}));
  return cases;
}

// ---- the files: written once per test program ----

class DicomFiles {
 public:
  static DicomFiles& get() {
    static DicomFiles files;
    return files;
  }
  // "" when the case's file exists, else why not.
  std::string missing(const std::string& name) const {
    if (!why_not_.empty()) return why_not_;
    if (!manifest_.contains(name)) return "no case " + name;
    const std::string status = manifest_[name].get<std::string>();
    return status == "ok" ? "" : name + ": " + status;
  }
  std::string path(const std::string& name) const { return dir_.file(name + ".dcm"); }
  Bytes bytes(const std::string& name) const { return read_file(path(name)); }

 private:
  DicomFiles() {
    const std::string spec = dir_.file("spec.json");
    std::ofstream(spec) << all_cases().dump();
    const std::string command = std::string("/usr/bin/python3 '") + NN_SOURCE_DIR + "/tests/golden/make_dicom.py' '" +
                                spec + "' '" + dir_.str() + "' > '" + dir_.file("log.txt") + "' 2>&1";
    const int rc = std::system(command.c_str());
    const int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    if (code == 77 || code == 127) {
      why_not_ = "/usr/bin/python3 cannot import pydicom (apt install python3-pydicom)";
      return;
    }
    if (code != 0) {
      const Bytes log = read_file(dir_.file("log.txt"));
      why_not_ = "make_dicom.py failed: " + std::string(log.begin(), log.end());
      ADD_FAILURE() << why_not_;
      return;
    }
    manifest_ = json::parse(read_file(dir_.file("manifest.json")));
  }
  ScratchDir dir_{"dicom"};
  json manifest_;
  std::string why_not_;
};

#define REQUIRE_DICOM(...)                                                                   \
  do {                                                                                       \
    if (!dicom_built_in()) GTEST_SKIP() << "nn was built without GDCM (NN_DICOM=OFF)";       \
    for (const char* name_ : {__VA_ARGS__}) {                                                \
      const std::string why_ = DicomFiles::get().missing(name_);                             \
      if (!why_.empty()) GTEST_SKIP() << why_;                                               \
    }                                                                                        \
  } while (0)

Image load(const std::string& name, const nn::data::ImageLimits& limits = {}) {
  return nn::data::load_image(DicomFiles::get().path(name), limits);
}

std::string refusal(const std::string& name, const nn::data::ImageLimits& limits = {}) {
  const std::string message = error_if_any([&] { load(name, limits); });
  EXPECT_FALSE(message.empty()) << name << " was decoded";
  EXPECT_TRUE(contains(message, "cannot decode image '" + DicomFiles::get().path(name) + "': ")) << message;
  return message;
}

void expect_pixels(const Image& image, int64_t rows, int64_t columns, const std::vector<double>& want) {
  ASSERT_EQ(image.height, rows);
  ASSERT_EQ(image.width, columns);
  ASSERT_EQ(image.channels, 1);
  ASSERT_EQ(image.pixels.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(image.pixels[i], static_cast<float>(want[i])) << "pixel " << i;
}

// ---- the processing rules ----

TEST(DicomDecode, RescaleThenTheFullStoredRangeWithoutAWindow) {
  REQUIRE_DICOM("rescale_full_range");
  // 12 bits stored: s in 0..4095, x = 2 s - 1000 in -1000..7190; -1000 -> 0, 7190 -> 1.
  std::vector<double> want;
  for (int s : kTwelveBit) want.push_back((2.0 * s - 1000.0 + 1000.0) / 8190.0);
  expect_pixels(load("rescale_full_range"), 2, 3, want);
}

TEST(DicomDecode, RescaleDefaultsToSlopeOneInterceptZero) {
  REQUIRE_DICOM("defaults");
  // The full stored range (16 bits: 0..65535), not the image's own (5..25).
  expect_pixels(load("defaults"), 1, 3, {5.0 / 65535, 10.0 / 65535, 25.0 / 65535});
}

TEST(DicomDecode, LinearWindowFollowsPs33WithTheFirstOfSeveralValues) {
  REQUIRE_DICOM("window_linear");
  // x = s - 1024 = -2000, -160, -159, 40, 238, 239, 240; centre 40, width 400 (not 80/800):
  // x <= 40 - 0.5 - 199.5 = -160 -> 0; x > 40 - 0.5 + 199.5 = 239 -> 1; else (x - 39.5) / 399 + 0.5.
  const std::vector<double> want = {0.0, 0.0, (-159 - 39.5) / 399 + 0.5, (40 - 39.5) / 399 + 0.5,
                                    (238 - 39.5) / 399 + 0.5, 1.0, 1.0};
  expect_pixels(load("window_linear"), 1, 7, want);
}

TEST(DicomDecode, WindowOfWidthOneIsAStepAtCentreMinusAHalf) {
  REQUIRE_DICOM("window_step");
  // x = 0.5 s = 99, 99.5, 100; centre 100: x <= 99.5 -> 0, above -> 1.
  expect_pixels(load("window_step"), 1, 3, {0.0, 0.0, 1.0});
}

TEST(DicomDecode, LinearExactAndSigmoidVoiFunctions) {
  REQUIRE_DICOM("window_linear_exact", "window_sigmoid");
  // LINEAR_EXACT (C.11.2.1.3.2): x <= c - w/2 -> 0, x > c + w/2 -> 1, else (x - c) / w + 0.5.
  expect_pixels(load("window_linear_exact"), 1, 5, {0.0, (76 - 100) / 50.0 + 0.5, 0.5, 1.0, 1.0});
  // SIGMOID (C.11.2.1.3.1): 1 / (1 + exp(-4 (x - c) / w)).
  std::vector<double> want;
  for (double x : {50.0, 100.0, 130.0}) want.push_back(1.0 / (1.0 + std::exp(-4.0 * (x - 100.0) / 50.0)));
  expect_pixels(load("window_sigmoid"), 1, 3, want);
}

TEST(DicomDecode, Monochrome1IsInvertedAfterTheVoiLut) {
  REQUIRE_DICOM("window_linear_mono1", "full_range_mono1", "constant", "constant_mono1");
  const Image window = load("window_linear_mono1");
  const std::vector<double> v = {0.0, 0.0, (-159 - 39.5) / 399 + 0.5, (40 - 39.5) / 399 + 0.5,
                                 (238 - 39.5) / 399 + 0.5, 1.0, 1.0};
  std::vector<double> want;
  for (double y : v) want.push_back(1.0 - y);
  expect_pixels(window, 1, 7, want);
  want.clear();
  for (int s : kTwelveBit) want.push_back(1.0 - (2.0 * s - 1000.0 + 1000.0) / 8190.0);
  // full_range_mono1 keeps the slope and intercept of rescale_full_range.
  expect_pixels(load("full_range_mono1"), 2, 3, want);
  // A constant image keeps its place in the stored range (12 bits), inverted for MONOCHROME1.
  expect_pixels(load("constant"), 2, 2, std::vector<double>(4, 9.0 / 4095));
  expect_pixels(load("constant_mono1"), 2, 2, std::vector<double>(4, 1.0 - 9.0 / 4095));
}

TEST(DicomDecode, TwelveBitsStoredMaskTheWordAndSignExtend) {
  REQUIRE_DICOM("signed_12", "unused_high_bits");
  // Signed 12-bit: 0x7ff = 2047, 0x800 = -2048, 0xfff = -1, 0xf001 -> 0x001 = 1; range -2048..2047.
  expect_pixels(load("signed_12"), 1, 4, {4095.0 / 4095, 0.0, 2047.0 / 4095, 2049.0 / 4095});
  // Unsigned 12-bit: 0xf000 -> 0, 0xa005 -> 5, 0x0fff -> 4095.
  expect_pixels(load("unused_high_bits"), 1, 3, {0.0, 5.0 / 4095, 1.0});
}

TEST(DicomDecode, SignedEightAndSixteenBit) {
  REQUIRE_DICOM("signed_8", "signed_16");
  expect_pixels(load("signed_8"), 1, 4, {0.0, 128.0 / 255, 1.0, 127.0 / 255});
  expect_pixels(load("signed_16"), 1, 3, {0.0, 32768.0 / 65535, 1.0});
}

TEST(DicomDecode, EightBitFullRangeGivesThePixelsOfTheSamePng) {
  REQUIRE_DICOM("eight_bit");
  const std::vector<int> levels = eight_bit_image();
  Image png_image{33, 40, 1, {}};
  for (int v : levels) png_image.pixels.push_back(static_cast<float>(v) / 255.0f);
  const Bytes png = nn::data::encode_png(png_image);
  const Image from_png = decode_bytes(png, "png");
  const Image from_dicom = load("eight_bit");
  ASSERT_EQ(from_dicom.height, from_png.height);
  ASSERT_EQ(from_dicom.width, from_png.width);
  ASSERT_EQ(from_dicom.channels, from_png.channels);
  EXPECT_EQ(from_dicom.pixels, from_png.pixels);  // bit for bit
}

TEST(DicomDecode, ThreadsDecodeIndependently) {
  REQUIRE_DICOM("ts16_explicit", "window_linear", "ts8_explicit");
  const std::vector<std::string> names = {"ts16_explicit", "window_linear", "ts8_explicit"};
  std::vector<Bytes> files;
  std::vector<Image> want;
  for (const auto& n : names) {
    files.push_back(DicomFiles::get().bytes(n));
    want.push_back(load(n));
  }
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int k = 0; k < 20; ++k) {
        const size_t i = size_t(t + k) % files.size();
        if (decode_bytes(files[i], names[i]).pixels != want[i].pixels) ++mismatches;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// ---- transfer syntaxes ----

// The same stored values as the explicit VR file. gdcmconv --split rewrites a 16-bit-allocated
// JPEG 2000 file's Bits Stored from 12 to 16 (the codestream's precision), so without a window its
// values are the same stored values over the 16-bit range: scaled by 4095 / 65535.
void expect_same_as_explicit(const std::string& prefix, const std::string& ts) {
  const Image want = load(prefix + "explicit");
  const Image got = load(prefix + ts);
  ASSERT_EQ(got.height, want.height);
  ASSERT_EQ(got.width, want.width);
  if (prefix == "ts16_" && ts == "j2k-split") {
    ASSERT_EQ(got.pixels.size(), want.pixels.size());
    for (size_t i = 0; i < got.pixels.size(); ++i)
      ASSERT_EQ(std::lround(double(got.pixels[i]) * 65535), std::lround(double(want.pixels[i]) * 4095)) << "pixel " << i;
    return;
  }
  EXPECT_EQ(got.pixels, want.pixels) << ts;
}

#define SYNTAX_TEST(Name, ts)                                          \
  TEST(DicomTransferSyntax, Name) {                                    \
    REQUIRE_DICOM("ts16_explicit", "ts8_explicit", "ts16_" ts, "ts8_" ts); \
    expect_same_as_explicit("ts16_", ts);                              \
    expect_same_as_explicit("ts8_", ts);                               \
  }
SYNTAX_TEST(ImplicitVrLittleEndian, "implicit")
SYNTAX_TEST(ExplicitVrBigEndian, "big")
SYNTAX_TEST(DeflatedExplicitVrLittleEndian, "deflated")
SYNTAX_TEST(JpegLosslessProcess14Sv1, "jpeg-lossless")
SYNTAX_TEST(JpegLsLossless, "jpeg-ls")
SYNTAX_TEST(Jpeg2000Lossless, "j2k")
SYNTAX_TEST(RleLossless, "rle")
SYNTAX_TEST(JpegLosslessInFragments, "jpeg-lossless-split")
SYNTAX_TEST(Jpeg2000InFragments, "j2k-split")

TEST(DicomTransferSyntax, ExplicitVrLittleEndianKeepsTheStoredValues) {
  REQUIRE_DICOM("ts16_explicit");
  const std::vector<int> v = twelve_bit_image();
  std::vector<double> want;  // no window: the full 12-bit stored range
  for (int s : v) want.push_back(s / 4095.0);
  expect_pixels(load("ts16_explicit"), 37, 41, want);
}

TEST(DicomTransferSyntax, LossyJpegBaselineAndJpegLsNearLossless) {
  REQUIRE_DICOM("lossy_reference", "jpeg_baseline", "jpeg_ls_near");
  const Image want = load("lossy_reference");  // y = x / 255 through the 128/256 window
  for (const char* name : {"jpeg_baseline", "jpeg_ls_near"}) {
    if (!DicomFiles::get().missing(name).empty()) continue;
    const Image got = load(name);
    ASSERT_EQ(got.pixels.size(), want.pixels.size());
    float worst = 0;
    for (size_t i = 0; i < got.pixels.size(); ++i) worst = std::max(worst, std::fabs(got.pixels[i] - want.pixels[i]));
    // JPEG-LS near-lossless with error 2 is within 2 levels; baseline JPEG at quality 95 on smooth content within 8.
    EXPECT_LE(worst, (std::string(name) == "jpeg_ls_near" ? 2.0f : 8.0f) / 255.0f + 1e-6f) << name;
    EXPECT_GT(worst, 0.0f) << name << " is lossy";
  }
}

// ---- refusals ----

TEST(DicomRefuse, MultiFrameNoPixelDataAndFloatPixelData) {
  REQUIRE_DICOM("multi_frame", "no_pixel_data", "float_pixel_data");
  EXPECT_TRUE(contains(refusal("multi_frame"), "multi-frame DICOM images are not supported (2 frames"));
  EXPECT_TRUE(contains(refusal("no_pixel_data"), "no pixel data"));
  EXPECT_TRUE(contains(refusal("float_pixel_data"), "float pixel data"));
}

TEST(DicomRefuse, ColourImages) {
  REQUIRE_DICOM("rgb", "ybr_full", "palette", "unknown_photometric");
  EXPECT_TRUE(contains(refusal("rgb"), "colour DICOM images are not supported (photometric interpretation RGB"));
  EXPECT_TRUE(contains(refusal("ybr_full"), "photometric interpretation YBR_FULL"));
  EXPECT_TRUE(contains(refusal("palette"), "photometric interpretation PALETTE COLOR"));
  EXPECT_TRUE(contains(refusal("unknown_photometric"), "unknown photometric interpretation 'FOO'"));
}

TEST(DicomRefuse, UnsupportedBitDepthsAndBadHeaderValues) {
  REQUIRE_DICOM("bits_32", "bits_8_stored_6", "high_bit", "center_without_width", "slope_zero", "bad_window");
  EXPECT_TRUE(contains(refusal("bits_32"), "32 bits allocated are not supported (8 or 16)"));
  EXPECT_TRUE(contains(refusal("bits_8_stored_6"), "6 bits stored in 8 are not supported"));
  EXPECT_TRUE(contains(refusal("high_bit"), "High Bit (15) is not Bits Stored - 1"));
  EXPECT_TRUE(contains(refusal("center_without_width"), "Window Center without Window Width"));
  EXPECT_TRUE(contains(refusal("slope_zero"), "Rescale Slope is 0"));
  EXPECT_TRUE(contains(refusal("bad_window"), "Window Width 0.5 is below 1"));
}

TEST(DicomRefuse, UnsupportedTransferSyntaxAndFilesWithoutPreamble) {
  REQUIRE_DICOM("mpeg2", "small");
  EXPECT_TRUE(contains(refusal("mpeg2"), "DICOM transfer syntax '1.2.840.10008.1.2.4.100' is not supported"));
  const Bytes file = DicomFiles::get().bytes("small");
  const Bytes bare(file.begin() + 132, file.end());  // the file meta information and data set only
  EXPECT_TRUE(contains(error_if_any([&] { decode_bytes(bare, "bare"); }),
                       "cannot decode image 'bare': a DICOM data set without the 128-byte preamble"));
}

TEST(DicomRefuse, SizeLimitsComeFromTheHeaderBeforeThePixelData) {
  REQUIRE_DICOM("huge_header", "twenty", "short_pixel_data");
  // 65535 x 65535 declared over 8 bytes of pixel data: the limits, not the missing data, refuse it.
  EXPECT_TRUE(contains(refusal("huge_header"), "its header declares 65535x65535 pixels"));
  nn::data::ImageLimits limits;
  limits.max_pixels = 399;
  EXPECT_TRUE(contains(refusal("twenty", limits), "20x20 pixels (width x height, 400 pixels), over the limits"));
  limits.max_pixels = 400;
  EXPECT_NO_THROW(load("twenty", limits));
  EXPECT_TRUE(contains(refusal("short_pixel_data"), "truncated DICOM pixel data (6 bytes; 2x2 pixels of 16 bits need 8)"));
}

// Every prefix of a file is refused (cleanly, naming the source), whatever the syntax.
TEST(DicomRefuse, TruncatedAtEveryLength) {
  REQUIRE_DICOM("doe_explicit");
  for (const char* name : {"doe_explicit", "doe_implicit", "doe_big", "doe_deflated", "doe_jpeg-lossless", "doe_jpeg-ls",
                           "doe_j2k", "doe_rle", "doe_jpeg_baseline"}) {
    if (!DicomFiles::get().missing(name).empty()) continue;
    const Bytes file = DicomFiles::get().bytes(name);
    ASSERT_NO_THROW(decode_bytes(file, name)) << name;
    for (size_t n = 0; n < file.size(); ++n) {
      // A deflated data set's padding byte (PS3.5 A.5) is the only byte a file can lose.
      const Bytes cut(file.begin(), file.begin() + n);
      const std::string message = error_if_any([&] { decode_bytes(cut, "cut"); });
      if (message.empty() && file.size() - n == 1 && file.back() == 0) continue;
      EXPECT_TRUE(contains(message, "cannot decode image 'cut': ")) << name << " cut at " << n << ": " << message;
    }
  }
}

// Every byte flipped in turn: refused cleanly or decoded to one channel in [0, 1]; never a crash.
TEST(DicomRefuse, CorruptBytesAreRefusedOrStayInRange) {
  REQUIRE_DICOM("doe_explicit");
  for (const char* name : {"doe_explicit", "doe_implicit", "doe_big", "doe_deflated", "doe_jpeg-lossless", "doe_jpeg-ls",
                           "doe_j2k", "doe_rle"}) {
    if (!DicomFiles::get().missing(name).empty()) continue;
    const Bytes file = DicomFiles::get().bytes(name);
    size_t refused = 0;
    for (size_t i = 0; i < file.size(); ++i) {
      Bytes bad = file;
      bad[i] ^= 0xa5;
      try {
        const Image im = decode_bytes(bad, "bad");
        ASSERT_EQ(im.channels, 1);
        for (float v : im.pixels) ASSERT_TRUE(v >= 0.0f && v <= 1.0f) << name << " byte " << i;
      } catch (const nn::Error& e) {
        ++refused;
        ASSERT_TRUE(contains(e.what(), "cannot decode image 'bad': ")) << e.what();
      }
    }
    EXPECT_GT(refused, file.size() / 20) << name;
  }
}

TEST(DicomRefuse, CorruptCodestreamsAreRefused) {
  REQUIRE_DICOM("ts16_j2k", "ts16_jpeg-lossless", "ts16_rle");
  auto find = [](const Bytes& b, std::initializer_list<uint8_t> pattern) {
    return std::search(b.begin(), b.end(), pattern.begin(), pattern.end()) - b.begin();
  };
  // JPEG 2000 whose SIZ says 3 components.
  Bytes j2k = DicomFiles::get().bytes("ts16_j2k");
  const size_t siz = size_t(find(j2k, {0xff, 0x4f, 0xff, 0x51}));
  ASSERT_LT(siz, j2k.size());
  Bytes colour = j2k;
  colour[siz + 41] = 3;
  EXPECT_TRUE(contains(error_if_any([&] { decode_bytes(colour, "j2k"); }), "the JPEG 2000 data has 3 components"));
  // JPEG 2000 whose image size is not the header's (GDCM 3.0.21 would write past its buffer).
  Bytes bigger = j2k;
  bigger[siz + 8 + 3] += 1;  // Xsiz
  EXPECT_TRUE(contains(error_if_any([&] { decode_bytes(bigger, "j2k"); }), "is not the header's 41x37"));
  // JPEG 2000 without its COD segment: GDCM's decoder (OpenJPEG) fails.
  Bytes no_cod = j2k;
  const size_t cod = size_t(find(no_cod, {0xff, 0x52}));
  ASSERT_LT(cod, no_cod.size());
  no_cod[cod + 1] = 0x64;  // a comment (COM) marker instead
  EXPECT_TRUE(contains(error_if_any([&] { decode_bytes(no_cod, "j2k"); }), "GDCM's JPEG 2000 (Lossless Only) decoder failed"));
  // JPEG whose frame is wider than the header says.
  Bytes jpeg = DicomFiles::get().bytes("ts16_jpeg-lossless");
  const size_t sof = size_t(find(jpeg, {0xff, 0xc3}));
  ASSERT_LT(sof, jpeg.size());
  jpeg[sof + 8] += 1;  // the width's low byte
  EXPECT_TRUE(contains(error_if_any([&] { decode_bytes(jpeg, "jpeg"); }), "the JPEG frame is 42x37, the header says 41x37"));
  // RLE header with 3 segments for 16-bit samples.
  Bytes rle = DicomFiles::get().bytes("ts16_rle");
  const size_t header = size_t(find(rle, {0x02, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00}));
  ASSERT_LT(header, rle.size());
  rle[header] = 3;
  EXPECT_TRUE(contains(error_if_any([&] { decode_bytes(rle, "rle"); }), "3 RLE segments for 16-bit samples"));
}

TEST(DicomRefuse, WithoutGdcmDicomIsRefusedByName) {
  if (dicom_built_in()) GTEST_SKIP() << "nn was built with GDCM";
  Bytes b(128, 0);
  b.insert(b.end(), {'D', 'I', 'C', 'M'});
  EXPECT_TRUE(contains(error_if_any([&] { decode_bytes(b, "x.dcm"); }),
                       "cannot decode image 'x.dcm': DICOM images are not supported by this build of nn"));
}

// ---- patient data ----

// Names, IDs and institutions appear in no message and nothing printed, however the file is broken.
TEST(DicomPrivacy, PatientDataNeverReachesAMessageOrTheOutput) {
  REQUIRE_DICOM("doe_explicit");
  std::vector<std::string> messages;
  auto attempt = [&](const Bytes& b) { messages.push_back(error_if_any([&] { decode_bytes(b, "case.dcm"); })); };
  auto replace = [](Bytes b, const std::string& from, const std::string& to) {
    auto at = std::search(b.begin(), b.end(), from.begin(), from.end());
    if (at != b.end()) std::copy(to.begin(), to.end(), at);
    return b;
  };
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  size_t files = 0;
  for (const char* name : {"doe_explicit", "doe_implicit", "doe_big", "doe_deflated", "doe_jpeg-lossless", "doe_jpeg-ls",
                           "doe_j2k", "doe_rle", "doe_jpeg_baseline"}) {
    if (!DicomFiles::get().missing(name).empty()) continue;
    ++files;
    const Bytes file = DicomFiles::get().bytes(name);
    for (size_t n = 0; n < file.size(); n += 7) attempt(Bytes(file.begin(), file.begin() + n));
    for (size_t i = 0; i < file.size(); ++i) {
      Bytes bad = file;
      bad[i] ^= 0xff;
      attempt(bad);
    }
    // The patient's name where values are quoted or parsed: the photometric interpretation, the
    // transfer syntax UID, a decimal string, a value representation.
    attempt(replace(file, "MONOCHROME2 ", "Doe^Jane    "));
    attempt(replace(file, "1.2.840.10008.1.2", "Doe^Jane.Doe^Jane"));
    attempt(replace(file, "3000", "Doe "));
    attempt(replace(file, std::string("\x28\x00\x10\x00US", 6), std::string("\x28\x00\x10\x00PN", 6)));
    // The name in place of the pixel data's first bytes, and in the preamble.
    Bytes preamble = file;
    std::memcpy(preamble.data(), "Doe^Jane", 8);
    attempt(preamble);
  }
  const std::string out = testing::internal::GetCapturedStdout();
  const std::string err = testing::internal::GetCapturedStderr();
  ASSERT_GT(files, 0u);
  size_t refused = 0;
  for (const std::string& m : messages) {
    if (!m.empty()) ++refused;
    for (const char* secret : {"Doe", "DOE", "Jane", "JANE", "4711", "Memorial"}) {
      EXPECT_FALSE(contains(m, secret)) << m;
    }
  }
  for (const char* secret : {"Doe", "DOE", "Jane", "JANE", "4711", "Memorial"}) {
    EXPECT_FALSE(contains(out, secret)) << out;
    EXPECT_FALSE(contains(err, secret)) << err;
  }
  EXPECT_GT(refused, messages.size() / 4);
}

// ---- file names ----

TEST(DicomFileName, DcmAndDicomInAnyCaseAreImageFiles) {
  for (const char* name : {"a.dcm", "b.DCM", "dir/c.Dcm", "d.dicom", "E.DICOM"}) EXPECT_TRUE(nn::data::is_image_file_name(name)) << name;
  for (const char* name : {"a.dcmx", "dcm", "a.dcm.txt", "a.dic"}) EXPECT_FALSE(nn::data::is_image_file_name(name)) << name;
}

TEST(DicomFileName, FolderScanFindsDicomFiles) {
  ScratchDir dir("dicom_scan");
  for (const char* f : {"NORMAL/a.dcm", "NORMAL/b.png", "PNEUMONIA/c.DICOM", "PNEUMONIA/d.txt"}) {
    std::filesystem::create_directories(std::filesystem::path(dir.file(f)).parent_path());
    std::ofstream(dir.file(f)) << "x";
  }
  const nn::data::ImageFolder folder = nn::data::scan_image_folder(dir.str());
  std::vector<std::string> names;
  for (const auto& s : folder.samples) names.push_back(std::filesystem::path(s.path).filename().string());
  EXPECT_EQ(names, (std::vector<std::string>{"a.dcm", "b.png", "c.DICOM"}));
}

}  // namespace
