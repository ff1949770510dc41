// safetensors reading and writing: exact round trips of every dtype, the byte layout the format
// prescribes, mmap aliasing without writing back to the file, atomic saves that keep the previous
// file on failure, and one test per malformed-file rule (docs/reliability.md items 1-3, 5 and 6), each
// checked through a file on disk and through the in-memory parser.
#include <gtest/gtest.h>

#include "scratch_dir.h"
#include <nn/io/safetensors.h>
#include <nn/nn.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>

namespace fs = std::filesystem;
using nn::io::SafetensorsFile;

namespace {


std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}

// A file from a header text and a data buffer, with the true header length.
std::string make_file(const std::string& header, const std::string& buffer = "") {
  return le64(header.size()) + header + buffer;
}

std::string tensor_bytes(const nn::Tensor& t) {
  nn::Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.raw_data()), c.numel() * nn::dtype_size(c.dtype()));
}

// Random non-zero, finite values of any dtype from a fixed-seed engine.
nn::Tensor random_tensor(const nn::Shape& shape, nn::DType dtype, std::mt19937_64& rng) {
  nn::Tensor t = nn::empty(shape, dtype);
  std::uniform_real_distribution<float> magnitude(0.25f, 4.0f);
  auto value = [&] { return (rng() & 1 ? -1.0f : 1.0f) * magnitude(rng); };
  uint8_t* p = static_cast<uint8_t*>(t.raw_data());
  for (int64_t i = 0; i < t.numel(); ++i) {
    switch (dtype) {
      case nn::f32: { float v = value(); std::memcpy(p + 4 * i, &v, 4); break; }
      case nn::f64: { double v = value() * 1.000000001; std::memcpy(p + 8 * i, &v, 8); break; }
      case nn::f16: { uint16_t v = nn::float_to_half(value()); std::memcpy(p + 2 * i, &v, 2); break; }
      case nn::bf16: { uint16_t v = nn::float_to_bfloat16(value()); std::memcpy(p + 2 * i, &v, 2); break; }
      case nn::i64: { int64_t v = static_cast<int64_t>(rng() | 1); std::memcpy(p + 8 * i, &v, 8); break; }
      case nn::i32: { int32_t v = static_cast<int32_t>(rng() | 1); std::memcpy(p + 4 * i, &v, 4); break; }
      case nn::u8: { p[i] = static_cast<uint8_t>(1 + rng() % 255); break; }
    }
  }
  return t;
}

const nn::DType kAllDTypes[] = {nn::f32, nn::f64, nn::f16, nn::bf16, nn::i64, nn::i32, nn::u8};

// Asserts that `bytes` is refused both from a file and from memory, with an nn::Error that names
// the source and contains every phrase.
void expect_rejected(const std::string& bytes, std::initializer_list<std::string> phrases) {
  ScratchDir dir("safetensors");
  const std::string path = dir.file("bad.safetensors");
  write_bytes(path, bytes);
  auto check = [&](const char* how, const std::string& source, auto&& call) {
    try {
      call();
      ADD_FAILURE() << how << ": accepted a malformed file; expected an error containing \""
                    << *phrases.begin() << "\"";
    } catch (const nn::Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(source), std::string::npos) << how << ": message does not name " << source
                                                       << ": " << what;
      for (const std::string& phrase : phrases)
        EXPECT_NE(what.find(phrase), std::string::npos)
            << how << ": message lacks \"" << phrase << "\": " << what;
    }
  };
  check("load_safetensors", path, [&] { nn::io::load_safetensors(path); });
  check("parse_safetensors", "mem.safetensors",
        [&] { nn::io::parse_safetensors(bytes.data(), bytes.size(), "mem.safetensors"); });
}

void expect_rejected(const std::string& bytes, const std::string& phrase) {
  expect_rejected(bytes, {phrase});
}

// A valid two-tensor header ("a": F32 [2] at 0..8, "b": U8 [4] at 8..12) with one part replaced.
std::string entry(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return "{\"dtype\":" + dtype + ",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
}

const std::string kTwelveBytes = std::string(12, '\x01');

}  // namespace

// ---------------------------------------------------------------- round trips

TEST(SafetensorsRoundTrip, EveryDTypeKeepsExactBytesShapeAndFileOrder) {
  ScratchDir dir("safetensors");
  std::mt19937_64 rng(1234);
  std::vector<std::pair<std::string, nn::Tensor>> tensors;
  for (nn::DType dt : kAllDTypes)
    tensors.emplace_back(std::string("t_") + nn::dtype_name(dt), random_tensor({3, 5}, dt, rng));
  const std::string path = dir.file("all.safetensors");
  nn::io::save_safetensors(path, tensors);

  for (int pass = 0; pass < 2; ++pass) {
    SafetensorsFile f;
    if (pass == 0) {
      f = nn::io::load_safetensors(path);
    } else {
      std::string bytes = read_bytes(path);
      f = nn::io::parse_safetensors(bytes.data(), bytes.size());
    }
    ASSERT_EQ(f.tensors.size(), tensors.size());
    // Read in offset order: written wider dtypes first, so element sizes never increase.
    for (size_t i = 1; i < f.tensors.size(); ++i)
      EXPECT_GE(nn::dtype_size(f.tensors[i - 1].second.dtype()), nn::dtype_size(f.tensors[i].second.dtype()));
    for (size_t i = 0; i < tensors.size(); ++i) {
      SCOPED_TRACE(tensors[i].first);
      const nn::Tensor& got = f.at(tensors[i].first);
      EXPECT_EQ(got.dtype(), tensors[i].second.dtype());
      EXPECT_EQ(got.shape(), (nn::Shape{3, 5}));
      EXPECT_EQ(tensor_bytes(got), tensor_bytes(tensors[i].second));
      EXPECT_NE(tensor_bytes(got), std::string(tensor_bytes(got).size(), '\0'));
    }
    EXPECT_TRUE(f.metadata.empty());
  }
}

TEST(SafetensorsRoundTrip, ZeroDimAndZeroSizeTensorsKeepTheirShapes) {
  ScratchDir dir("safetensors");
  const std::string path = dir.file("shapes.safetensors");
  nn::Tensor scalar = nn::scalar_tensor(-2.5, nn::f64);
  nn::Tensor empty_rows = nn::empty({0, 7}, nn::f32);
  nn::Tensor empty_vec = nn::empty({0}, nn::i64);
  nn::Tensor after = nn::tensor({1.5f, 2.5f});
  nn::io::save_safetensors(path, {{"scalar", scalar}, {"empty_rows", empty_rows}, {"empty_vec", empty_vec},
                                  {"after", after}});
  SafetensorsFile f = nn::io::load_safetensors(path);
  EXPECT_EQ(f.at("scalar").shape(), nn::Shape{});
  EXPECT_EQ(f.at("scalar").item<double>(), -2.5);
  EXPECT_EQ(f.at("empty_rows").shape(), (nn::Shape{0, 7}));
  EXPECT_EQ(f.at("empty_rows").dtype(), nn::f32);
  EXPECT_EQ(f.at("empty_vec").shape(), (nn::Shape{0}));
  EXPECT_EQ(f.at("empty_vec").dtype(), nn::i64);
  EXPECT_EQ(f.at("after").to_vector<float>(), (std::vector<float>{1.5f, 2.5f}));

  std::string bytes = read_bytes(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  nlohmann::json h = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(h["scalar"]["shape"], nlohmann::json::array());
  EXPECT_EQ(h["empty_rows"]["shape"], nlohmann::json({0, 7}));
  EXPECT_EQ(h["empty_rows"]["data_offsets"], nlohmann::json({8, 8}));
}

TEST(SafetensorsRoundTrip, NonContiguousInputIsSavedInLogicalOrder) {
  ScratchDir dir("safetensors");
  nn::Generator gen(7);
  nn::Tensor base = nn::randn({3, 4}, gen);
  nn::Tensor transposed = base.t();                      // (4, 3), strides (1, 4)
  nn::Tensor strided = base.slice(1, 0, 4, 2);           // (3, 2), every other column
  ASSERT_FALSE(transposed.is_contiguous());
  ASSERT_FALSE(strided.is_contiguous());
  const std::string path = dir.file("views.safetensors");
  nn::io::save_safetensors(path, {{"transposed", transposed}, {"strided", strided}});
  SafetensorsFile f = nn::io::load_safetensors(path);
  EXPECT_EQ(f.at("transposed").shape(), (nn::Shape{4, 3}));
  EXPECT_EQ(f.at("transposed").to_vector<float>(), transposed.to_vector<float>());
  EXPECT_EQ(f.at("transposed").at({2, 1}), base.at({1, 2}));
  EXPECT_EQ(f.at("strided").to_vector<float>(), strided.to_vector<float>());
  EXPECT_EQ(f.at("strided").at({2, 1}), base.at({2, 2}));
}

TEST(SafetensorsRoundTrip, MetadataRoundTripsIncludingUnicodeAndQuotes) {
  ScratchDir dir("safetensors");
  std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"preprocess", "torchvision"},
      {"note", "quotes \" backslash \\ newline \n tab \t"},
      {"unicode", "poumon \xc3\xa9 \xe8\x82\xba \xf0\x9f\xab\x81"},
      {"empty", ""}};
  const std::string path = dir.file("meta.safetensors");
  nn::io::save_safetensors(path, {{"w", nn::tensor({1, 2, 3})}}, metadata);
  SafetensorsFile f = nn::io::load_safetensors(path);
  EXPECT_EQ(f.metadata, metadata);
  EXPECT_EQ(f.source, path);
}

TEST(SafetensorsRoundTrip, MapOverloadWritesStateDictInKeyOrder) {
  ScratchDir dir("safetensors");
  std::map<std::string, nn::Tensor> state = {{"features.0.weight", nn::tensor({1, 2})},
                                             {"classifier.0.bias", nn::tensor({3})},
                                             {"features.0.bias", nn::tensor({4, 5, 6})}};
  const std::string path = dir.file("state.safetensors");
  nn::io::save_safetensors(path, state, {{"epoch", "3"}});
  SafetensorsFile f = nn::io::load_safetensors(path);
  ASSERT_EQ(f.tensors.size(), 3u);
  EXPECT_EQ(f.tensors[0].first, "classifier.0.bias");
  EXPECT_EQ(f.tensors[1].first, "features.0.bias");
  EXPECT_EQ(f.tensors[2].first, "features.0.weight");
  EXPECT_EQ(f.at("features.0.bias").to_vector<float>(), (std::vector<float>{4, 5, 6}));
  EXPECT_EQ(f.metadata.at("epoch"), "3");
}

TEST(SafetensorsRoundTrip, TensorThatRequiresGradIsSavedByValue) {
  ScratchDir dir("safetensors");
  nn::Tensor w = nn::tensor({0.5f, -1.5f}).requires_grad_();
  const std::string path = dir.file("grad.safetensors");
  nn::io::save_safetensors(path, {{"w", w}});
  SafetensorsFile f = nn::io::load_safetensors(path);
  EXPECT_FALSE(f.at("w").requires_grad());
  EXPECT_EQ(f.at("w").to_vector<float>(), (std::vector<float>{0.5f, -1.5f}));
}

TEST(SafetensorsRoundTrip, EmptyTensorListIsAValidFile) {
  ScratchDir dir("safetensors");
  const std::string path = dir.file("none.safetensors");
  nn::io::save_safetensors(path, std::vector<std::pair<std::string, nn::Tensor>>{}, {{"k", "v"}});
  SafetensorsFile f = nn::io::load_safetensors(path);
  EXPECT_TRUE(f.tensors.empty());
  EXPECT_EQ(f.metadata.at("k"), "v");
}

// ---------------------------------------------------------------- the bytes on disk

TEST(SafetensorsFormat, FileBytesAreLengthWordPaddedJsonAndContiguousData) {
  ScratchDir dir("safetensors");
  nn::Tensor a = nn::tensor({1.0f, -2.0f, 3.0f});               // 12 bytes
  nn::Tensor b = nn::from_vector<uint8_t>({7, 8, 9}, {3});       // 3 bytes
  nn::Tensor c = nn::from_vector<int64_t>({-5, 6}, {1, 2});      // 16 bytes
  const std::string path = dir.file("layout.safetensors");
  nn::io::save_safetensors(path, {{"a", a}, {"b", b}, {"c", c}}, {{"format", "pt"}});
  const std::string bytes = read_bytes(path);

  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ(n % 8, 0u) << "header must be padded to a multiple of 8 bytes";
  ASSERT_EQ(bytes.size(), 8 + n + 12 + 3 + 16);
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.front(), '{');
  const size_t last = header.find_last_not_of(' ');
  EXPECT_EQ(header[last], '}');
  EXPECT_LT(header.size() - last - 1, 8u) << "padding is fewer than 8 spaces";

  nlohmann::json h = nlohmann::json::parse(header);
  EXPECT_EQ(h["__metadata__"], nlohmann::json({{"format", "pt"}}));
  // Wider dtypes are written first so that every tensor is aligned to its element size.
  EXPECT_EQ(h["c"], nlohmann::json({{"dtype", "I64"}, {"shape", {1, 2}}, {"data_offsets", {0, 16}}}));
  EXPECT_EQ(h["a"], nlohmann::json({{"dtype", "F32"}, {"shape", {3}}, {"data_offsets", {16, 28}}}));
  EXPECT_EQ(h["b"], nlohmann::json({{"dtype", "U8"}, {"shape", {3}}, {"data_offsets", {28, 31}}}));
  EXPECT_EQ(h.size(), 4u);

  const std::string data = bytes.substr(8 + n);
  EXPECT_EQ(data.substr(0, 16), tensor_bytes(c));
  EXPECT_EQ(data.substr(16, 12), tensor_bytes(a));
  EXPECT_EQ(data.substr(28, 3), std::string("\x07\x08\x09"));
  const std::string float_one_le("\x00\x00\x80\x3f", 4);  // 1.0f, little-endian
  EXPECT_EQ(data.substr(16, 4), float_one_le);
}

TEST(SafetensorsFormat, DTypeNamesFollowTheSpec) {
  EXPECT_STREQ(nn::io::safetensors_dtype_name(nn::f32), "F32");
  EXPECT_STREQ(nn::io::safetensors_dtype_name(nn::f64), "F64");
  EXPECT_STREQ(nn::io::safetensors_dtype_name(nn::f16), "F16");
  EXPECT_STREQ(nn::io::safetensors_dtype_name(nn::bf16), "BF16");
  EXPECT_STREQ(nn::io::safetensors_dtype_name(nn::i64), "I64");
  EXPECT_STREQ(nn::io::safetensors_dtype_name(nn::i32), "I32");
  EXPECT_STREQ(nn::io::safetensors_dtype_name(nn::u8), "U8");
}

// ---------------------------------------------------------------- mmap aliasing

TEST(SafetensorsLoad, TensorsAliasOneMappingThatLivesUntilTheLastTensorDies) {
  ScratchDir dir("safetensors");
  const std::string path = dir.file("alias.safetensors");
  nn::io::save_safetensors(path, {{"a", nn::tensor({1, 2, 3, 4})}, {"b", nn::tensor({5, 6})}});
  const std::string canonical = fs::canonical(path).string();
  auto mapped = [&] {
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line))
      if (line.find(canonical) != std::string::npos) return true;
    return false;
  };
  ASSERT_FALSE(mapped());
  nn::Tensor b;
  {
    SafetensorsFile f = nn::io::load_safetensors(path);
    const char* pa = static_cast<const char*>(f.at("a").raw_data());
    const char* pb = static_cast<const char*>(f.at("b").raw_data());
    EXPECT_EQ(pb - pa, 16) << "tensors are views of one mapping, not separate copies";
    EXPECT_TRUE(mapped());
    b = f.at("b");
  }
  EXPECT_TRUE(mapped()) << "a surviving tensor keeps the mapping alive";
  EXPECT_EQ(b.to_vector<float>(), (std::vector<float>{5, 6}));
  b = nn::Tensor();
  EXPECT_FALSE(mapped()) << "the mapping is unmapped with the last tensor";
}

TEST(SafetensorsLoad, WritingIntoLoadedTensorDoesNotModifyTheFile) {
  ScratchDir dir("safetensors");
  const std::string path = dir.file("cow.safetensors");
  nn::io::save_safetensors(path, {{"w", nn::tensor({1, 2, 3})}});
  const std::string before = read_bytes(path);
  {
    SafetensorsFile f = nn::io::load_safetensors(path);
    nn::Tensor w = f.at("w");
    w.data<float>()[0] = 100.0f;
    w.add_(nn::tensor({1, 1, 1}));
    EXPECT_EQ(w.to_vector<float>(), (std::vector<float>{101, 3, 4}));
    SafetensorsFile again = nn::io::load_safetensors(path);  // a second mapping sees the file
    EXPECT_EQ(again.at("w").to_vector<float>(), (std::vector<float>{1, 2, 3}));
  }
  EXPECT_EQ(read_bytes(path), before);
}

TEST(SafetensorsLoad, UnalignedTensorIsCopiedAndReadsCorrectly) {
  // A U8 tensor of 3 bytes puts the next F32 at buffer offset 3: misaligned for a float.
  ScratchDir dir("safetensors");
  const float values[2] = {1.25f, -7.5f};
  std::string buffer = "\x01\x02\x03";
  buffer.append(reinterpret_cast<const char*>(values), 8);
  std::string header = "{\"m\":" + entry("\"U8\"", "[3]", "[0,3]") + ",\"f\":" +
                       entry("\"F32\"", "[2]", "[3,11]") + "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  const std::string path = dir.file("unaligned.safetensors");
  write_bytes(path, make_file(header, buffer));
  SafetensorsFile f = nn::io::load_safetensors(path);
  const nn::Tensor& t = f.at("f");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % alignof(float), 0u);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1.25f, -7.5f}));
  EXPECT_EQ(f.at("m").to_vector<uint8_t>(), (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_EQ(f.tensors[0].first, "m");  // file order is offset order
}

TEST(SafetensorsLoad, AtNamesTheMissingTensorAndTheFile) {
  ScratchDir dir("safetensors");
  const std::string path = dir.file("one.safetensors");
  nn::io::save_safetensors(path, {{"features.0.weight", nn::tensor({1})}});
  SafetensorsFile f = nn::io::load_safetensors(path);
  EXPECT_TRUE(f.contains("features.0.weight"));
  EXPECT_FALSE(f.contains("classifier.6.bias"));
  try {
    f.at("classifier.6.bias");
    FAIL() << "at() of a missing tensor did not throw";
  } catch (const nn::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no tensor named \"classifier.6.bias\""), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("features.0.weight"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsLoad, MissingFileAndDirectoryAreClearErrors) {
  ScratchDir dir("safetensors");
  EXPECT_THROW(
      {
        try {
          nn::io::load_safetensors(dir.file("nope.safetensors"));
        } catch (const nn::Error& e) {
          EXPECT_NE(std::string(e.what()).find("cannot open"), std::string::npos) << e.what();
          EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
          throw;
        }
      },
      nn::Error);
  EXPECT_THROW(
      {
        try {
          nn::io::load_safetensors(dir.path().string());
        } catch (const nn::Error& e) {
          EXPECT_NE(std::string(e.what()).find("is a directory"), std::string::npos) << e.what();
          throw;
        }
      },
      nn::Error);
}

// ---------------------------------------------------------------- atomic saves

namespace {

// Saves a recognisable file, runs `failing_save`, and checks that it threw an nn::Error containing
// `phrase` and `path_in_message`, that the previous file is byte-for-byte intact and still loads,
// and that no temporary file is left behind in `dir`.
void expect_failed_save_keeps_previous(const ScratchDir& dir, const std::string& previous_path,
                                       const std::function<void()>& failing_save,
                                       const std::string& path_in_message, const std::string& phrase) {
  nn::io::save_safetensors(previous_path, {{"w", nn::tensor({4, 5, 6})}});
  const std::string before = read_bytes(previous_path);
  try {
    failing_save();
    ADD_FAILURE() << "save did not fail";
  } catch (const nn::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path_in_message), std::string::npos) << what;
    EXPECT_NE(what.find(phrase), std::string::npos) << what;
  }
  EXPECT_EQ(read_bytes(previous_path), before);
  EXPECT_EQ(nn::io::load_safetensors(previous_path).at("w").to_vector<float>(),
            (std::vector<float>{4, 5, 6}));
  for (const auto& e : fs::recursive_directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos)
        << "temporary file left behind: " << e.path();
}

}  // namespace

TEST(SafetensorsSave, ReplacesAnExistingFileAndLeavesNoTemporaryFile) {
  ScratchDir dir("safetensors");
  const std::string path = dir.file("model.safetensors");
  nn::io::save_safetensors(path, {{"w", nn::tensor({1})}});
  nn::io::save_safetensors(path, {{"w", nn::tensor({2, 3})}});
  EXPECT_EQ(nn::io::load_safetensors(path).at("w").to_vector<float>(), (std::vector<float>{2, 3}));
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1u);
}

TEST(SafetensorsSave, MissingParentDirectoryFailsWithPathAndReason) {
  ScratchDir dir("safetensors");
  const std::string target = dir.file("no/such/dir/model.safetensors");
  expect_failed_save_keeps_previous(
      dir, dir.file("model.safetensors"),
      [&] { nn::io::save_safetensors(target, {{"w", nn::tensor({1})}}); }, target, "No such file or directory");
}

TEST(SafetensorsSave, PathThatIsADirectoryFailsAndKeepsTheDirectory) {
  ScratchDir dir("safetensors");
  const std::string target = dir.file("ckpt");
  fs::create_directories(target);
  expect_failed_save_keeps_previous(
      dir, dir.file("model.safetensors"),
      [&] { nn::io::save_safetensors(target, {{"w", nn::tensor({1})}}); }, target, "is a directory");
  EXPECT_TRUE(fs::is_directory(target));
}

TEST(SafetensorsSave, ReadOnlyDirectoryFailsAndKeepsThePreviousFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: chmod 0555 does not stop root's writes";
  ScratchDir dir("safetensors");
  const std::string path = dir.file("ro/model.safetensors");
  fs::create_directories(dir.file("ro"));
  nn::io::save_safetensors(path, {{"w", nn::tensor({4, 5, 6})}});
  const std::string before = read_bytes(path);
  ::chmod(dir.file("ro").c_str(), 0555);
  try {
    nn::io::save_safetensors(path, {{"w", nn::tensor({9})}});
    ADD_FAILURE() << "save into a read-only directory did not fail";
  } catch (const nn::Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Permission denied"), std::string::npos) << e.what();
  }
  ::chmod(dir.file("ro").c_str(), 0755);
  EXPECT_EQ(read_bytes(path), before);
}

// A full disk, simulated with a file-size limit: write() fails with EFBIG part-way through the
// data, as it would with ENOSPC. This works for root too.
TEST(SafetensorsSave, WriteFailurePartWayLeavesPreviousFileAndRemovesTemporary) {
  ScratchDir dir("safetensors");
  const std::string path = dir.file("model.safetensors");
  nn::Generator gen(3);
  nn::Tensor big = nn::randn({256, 1024}, gen);  // 1 MiB, far beyond the limit below
  struct rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto saved_handler = ::signal(SIGXFSZ, SIG_IGN);  // get EFBIG instead of being killed
  expect_failed_save_keeps_previous(
      dir, path,
      [&] {
        struct rlimit small = saved;
        small.rlim_cur = 64 * 1024;
        ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
        try {
          nn::io::save_safetensors(path, {{"w", big}});
        } catch (...) {
          ::setrlimit(RLIMIT_FSIZE, &saved);
          throw;
        }
        ::setrlimit(RLIMIT_FSIZE, &saved);
      },
      path, "File too large");
  ::signal(SIGXFSZ, saved_handler);
}

TEST(SafetensorsSave, RefusesEmptyDuplicateReservedAndUndefinedTensors) {
  ScratchDir dir("safetensors");
  const std::string path = dir.file("bad.safetensors");
  auto expect_refused = [&](const std::vector<std::pair<std::string, nn::Tensor>>& tensors,
                            const std::string& phrase) {
    try {
      nn::io::save_safetensors(path, tensors);
      ADD_FAILURE() << "accepted; expected \"" << phrase << "\"";
    } catch (const nn::Error& e) {
      EXPECT_NE(std::string(e.what()).find(phrase), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(path));
  };
  nn::Tensor t = nn::tensor({1});
  expect_refused({{"", t}}, "empty tensor name");
  expect_refused({{"w", t}, {"w", t}}, "duplicate tensor name \"w\"");
  expect_refused({{"__metadata__", t}}, "reserved");
  expect_refused({{"w", nn::Tensor()}}, "undefined");
  expect_refused({{"bad\xff", t}}, "not valid UTF-8");
}

// ---------------------------------------------------------------- malformed files

TEST(SafetensorsValidation, EmptyFileIsRejected) { expect_rejected("", "empty file"); }

TEST(SafetensorsValidation, FileShorterThanEightBytesIsRejected) {
  expect_rejected("\x02\x00\x00\x00\x00", {"not a safetensors file", "shorter than 8 bytes"});
}

TEST(SafetensorsValidation, HeaderLengthLargerThanFileIsRejected) {
  expect_rejected(le64(1000) + "{}", {"not a safetensors file", "header length 1000 is larger than the 2 bytes"});
}

TEST(SafetensorsValidation, HeaderLengthOverHundredMegabytesIsRejectedWithoutAllocating) {
  expect_rejected(le64(100'000'001) + "{}", "exceeds the limit of 100000000 bytes");
  expect_rejected(le64(UINT64_MAX) + "{}", "exceeds the limit of 100000000 bytes");  // 8 + N would wrap
}

TEST(SafetensorsValidation, ZeroHeaderLengthIsNotJson) { expect_rejected(le64(0), "not valid JSON"); }

TEST(SafetensorsValidation, HeaderThatIsNotUtf8IsRejected) {
  expect_rejected(make_file("{\"a\xff\":1}"), "not valid UTF-8");
  expect_rejected(make_file("{\"\xc0\xaf\":1}"), "not valid UTF-8");       // overlong '/'
  expect_rejected(make_file("{\"\xed\xa0\x80\":1}"), "not valid UTF-8");   // surrogate
  expect_rejected(make_file("{\"\xf4\x90\x80\x80\":1}"), "not valid UTF-8");  // above U+10FFFF
  expect_rejected(make_file("{\"\xe8\x82\":1}"), "not valid UTF-8");        // truncated sequence
}

TEST(SafetensorsValidation, HeaderThatIsNotJsonIsRejected) {
  expect_rejected(make_file("{\"a\": "), "not valid JSON");
  expect_rejected(make_file("{'a': 1}"), "not valid JSON");
  expect_rejected(make_file(std::string("{\"a\"\0:1}", 8)), "not valid JSON");
}

TEST(SafetensorsValidation, HeaderThatIsNotAnObjectIsRejected) {
  expect_rejected(make_file("[1, 2]"), "not a JSON object");
  expect_rejected(make_file("\"F32\""), "not a JSON object");
  expect_rejected(make_file("null"), "not a JSON object");
}

TEST(SafetensorsValidation, DuplicateTensorNamesAreRejected) {
  const std::string e = entry("\"F32\"", "[1]", "[0,4]");
  expect_rejected(make_file("{\"w\":" + e + ",\"w\":" + e + "}", "abcd"), "duplicate tensor name \"w\"");
}

TEST(SafetensorsValidation, DuplicateFieldInAnEntryIsRejected) {
  expect_rejected(make_file("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd"),
                  "duplicate key \"dtype\" in the entry \"w\"");
}

TEST(SafetensorsValidation, MetadataThatIsNotAStringMapIsRejected) {
  const std::string rule = "\"__metadata__\" must be an object mapping strings to strings";
  expect_rejected(make_file("{\"__metadata__\":[\"a\"]}"), {rule, "JSON array"});
  expect_rejected(make_file("{\"__metadata__\":\"pt\"}"), {rule, "JSON string"});
  expect_rejected(make_file("{\"__metadata__\":{\"epoch\":3}}"), {rule, "\"epoch\""});
  expect_rejected(make_file("{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}"), {rule, "\"a\""});
  expect_rejected(make_file("{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}"), "duplicate key \"k\"");
}

TEST(SafetensorsValidation, EntryThatIsNotAnObjectIsRejected) {
  expect_rejected(make_file("{\"w\":[0,4]}", "abcd"), {"tensor \"w\"", "the entry is not a JSON object"});
  expect_rejected(make_file("{\"w\":5}", "abcd"), {"tensor \"w\"", "the entry is not a JSON object"});
}

TEST(SafetensorsValidation, EntryWithMissingFieldIsRejected) {
  expect_rejected(make_file("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd"), "missing field \"dtype\"");
  expect_rejected(make_file("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", "abcd"), "missing field \"shape\"");
  expect_rejected(make_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", "abcd"), "missing field \"data_offsets\"");
}

TEST(SafetensorsValidation, EntryWithExtraFieldIsRejected) {
  expect_rejected(make_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"offset\":0}}", "abcd"),
                  {"tensor \"w\"", "unexpected field \"offset\""});
}

TEST(SafetensorsValidation, DTypeThatIsNotAStringIsRejected) {
  expect_rejected(make_file("{\"w\":" + entry("4", "[1]", "[0,4]") + "}", "abcd"), "dtype is not a string");
  expect_rejected(make_file("{\"w\":" + entry("[\"F32\"]", "[1]", "[0,4]") + "}", "abcd"), "dtype is not a string");
}

TEST(SafetensorsValidation, UnknownDTypeIsRejectedByName) {
  expect_rejected(make_file("{\"w\":" + entry("\"F8_E4M3\"", "[4]", "[0,4]") + "}", "abcd"),
                  {"tensor \"w\"", "unknown dtype \"F8_E4M3\""});
  expect_rejected(make_file("{\"w\":" + entry("\"f32\"", "[1]", "[0,4]") + "}", "abcd"), "unknown dtype \"f32\"");
  expect_rejected(make_file("{\"w\":" + entry("\"BOOL\"", "[4]", "[0,4]") + "}", "abcd"), "unknown dtype \"BOOL\"");
}

TEST(SafetensorsValidation, ShapeThatIsNotAnArrayOfNonNegativeIntegersIsRejected) {
  const std::string rule = "shape must be an array of non-negative integers";
  auto file = [](const std::string& shape) {
    return make_file("{\"w\":" + entry("\"F32\"", shape, "[0,4]") + "}", "abcd");
  };
  expect_rejected(file("1"), rule);
  expect_rejected(file("{\"0\":1}"), rule);
  expect_rejected(file("[1.0]"), rule);
  expect_rejected(file("[1e0]"), rule);
  expect_rejected(file("[-1]"), rule);
  expect_rejected(file("[\"1\"]"), rule);
  expect_rejected(file("[true]"), rule);
  expect_rejected(file("[null]"), rule);
  expect_rejected(file("[[1]]"), "nests JSON deeper than a safetensors header");
  expect_rejected(file("[9007199254740993]"), rule);     // 2^53 + 1
  expect_rejected(file("[18446744073709551616]"), rule);  // 2^64: not an integer to the parser
}

TEST(SafetensorsValidation, ShapeProductOverflowIsRejectedWithCheckedArithmetic) {
  auto file = [](const std::string& dtype, const std::string& shape) {
    return make_file("{\"w\":" + entry(dtype, shape, "[0,4]") + "}", "abcd");
  };
  expect_rejected(file("\"U8\"", "[4294967296,4294967296]"), "overflows 64 bits");         // 2^64 elements
  expect_rejected(file("\"F64\"", "[2147483648,2147483648]"), "overflows 64 bits");        // 2^62 x 8 bytes
  expect_rejected(file("\"F32\"", "[9007199254740992,9007199254740992,0]"), "overflows 64 bits");
  expect_rejected(file("\"F32\"", "[0,9007199254740992,9007199254740992]"), "overflows 64 bits");
}

TEST(SafetensorsValidation, DataOffsetsThatAreNotTwoNonNegativeIntegersAreRejected) {
  const std::string rule = "data_offsets must be two non-negative integers";
  auto file = [](const std::string& offsets) {
    return make_file("{\"w\":" + entry("\"F32\"", "[1]", offsets) + "}", "abcd");
  };
  expect_rejected(file("4"), rule);
  expect_rejected(file("[4]"), rule);
  expect_rejected(file("[0,4,8]"), rule);
  expect_rejected(file("[-4,0]"), rule);
  expect_rejected(file("[0.0,4]"), rule);
  expect_rejected(file("[\"0\",4]"), rule);
  expect_rejected(file("{\"begin\":0,\"end\":4}"), rule);
}

TEST(SafetensorsValidation, DataOffsetsThatRunBackwardsAreRejected) {
  expect_rejected(make_file("{\"w\":" + entry("\"F32\"", "[1]", "[4,0]") + "}", "abcd"),
                  {"tensor \"w\"", "run backwards"});
}

TEST(SafetensorsValidation, DataOffsetsPastTheEndAreRejected) {
  expect_rejected(make_file("{\"w\":" + entry("\"F32\"", "[2]", "[0,8]") + "}", "abcd"),
                  {"tensor \"w\"", "point past the end of the data buffer (4 bytes)"});
  expect_rejected(make_file("{\"w\":" + entry("\"F32\"", "[1]", "[18446744073709551612,18446744073709551615]") + "}", "abcd"),
                  "point past the end");
}

TEST(SafetensorsValidation, ShapeTimesDTypeSizeDisagreeingWithOffsetsIsRejected) {
  expect_rejected(make_file("{\"w\":" + entry("\"F32\"", "[2,2]", "[0,12]") + "}", kTwelveBytes),
                  {"tensor \"w\"", "needs 16 bytes, but data_offsets [0, 12] span 12"});
  expect_rejected(make_file("{\"w\":" + entry("\"F64\"", "[]", "[0,4]") + "}", "abcd"), "needs 8 bytes");
}

TEST(SafetensorsValidation, OverlappingTensorsAreRejected) {
  expect_rejected(make_file("{\"a\":" + entry("\"F32\"", "[2]", "[0,8]") + ",\"b\":" +
                            entry("\"U8\"", "[8]", "[4,12]") + "}", kTwelveBytes),
                  {"\"a\"", "\"b\"", "overlap"});
  // Two tensors on the same bytes (aliasing).
  expect_rejected(make_file("{\"a\":" + entry("\"F32\"", "[3]", "[0,12]") + ",\"b\":" +
                            entry("\"I32\"", "[3]", "[0,12]") + "}", kTwelveBytes),
                  "overlap");
}

TEST(SafetensorsValidation, HoleBetweenTensorsIsRejected) {
  expect_rejected(make_file("{\"a\":" + entry("\"F32\"", "[1]", "[0,4]") + ",\"b\":" +
                            entry("\"U8\"", "[4]", "[8,12]") + "}", kTwelveBytes),
                  {"hole in the data buffer: bytes 4..8", "\"b\""});
  expect_rejected(make_file("{\"b\":" + entry("\"U8\"", "[4]", "[8,12]") + "}", kTwelveBytes),
                  "hole in the data buffer: bytes 0..8");
}

TEST(SafetensorsValidation, TrailingBytesAfterTheLastTensorAreRejected) {
  expect_rejected(make_file("{\"a\":" + entry("\"F32\"", "[2]", "[0,8]") + "}", kTwelveBytes),
                  "4 trailing bytes after the last tensor");
  expect_rejected(make_file("{}", "xyz"), "3 trailing bytes");
}

TEST(SafetensorsValidation, EmptyTensorNameIsRejected) {
  expect_rejected(make_file("{\"\":" + entry("\"F32\"", "[1]", "[0,4]") + "}", "abcd"), "empty tensor name");
}

TEST(SafetensorsValidation, DeeplyNestedHeaderIsRejectedEarly) {
  std::string header = "{\"w\":{\"shape\":" + std::string(100000, '[') + std::string(100000, ']') + "}}";
  expect_rejected(make_file(header), "nests JSON deeper than a safetensors header");
  expect_rejected(make_file(std::string(1000000, '[')), "nests JSON deeper than a safetensors header");
}

// The parsed header's size is bounded before any rule runs: an array of more than 64 elements (a
// shape of rank 65) and a header of more than 2^21 JSON values are refused while parsing; rank 64
// is still read.
TEST(SafetensorsValidation, HeaderJsonSizeIsBoundedWhileParsing) {
  std::string dims = "1";
  for (int i = 1; i < 64; ++i) dims += ",1";
  const std::string rank64 = make_file("{\"w\":" + entry("\"F32\"", "[" + dims + "]", "[0,4]") + "}", "abcd");
  nn::io::SafetensorsFile ok = nn::io::parse_safetensors(rank64.data(), rank64.size(), "rank64");
  EXPECT_EQ(ok.at("w").dim(), 64);
  expect_rejected(make_file("{\"w\":" + entry("\"F32\"", "[" + dims + ",1]", "[0,4]") + "}", "abcd"),
                  {"an array in the header has more than 64 elements", "in the entry \"w\""});
  std::string zeros = "0";
  for (int i = 1; i < 65; ++i) zeros += ",0";
  expect_rejected(make_file("[" + zeros + "]"), "an array in the header has more than 64 elements");
  // 2^20 + 1 metadata keys with their values: more than 2^21 values in all.
  std::string metadata = "{\"__metadata__\":{";
  for (int i = 0; i <= (1 << 20); ++i) metadata += (i ? ",\"" : "\"") + std::to_string(i) + "\":\"\"";
  expect_rejected(make_file(metadata + "}}"), "the header holds more than 2097152 JSON values");
}

TEST(SafetensorsValidation, NamesThatLookLikePathsAreOnlyData) {
  // Tensor names are never used as paths: a name full of ../ loads as an ordinary name.
  ScratchDir dir("safetensors");
  const std::string name = "../../etc/passwd";
  const std::string path = dir.file("paths.safetensors");
  nn::io::save_safetensors(path, {{name, nn::tensor({1})}});
  SafetensorsFile f = nn::io::load_safetensors(path);
  EXPECT_EQ(f.tensors.at(0).first, name);
  size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir.path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1u);
}

// ---------------------------------------------------------------- other formats renamed

TEST(SafetensorsValidation, PickleFileIsNotASafetensorsFile) {
  // pickle.dumps({'a': 1}, protocol=2): nothing in it is ever interpreted.
  const std::string pickle("\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.", 17);
  expect_rejected(pickle, {"not a safetensors file", "pickle"});
  // The same signature with a header length that happens to be plausible (0x0280 = 640).
  expect_rejected(std::string("\x80\x02\x00\x00\x00\x00\x00\x00", 8) + std::string(700, 'q'),
                  {"not a safetensors file", "pickle"});
  // Protocol 4 with a FRAME opcode, as torch.save(..., _use_new_zipfile_serialization=False) writes.
  expect_rejected(std::string("\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.", 14),
                  {"not a safetensors file", "pickle"});
  expect_rejected(std::string("\x80\x02", 2), {"not a safetensors file", "pickle"});
}

TEST(SafetensorsValidation, PyTorchZipCheckpointIsNotASafetensorsFile) {
  std::string zip("PK\x03\x04\x14\x00\x00\x00\x08\x00", 10);
  zip += "archive/data.pkl" + std::string(200, '\0');
  expect_rejected(zip, {"not a safetensors file", "zip archive"});
}

TEST(SafetensorsValidation, Hdf5FileIsNotASafetensorsFile) {
  std::string h5("\x89HDF\r\n\x1a\n\x00\x00\x00\x00\x00\x08\x08\x00", 16);
  h5 += std::string(800, '\0');
  expect_rejected(h5, {"not a safetensors file", "HDF5"});
}

// ---------------------------------------------------------------- NaN / Inf

TEST(SafetensorsCheckFinite, NaNInAWeightIsReportedByTensorName) {
  ScratchDir dir("safetensors");
  nn::Tensor good = nn::tensor({1, 2, 3});
  nn::Tensor bad = nn::tensor({0.5f, 0.25f, 0.125f, 1.0f});
  bad.set({2}, std::nan(""));
  const std::string path = dir.file("nan.safetensors");
  nn::io::save_safetensors(path, {{"features.0.bias", good},
                                  {"labels", nn::from_vector<int64_t>({1, 2}, {2})},
                                  {"features.3.weight", bad}});
  SafetensorsFile f = nn::io::load_safetensors(path);
  try {
    nn::io::check_finite(f);
    FAIL() << "check_finite accepted a NaN";
  } catch (const nn::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("tensor \"features.3.weight\""), std::string::npos) << what;
    EXPECT_NE(what.find("1 NaN and 0 infinite values, the first at flat index 2"), std::string::npos) << what;
    EXPECT_NE(what.find(path), std::string::npos) << what;
  }
}

TEST(SafetensorsCheckFinite, InfinityInHalfAndBFloat16IsFoundAndFiniteFilesPass) {
  ScratchDir dir("safetensors");
  std::mt19937_64 rng(99);
  std::vector<std::pair<std::string, nn::Tensor>> tensors;
  for (nn::DType dt : kAllDTypes) tensors.emplace_back(nn::dtype_name(dt), random_tensor({4, 4}, dt, rng));
  const std::string path = dir.file("finite.safetensors");
  nn::io::save_safetensors(path, tensors);
  EXPECT_NO_THROW(nn::io::check_finite(nn::io::load_safetensors(path)));

  for (nn::DType dt : {nn::f16, nn::bf16, nn::f64}) {
    SCOPED_TRACE(nn::dtype_name(dt));
    nn::Tensor t = random_tensor({2, 3}, dt, rng);
    t.set({1, 1}, -INFINITY);
    SafetensorsFile f;
    f.source = "mem";
    f.tensors = {{"ok", random_tensor({2}, dt, rng)}, {"head.weight", t}};
    try {
      nn::io::check_finite(f);
      ADD_FAILURE() << "check_finite accepted an infinity";
    } catch (const nn::Error& e) {
      EXPECT_NE(std::string(e.what()).find("tensor \"head.weight\""), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("0 NaN and 1 infinite values, the first at flat index 4"),
                std::string::npos)
          << e.what();
    }
  }
}

// ---------------------------------------------------------------- interop with the official package

TEST(SafetensorsInterop, OfficialPythonPackageReadsOurFileAndWritesOneWeRead) {
  if (std::system("python3 -c 'import safetensors' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "the Python safetensors package is not installed (pip install safetensors)";
  ScratchDir dir("safetensors");
  std::mt19937_64 rng(2024);
  std::vector<std::pair<std::string, nn::Tensor>> tensors;
  for (nn::DType dt : kAllDTypes)
    tensors.emplace_back(std::string("layer.") + nn::dtype_name(dt), random_tensor({2, 3}, dt, rng));
  tensors.emplace_back("scalar", nn::scalar_tensor(3.0));
  tensors.emplace_back("empty", nn::empty({0, 4}, nn::f32));
  const std::string ours = dir.file("ours.safetensors");
  const std::string theirs = dir.file("theirs.safetensors");
  const std::string log = dir.file("python.log");
  nn::io::save_safetensors(ours, tensors, {{"format", "pt"}, {"written_by", "nn"}});

  const std::string command = std::string("python3 '") + NN_SOURCE_DIR + "/tests/safetensors_interop.py' '" +
                              ours + "' '" + theirs + "' > '" + log + "' 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << "python failed:\n" << read_bytes(log);

  SafetensorsFile f = nn::io::load_safetensors(theirs);
  // Python saw every tensor with our dtype and shape ...
  std::string expected_seen;
  std::vector<std::pair<std::string, nn::Tensor>> sorted = tensors;
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [name, t] : sorted) {
    if (!expected_seen.empty()) expected_seen += ";";
    std::string shape = nn::shape_str(t.shape());
    shape.erase(std::remove(shape.begin(), shape.end(), ' '), shape.end());
    expected_seen += name + ":" + nn::io::safetensors_dtype_name(t.dtype()) + ":" + shape;
  }
  EXPECT_EQ(f.metadata.at("seen_by_python"), expected_seen);
  EXPECT_EQ(f.metadata.at("written_by"), "nn");
  EXPECT_EQ(f.metadata.at("format"), "pt");
  // ... and wrote back the same bytes, which we read from its file.
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(f.contains(name));
    EXPECT_EQ(f.at(name).dtype(), t.dtype());
    EXPECT_EQ(f.at(name).shape(), t.shape());
    EXPECT_EQ(tensor_bytes(f.at(name)), tensor_bytes(t));
  }
  EXPECT_EQ(f.at("python.f32").to_vector<float>(), (std::vector<float>{1.5f, -2.25f, 3.0f}));
  EXPECT_EQ(f.at("python.i64").to_vector<int64_t>(), (std::vector<int64_t>{-(int64_t{1} << 40), 7}));
}
