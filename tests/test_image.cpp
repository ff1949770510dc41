// nn/data/image.h: decoding (PNG 8/16-bit, palette, JPEG), refusal of bad input (empty, truncated,
// corrupt, other formats, oversized headers, too many scans, the fuzzers' regression inputs), resizing against a float64 reference of the same
// triangle filter, cropping, preprocessing and PNG writing (suite Image). Suite ImageGolden
// compares with PIL and torchvision (tests/golden/image_reference.py, run at test time with
// /usr/bin/python3; skipped when it cannot import torch, torchvision, PIL and numpy).
#include <gtest/gtest.h>
#include <nn/data/image.h>
#include <nn/io/safetensors.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

// stb_image_write's JPEG writer, for JPEGs to decode (test-only; the library compiles its own copy
// of stb, static, in libnn/src/data/stb_impl.cpp).
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#if __has_include(<stb/stb_image_write.h>)
#include <stb/stb_image_write.h>
#else
#include <stb_image_write.h>
#endif
#pragma GCC diagnostic pop

#include "error_text.h"

namespace {

using nn::data::Image;
using Bytes = std::vector<uint8_t>;
namespace fs = std::filesystem;

// ---- helpers ----

// An image of random 8-bit levels (v/255), so PNG round trips are exact.
Image random_levels(int64_t h, int64_t w, int64_t c, uint32_t seed) {
  std::mt19937 rng(seed);
  Image im{h, w, c, {}};
  im.pixels.resize(static_cast<size_t>(h * w * c));
  for (float& v : im.pixels) v = static_cast<float>(rng() % 256) / 255.0f;
  return im;
}

// Smooth content (what JPEG is made for): waves per channel, levels v/255.
Image smooth(int64_t h, int64_t w, int64_t c) {
  Image im{h, w, c, {}};
  im.pixels.resize(static_cast<size_t>(h * w * c));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t k = 0; k < c; ++k)
        im.pixels[(y * w + x) * c + k] =
            std::round(255.0f * (0.5f + 0.4f * std::sin(x / (5.0f + 2 * k) + y / (7.0f + k)))) / 255.0f;
  return im;
}

Bytes to_8_bit(const Image& im) {
  Bytes b(im.pixels.size());
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(std::lround(im.pixels[i] * 255.0f));
  return b;
}

void append_bytes(void* context, void* data, int size) {
  auto* out = static_cast<Bytes*>(context);
  out->insert(out->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
}

// A baseline JPEG (stb_image_write; 4:2:0 at quality <= 90, 4:4:4 above) of 1 or 3 channels.
Bytes make_jpeg(const Image& im, int quality) {
  Bytes samples = to_8_bit(im), out;
  EXPECT_TRUE(stbi_write_jpg_to_func(append_bytes, &out, static_cast<int>(im.width), static_cast<int>(im.height),
                                     static_cast<int>(im.channels), samples.data(), quality));
  return out;
}

// A minimal PNG writer (zlib stored blocks, filter type 0), for the files stb_image_write cannot
// make: 16-bit and low bit depths, palettes, crafted headers.
uint32_t crc32(const uint8_t* d, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) {
    c ^= d[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return c ^ 0xffffffffu;
}

void put_be32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

void put_chunk(Bytes& png, const char* type, const Bytes& data) {
  put_be32(png, static_cast<uint32_t>(data.size()));
  size_t start = png.size();
  png.insert(png.end(), type, type + 4);
  png.insert(png.end(), data.begin(), data.end());
  put_be32(png, crc32(png.data() + start, png.size() - start));
}

Bytes zlib_stored(const Bytes& raw) {
  Bytes z = {0x78, 0x01};
  size_t pos = 0;
  do {
    size_t n = std::min<size_t>(raw.size() - pos, 65535);
    z.push_back(pos + n == raw.size() ? 1 : 0);
    z.push_back(static_cast<uint8_t>(n));
    z.push_back(static_cast<uint8_t>(n >> 8));
    z.push_back(static_cast<uint8_t>(~n));
    z.push_back(static_cast<uint8_t>(~n >> 8));
    z.insert(z.end(), raw.begin() + pos, raw.begin() + pos + n);
    pos += n;
  } while (pos < raw.size());
  uint32_t a = 1, b = 0;
  for (uint8_t v : raw) {
    a = (a + v) % 65521;
    b = (b + a) % 65521;
  }
  put_be32(z, (b << 16) | a);
  return z;
}

int png_channels(int color_type) {
  switch (color_type) {
    case 0: return 1;
    case 2: return 3;
    case 3: return 1;
    case 4: return 2;
    default: return 4;
  }
}

// A zlib stream of n zero bytes in fixed-Huffman deflate: a literal 0, then copies of 258 bytes at
// distance 1, 13 bits each (about n / 159 bytes in all): a decompression bomb.
Bytes zlib_zeros(size_t n) {
  Bytes out = {0x78, 0x01};
  uint32_t acc = 0;
  int bits = 0;
  auto put = [&](uint32_t v, int count) {  // deflate packs bits from the least significant
    acc |= v << bits;
    for (bits += count; bits >= 8; bits -= 8, acc >>= 8) out.push_back(static_cast<uint8_t>(acc));
  };
  auto put_code = [&](uint32_t code, int length) {  // Huffman codes go most significant bit first
    for (int i = length - 1; i >= 0; --i) put((code >> i) & 1u, 1);
  };
  put(1, 1);  // BFINAL
  put(1, 2);  // BTYPE 01: fixed Huffman codes
  put_code(0x30, 8);  // literal 0
  size_t done = 1;
  for (; n - done >= 258; done += 258) {
    put_code(0xc5, 8);  // length 258 (symbol 285)
    put_code(0, 5);     // distance 1
  }
  for (; done < n; ++done) put_code(0x30, 8);
  put_code(0, 7);  // end of block (symbol 256)
  if (bits > 0) out.push_back(static_cast<uint8_t>(acc));
  put_be32(out, static_cast<uint32_t>((n % 65521) << 16 | 1));  // Adler-32 of n zeros
  return out;
}

// `rows`: the unfiltered scanlines, concatenated (big-endian samples, packed low bit depths);
// `idat`, when given, replaces the IDAT data made from them.
Bytes make_png(uint32_t w, uint32_t h, int depth, int color_type, const Bytes& rows,
               const std::vector<std::pair<const char*, Bytes>>& extra = {}, const Bytes* idat = nullptr) {
  Bytes png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  Bytes ihdr;
  put_be32(ihdr, w);
  put_be32(ihdr, h);
  ihdr.insert(ihdr.end(), {static_cast<uint8_t>(depth), static_cast<uint8_t>(color_type), 0, 0, 0});
  put_chunk(png, "IHDR", ihdr);
  for (const auto& [type, data] : extra) put_chunk(png, type, data);
  size_t row_bytes = (static_cast<size_t>(w) * depth * png_channels(color_type) + 7) / 8;
  Bytes filtered;
  for (uint32_t y = 0; y < h && !rows.empty(); ++y) {
    filtered.push_back(0);
    filtered.insert(filtered.end(), rows.begin() + y * row_bytes, rows.begin() + (y + 1) * row_bytes);
  }
  put_chunk(png, "IDAT", idat != nullptr ? *idat : zlib_stored(filtered));
  put_chunk(png, "IEND", {});
  return png;
}

// Recomputes the CRC of every complete chunk (after a test changed the chunks' contents).
void fix_png_crcs(Bytes& png) {
  size_t at = 8;
  while (png.size() >= at + 12) {
    uint32_t length = (uint32_t(png[at]) << 24) | (uint32_t(png[at + 1]) << 16) | (uint32_t(png[at + 2]) << 8) | png[at + 3];
    if (png.size() - at - 12 < length) return;
    uint32_t crc = crc32(png.data() + at + 4, size_t{length} + 4);
    for (int k = 0; k < 4; ++k) png[at + 8 + length + k] = static_cast<uint8_t>(crc >> (24 - 8 * k));
    at += 12 + size_t{length};
  }
}

// Progressive JPEGs (stb_image_write makes only baseline ones), written by PIL 9.4 at quality 90:
// a 16x24 gray ramp v = 6x + 4y + 20, and a 16x24 colour ramp (10x + 5, 12y + 30, 200 - 6x - 3y).
const char* const kGrayProgressiveJpeg =
    "ffd8ffe000104a46494600010100000100010000ffdb004300030202030202030303030403030405080505040405"
    "0a070706080c0a0c0c0b0a0b0b0d0e12100d0e110e0b0b1016101113141515150c0f171816141812141514ffc200"
    "0b080010001801011100ffc40014000100000000000000000000000000000007ffda00080101000000011d40402a"
    "4040ffc4001510010100000000000000000000000000000400ffda000801010001050211a11a11a11a11a11affc4"
    "001510010100000000000000000000000000000001ffda0008010100063f02888888ffc400151001010000000000"
    "0000000000000000000051ffda0008010100013f2191224489123fffda0008010100000010ff00ffc40014100100"
    "000000000000000000000000000020ffda0008010100013f105333333fffd9";
const char* const kColourProgressiveJpeg =
    "ffd8ffe000104a46494600010100000100010000ffdb004300030202030202030303030403030405080505040405"
    "0a070706080c0a0c0c0b0a0b0b0d0e12100d0e110e0b0b1016101113141515150c0f171816141812141514ffdb00"
    "430103040405040509050509140d0b0d141414141414141414141414141414141414141414141414141414141414"
    "1414141414141414141414141414141414141414ffc20011080010001803012200021101031101ffc40017000003"
    "010000000000000000000000000000050607ffc4001501010100000000000000000000000000000507ffda000c03"
    "010002100310000001cd9cd7394439034825364fffc400161000030000000000000000000000000000000304ffda"
    "00080101000105025402a01500a805402a03ffc4001a110002020300000000000000000000000000050121042331"
    "ffda0008010301013f014cdb966236d5167fffc400191100020301000000000000000000000000000504213123ff"
    "da0008010201013f016ae76c92e7a69fffc4001510010100000000000000000000000000000031ffda0008010100"
    "063f02888888ffc400161001010100000000000000000000000000311020ffda0008010100013f210c000103ffda"
    "000c03010002000300000010bb3fffc40014110100000000000000000000000000000010ffda0008010301013f10"
    "021fffc4001511010100000000000000000000000000000021ffda0008010201013f104587ffc400171000030100"
    "0000000000000000000000000031c1f1ffda0008010100013f10cc1702e05c1982e0ffd9";

Bytes from_hex(const char* hex) {
  Bytes b;
  for (const char* p = hex; p[0] != '\0' && p[1] != '\0'; p += 2)
    b.push_back(static_cast<uint8_t>(std::stoi(std::string(p, 2), nullptr, 16)));
  return b;
}

Image decode(const Bytes& b, const nn::data::ImageLimits& limits = {}) {
  return nn::data::decode_image(b.data(), b.size(), "test image", limits);
}


class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("nn_image_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// float64 reference of the antialiased bilinear resize, written directly from its definition: for
// output index i of an axis with scale s = in / out, the tent max(0, 1 - |j + 0.5 - (i + 0.5) s| / f)
// with f = max(s, 1) over every input j, normalised to sum 1. (PIL restricts j to a window; every
// tap outside it has weight 0, so the dense sum is the same filter.)
std::vector<double> reference_weights(int64_t in, int64_t out, int64_t i) {
  double s = static_cast<double>(in) / out, f = std::max(s, 1.0), center = (i + 0.5) * s, total = 0;
  std::vector<double> w(in);
  for (int64_t j = 0; j < in; ++j) total += w[j] = std::max(0.0, 1.0 - std::abs(j + 0.5 - center) / f);
  for (double& v : w) v /= total;
  return w;
}

std::vector<double> reference_resize(const Image& im, int64_t oh, int64_t ow) {
  const int64_t c = im.channels;
  std::vector<double> horizontal(im.height * ow * c, 0.0), out(oh * ow * c, 0.0);
  for (int64_t x = 0; x < ow; ++x) {
    std::vector<double> w = reference_weights(im.width, ow, x);
    for (int64_t y = 0; y < im.height; ++y)
      for (int64_t j = 0; j < im.width; ++j)
        for (int64_t k = 0; k < c; ++k) horizontal[(y * ow + x) * c + k] += w[j] * im.at(y, j, k);
  }
  for (int64_t y = 0; y < oh; ++y) {
    std::vector<double> w = reference_weights(im.height, oh, y);
    for (int64_t i = 0; i < im.height; ++i)
      for (int64_t x = 0; x < ow * c; ++x) out[y * ow * c + x] += w[i] * horizontal[i * ow * c + x];
  }
  return out;
}

// ---- decoding ----

TEST(Image, PngRoundTripEveryChannelCount) {
  for (int64_t c = 1; c <= 4; ++c) {
    Image im = random_levels(13, 17, c, static_cast<uint32_t>(c));
    Image back = decode(nn::data::encode_png(im));
    ASSERT_EQ(back.height, 13);
    ASSERT_EQ(back.width, 17);
    ASSERT_EQ(back.channels, c);
    EXPECT_EQ(back.pixels, im.pixels) << c << " channels";  // v/255 levels survive exactly
  }
  // Arbitrary values are rounded to the nearest level (and clamped, NaN -> 0).
  Image im{1, 5, 1, {0.1234f, -0.5f, 1.7f, std::nanf(""), 0.5f}};
  Image back = decode(nn::data::encode_png(im));
  EXPECT_NEAR(back.pixels[0], 0.1234f, 0.5f / 255 + 1e-6f);
  EXPECT_EQ(back.pixels[1], 0.0f);
  EXPECT_EQ(back.pixels[2], 1.0f);
  EXPECT_EQ(back.pixels[3], 0.0f);
  EXPECT_EQ(back.pixels[4], 128.0f / 255.0f);
}

TEST(Image, SixteenBitPngKeepsFullPrecision) {
  for (int color_type : {0, 4, 2, 6}) {
    const int c = png_channels(color_type);
    const uint32_t w = 7, h = 5;
    std::mt19937 rng(static_cast<uint32_t>(color_type));
    std::vector<uint16_t> samples(w * h * c);
    for (uint16_t& v : samples) v = static_cast<uint16_t>(rng());
    samples[0] = 0;
    samples[1] = 65535;
    Bytes rows;
    for (uint16_t v : samples) rows.insert(rows.end(), {static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)});
    Image im = decode(make_png(w, h, 16, color_type, rows));
    ASSERT_EQ(im.channels, c);
    ASSERT_EQ(im.height, 5);
    ASSERT_EQ(im.width, 7);
    for (size_t i = 0; i < samples.size(); ++i)
      ASSERT_EQ(im.pixels[i], static_cast<float>(samples[i]) / 65535.0f) << "color type " << color_type << " sample " << i;
  }
}

TEST(Image, LowBitDepthAndPalettePngs) {
  // 1-bit gray: 0/1 -> 0/1.0; a row of 10 pixels is 2 bytes.
  Image bits = decode(make_png(10, 1, 1, 0, {0b10110000, 0b01000000}));
  ASSERT_EQ(bits.channels, 1);
  std::vector<float> want = {1, 0, 1, 1, 0, 0, 0, 0, 0, 1};
  EXPECT_EQ(bits.pixels, want);
  // 4-bit gray: v -> v * 17 / 255.
  Image nibbles = decode(make_png(2, 1, 4, 0, {0x3f}));
  EXPECT_EQ(nibbles.pixels, (std::vector<float>{3 * 17 / 255.0f, 1.0f}));
  // Palette: expanded to RGB, or RGBA with a tRNS chunk.
  Bytes plte = {255, 0, 0, 0, 128, 255};
  Image pal = decode(make_png(2, 1, 8, 3, {1, 0}, {{"PLTE", plte}}));
  ASSERT_EQ(pal.channels, 3);
  EXPECT_EQ(pal.pixels, (std::vector<float>{0, 128 / 255.0f, 1, 1, 0, 0}));
  Image pal_alpha = decode(make_png(2, 1, 8, 3, {1, 0}, {{"PLTE", plte}, {"tRNS", {255, 51}}}));
  ASSERT_EQ(pal_alpha.channels, 4);
  EXPECT_EQ(pal_alpha.pixels, (std::vector<float>{0, 128 / 255.0f, 1, 51 / 255.0f, 1, 0, 0, 1}));
}

TEST(Image, JpegDecodes) {
  for (int64_t c : {1, 3}) {
    for (int quality : {80, 97}) {  // 4:2:0 and 4:4:4 chroma
      Image im = smooth(40, 56, c);
      // stb_image_write stores gray as YCbCr, so it decodes as RGB (true gray JPEGs: ImageGolden).
      Image decoded = decode(make_jpeg(im, quality));
      ASSERT_EQ(decoded.channels, 3);
      for (float v : decoded.pixels) ASSERT_EQ(std::round(v * 255.0f) / 255.0f, v);  // 8-bit levels
      Image back = c == 1 ? nn::data::to_grayscale(decoded) : decoded;
      ASSERT_EQ(back.height, 40);
      ASSERT_EQ(back.width, 56);
      double max_err = 0, sum_err = 0;
      for (size_t i = 0; i < im.pixels.size(); ++i) {
        double e = std::abs(back.pixels[i] - im.pixels[i]);
        max_err = std::max(max_err, e);
        sum_err += e;
      }
      // Lossy, but close on smooth content (measured: max 0.09 and mean 0.012 at quality 80 with
      // 4:2:0 chroma, max 0.02 and mean 0.003 at 97). Exactness against libjpeg: ImageGolden.
      EXPECT_LT(max_err, 0.15) << c << " channels, quality " << quality;
      EXPECT_LT(sum_err / im.pixels.size(), 0.02) << c << " channels, quality " << quality;
    }
  }
  // Data after the end-of-image marker is allowed (some cameras append some).
  Bytes jpeg = make_jpeg(smooth(8, 8, 3), 90);
  Bytes tail = jpeg;
  tail.insert(tail.end(), {1, 2, 3, 0xff, 0xd8});
  EXPECT_EQ(decode(tail).pixels, decode(jpeg).pixels);
}

TEST(Image, ProgressiveAndGrayJpegs) {
  Image gray = decode(from_hex(kGrayProgressiveJpeg));
  ASSERT_EQ(gray.channels, 1);
  ASSERT_EQ(gray.height, 16);
  ASSERT_EQ(gray.width, 24);
  Image colour = decode(from_hex(kColourProgressiveJpeg));
  ASSERT_EQ(colour.channels, 3);
  ASSERT_EQ(colour.height, 16);
  ASSERT_EQ(colour.width, 24);
  // In 8-bit levels from the ramps: PIL decodes within 1 (gray) and 13 (colour: 4:2:0 chroma) levels,
  // 0.4 and 1.7 on average; measured here 1 and 11, 0.4 and 1.6.
  double gray_max = 0, gray_mean = 0, colour_max = 0, colour_mean = 0;
  for (int64_t y = 0; y < 16; ++y)
    for (int64_t x = 0; x < 24; ++x) {
      double e = std::abs(gray.at(y, x, 0) * 255 - (6 * x + 4 * y + 20));
      gray_max = std::max(gray_max, e);
      gray_mean += e / (16 * 24);
      const double want[3] = {10.0 * x + 5, 12.0 * y + 30, 200.0 - 6 * x - 3 * y};
      for (int64_t c = 0; c < 3; ++c) {
        e = std::abs(colour.at(y, x, c) * 255 - want[c]);
        colour_max = std::max(colour_max, e);
        colour_mean += e / (16 * 24 * 3);
      }
    }
  EXPECT_LE(gray_max, 3);
  EXPECT_LE(gray_mean, 1);
  EXPECT_LE(colour_max, 16);
  EXPECT_LE(colour_mean, 3);
}

TEST(Image, RefusesEmptyAndOtherFormats) {
  EXPECT_TRUE(contains(error_of([] { decode({}); }), "empty"));
  EXPECT_TRUE(contains(error_of([] { nn::data::decode_image(nullptr, 0); }), "<memory>"));
  auto refused = [](const std::string& magic, const std::string& name) {
    Bytes b(magic.begin(), magic.end());
    b.resize(std::max<size_t>(b.size(), 200), 0);
    std::string message = error_of([&] { decode(b); });
    EXPECT_TRUE(contains(message, name + " images are not supported (JPEG")) << message;
    EXPECT_TRUE(contains(message, "test image")) << message;
  };
  refused("GIF89a", "GIF");
  refused("GIF87a", "GIF");
  refused("BM", "BMP");
  refused(std::string("RIFF\x10\0\0\0WEBPVP8 ", 16), "WEBP");
  refused(std::string("II*\0", 4), "TIFF");
  refused(std::string("MM\0*", 4), "TIFF");
  refused(std::string("\0\0\0\x1c" "ftypavif", 12), "AVIF");
  // DICOM is read when nn is built with GDCM (tests/test_dicom.cpp) and refused by name otherwise;
  // either way 128 zero bytes and "DICM" are not an image.
  Bytes dicom(128, 0);
  dicom.insert(dicom.end(), {'D', 'I', 'C', 'M'});
  std::string message = error_of([&] { decode(dicom); });
  EXPECT_TRUE(contains(message, "test image") && contains(message, "DICOM")) << message;
  message = error_of([] { decode(Bytes{'h', 'e', 'l', 'l', 'o'}); });
  EXPECT_TRUE(contains(message, "not a JPEG") && contains(message, " image (5 bytes starting with 68 65 6c 6c 6f)")) << message;
}

TEST(Image, RefusesTruncatedPngAndJpegAtEveryLength) {
  const Bytes png = nn::data::encode_png(random_levels(9, 11, 3, 7));
  const Bytes png16 = make_png(6, 4, 16, 2, Bytes(6 * 4 * 6, 0x5a));
  const Bytes jpeg = make_jpeg(smooth(24, 40, 3), 90);
  const Bytes progressive = from_hex(kColourProgressiveJpeg);
  for (const Bytes* data : {&png, &png16, &jpeg, &progressive}) {
    for (size_t n = 0; n < data->size(); ++n) {
      Bytes cut(data->begin(), data->begin() + n);
      std::string message = error_of([&] { decode(cut); });
      EXPECT_TRUE(contains(message, "test image")) << n << ": " << message;
    }
    EXPECT_NO_THROW(decode(*data));
  }
  EXPECT_TRUE(contains(error_of([&] { decode(Bytes(jpeg.begin(), jpeg.end() - 10)); }), "truncated JPEG"));
  EXPECT_TRUE(contains(error_of([&] { decode(Bytes(png.begin(), png.begin() + 60)); }), "PNG"));
}

TEST(Image, PngCrcsOfCriticalChunksAreChecked) {
  Bytes png = make_png(4, 3, 8, 2, Bytes(4 * 3 * 3, 0x40), {{"tEXt", {'a', 0, 'b'}}});
  EXPECT_NO_THROW(decode(png));
  auto idat = std::search(png.begin(), png.end(), std::begin("IDAT"), std::end("IDAT") - 1);
  ASSERT_NE(idat, png.end());
  Bytes flipped = png;
  flipped[idat - png.begin() + 12] ^= 0x04;  // a pixel byte of the stored block
  std::string message = error_of([&] { decode(flipped); });
  EXPECT_TRUE(contains(message, "CRC mismatch in chunk IDAT")) << message;
  // An ancillary chunk's bad CRC is tolerated (as in libpng).
  auto text = std::search(png.begin(), png.end(), std::begin("tEXt"), std::end("tEXt") - 1);
  Bytes bad_text = png;
  bad_text[text - png.begin() + 4] = 'c';
  EXPECT_EQ(decode(bad_text).pixels, decode(png).pixels);
}

TEST(Image, RefusesJpegHuffmanTablesWithTooManyCodes) {
  // A table's 16 code counts must sum to at most 256 (stb_image 2.27, nn's JPEG decoder before
  // libjpeg-turbo, wrote past its table otherwise; found by RandomCorruptionNeverCrashes under
  // AddressSanitizer). Refused with the numbers before the decoder sees the data.
  Bytes jpeg = make_jpeg(smooth(16, 16, 3), 90);
  const uint8_t dht[] = {0xff, 0xc4};
  auto at = std::search(jpeg.begin(), jpeg.end(), std::begin(dht), std::end(dht));
  ASSERT_NE(at, jpeg.end());
  std::fill(at + 5, at + 21, 0xff);  // after the marker, the length and the table's class/id byte
  std::string message = error_of([&] { decode(jpeg); });
  EXPECT_TRUE(contains(message, "Huffman table")) << message;
  EXPECT_TRUE(contains(message, "4080 codes")) << message;
}

// A progressive 8 x 8 gray JPEG of one flat block whose DC scan (full precision, Al = 0) is
// repeated `scans` times: each repeat is legal (nothing is refined twice), and each costs the
// decoder a pass over the image.
Bytes progressive_jpeg_with_scans(int scans) {
  Bytes b = {0xff, 0xd8};
  auto segment = [&](uint8_t marker, const Bytes& payload) {
    const size_t length = payload.size() + 2;
    b.insert(b.end(), {0xff, marker, static_cast<uint8_t>(length >> 8), static_cast<uint8_t>(length)});
    b.insert(b.end(), payload.begin(), payload.end());
  };
  Bytes dqt(65, 1);
  dqt[0] = 0;  // 8-bit table 0, all ones
  segment(0xdb, dqt);
  segment(0xc2, {8, 0, 8, 0, 8, 1, 1, 0x11, 0});  // SOF2: 8-bit, 8x8, one component (id 1, table 0)
  Bytes dht(1 + 16 + 1, 0);
  dht[0] = 0x00;  // DC table 0
  dht[1] = 1;     // one code of length 1 ('0') ...
  dht[17] = 0;    // ... for category 0: a DC difference of 0
  segment(0xc4, dht);
  for (int k = 0; k < scans; ++k) {
    segment(0xda, {1, 1, 0x00, 0, 0, 0x00});  // one component, DC only (Ss = Se = 0), Ah = Al = 0
    b.push_back(0x7f);                         // the code '0', padded with ones
  }
  b.insert(b.end(), {0xff, 0xd9});
  return b;
}

TEST(Image, RefusesJpegsWithTooManyScans) {
  Image ok = decode(progressive_jpeg_with_scans(200));
  ASSERT_EQ(ok.channels, 1);
  ASSERT_EQ(ok.height, 8);
  // A flat block of DC 0: the level 128 everywhere.
  for (float v : ok.pixels) EXPECT_EQ(v, 128.0f / 255.0f);
  std::string message = error_of([&] { decode(progressive_jpeg_with_scans(300)); });
  EXPECT_TRUE(contains(message, "more than 256 scans")) << message;
  EXPECT_TRUE(contains(message, "test image")) << message;
}

TEST(Image, RefusesJpegsWhoseEntropyDataIsCorrupt) {
  // libjpeg decodes past corrupt entropy-coded data, filling in what it lost; nn refuses it (a
  // grey smear is no X-ray). The scan of a baseline JPEG cut short and closed with a new EOI:
  // structurally whole, but the scan runs out of data.
  const Bytes jpeg = make_jpeg(smooth(64, 64, 3), 90);
  const uint8_t sos[] = {0xff, 0xda};
  auto at = std::search(jpeg.begin(), jpeg.end(), std::begin(sos), std::end(sos));
  ASSERT_NE(at, jpeg.end());
  Bytes cut(jpeg.begin(), at + 40);
  cut.insert(cut.end(), {0xff, 0xd9});
  std::string message = error_of([&] { decode(cut); });
  EXPECT_TRUE(contains(message, "corrupt or truncated JPEG")) << message;
  EXPECT_TRUE(contains(message, "Corrupt JPEG data")) << message;
}

TEST(Image, FuzzRegressionInputsDecodeOrAreRefused) {
  // Every input that once broke the decoder (tests/fuzz/regressions/fuzz_image/, which CI's fuzzing
  // smoke run also replays under AddressSanitizer and UndefinedBehaviorSanitizer) decodes or is
  // refused with an nn::Error naming it, with the fuzz target's limits.
  const fs::path dir = fs::path(NN_SOURCE_DIR) / "tests/fuzz/regressions/fuzz_image";
  ASSERT_TRUE(fs::is_directory(dir)) << dir;
  nn::data::ImageLimits limits;
  limits.max_pixels = 4'000'000;
  limits.max_side = 8'192;
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    Bytes bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string name = entry.path().filename().string();
    try {
      Image im = nn::data::decode_image(bytes.data(), bytes.size(), name, limits);
      EXPECT_EQ(im.pixels.size(), static_cast<size_t>(im.height * im.width * im.channels)) << name;
    } catch (const nn::Error& e) {
      EXPECT_TRUE(contains(e.what(), "cannot decode image '" + name + "'")) << e.what();
    }
    ++files;
  }
  EXPECT_GE(files, 1);
}

TEST(Image, RefusesOversizedImagesFromTheHeader) {
  // A PNG that declares 40000x40000 pixels and carries no pixel data: refused before decoding.
  Bytes huge = make_png(40000, 40000, 8, 0, {});
  std::string message = error_of([&] { decode(huge); });
  EXPECT_TRUE(contains(message, "40000x40000")) << message;
  EXPECT_TRUE(contains(message, "1600000000 pixels")) << message;
  EXPECT_TRUE(contains(message, "30000 per side and 50000000 pixels")) << message;
  EXPECT_TRUE(contains(message, "before decoding")) << message;
  // Beyond stb's own ceiling (2^24 per side) the numbers are still ours.
  EXPECT_TRUE(contains(error_of([] { decode(make_png(1u << 30, 1, 8, 0, {})); }), "1073741824x1"));
  // Each limit on its own, with a real image.
  Bytes png = nn::data::encode_png(random_levels(100, 60, 1, 3));
  nn::data::ImageLimits side;
  side.max_side = 99;
  EXPECT_TRUE(contains(error_of([&] { decode(png, side); }), "60x100"));
  nn::data::ImageLimits pixels;
  pixels.max_pixels = 5999;
  EXPECT_TRUE(contains(error_of([&] { decode(png, pixels); }), "6000 pixels"));
  pixels.max_pixels = 6000;
  EXPECT_NO_THROW(decode(png, pixels));
  // A JPEG whose start-of-frame is patched to 65000x65000.
  Bytes jpeg = make_jpeg(smooth(16, 16, 3), 90);
  const uint8_t sof0[] = {0xff, 0xc0};
  auto sof = std::search(jpeg.begin(), jpeg.end(), std::begin(sof0), std::end(sof0));
  ASSERT_NE(sof, jpeg.end());
  size_t at = static_cast<size_t>(sof - jpeg.begin()) + 5;
  jpeg[at] = jpeg[at + 2] = 0xfd;
  jpeg[at + 1] = jpeg[at + 3] = 0xe8;
  message = error_of([&] { decode(jpeg); });
  EXPECT_TRUE(contains(message, "65000x65000")) << message;
}

TEST(Image, RefusesDecompressionBombs) {
  // A 1x1 PNG whose pixel data inflates to 100 MB (from 80 KB): stb would follow it up to 4 GiB.
  const Bytes zeros = zlib_zeros(100'000'000);
  Bytes bomb = make_png(1, 1, 8, 0, {}, {}, &zeros);
  std::string message = error_of([&] { decode(bomb); });
  EXPECT_TRUE(contains(message, "decompression bomb")) << message;
  // The same stream at its honest size decodes.
  const Bytes two = zlib_zeros(2);
  Image ok = decode(make_png(1, 1, 8, 0, {}, {}, &two));
  EXPECT_EQ(ok.pixels, std::vector<float>{0.0f});
}

TEST(Image, RandomCorruptionNeverCrashes) {
  const std::vector<Bytes> bases = {nn::data::encode_png(random_levels(12, 10, 4, 1)),
                                    make_png(5, 7, 16, 0, Bytes(5 * 7 * 2, 0x33)),
                                    make_jpeg(smooth(20, 28, 3), 85), make_jpeg(smooth(16, 16, 1), 60),
                                    from_hex(kGrayProgressiveJpeg), from_hex(kColourProgressiveJpeg)};
  std::mt19937 rng(2024);
  int refused = 0, decoded = 0;
  for (const Bytes& base : bases) {
    for (int iter = 0; iter < 600; ++iter) {
      Bytes b = base;
      int flips = 1 + static_cast<int>(rng() % 6);
      // Mostly past the signature: corrupting the magic bytes only tests format detection.
      for (int k = 0; k < flips; ++k) b[8 + rng() % (b.size() - 8)] = static_cast<uint8_t>(rng());
      if (rng() % 4 == 0) b.resize(8 + rng() % (b.size() - 8));
      // Half the PNGs get valid CRCs again, so that the corruption reaches stb's decoder.
      if (b[0] == 0x89 && iter % 2 == 0) fix_png_crcs(b);
      try {
        Image im = decode(b);
        ASSERT_EQ(im.pixels.size(), static_cast<size_t>(im.height * im.width * im.channels));
        ++decoded;
      } catch (const nn::Error& e) {
        ASSERT_TRUE(contains(e.what(), "test image")) << e.what();
        ++refused;
      }
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_GT(decoded, 0);  // JPEG entropy data corrupts into other pixels, not into errors
}

TEST(Image, DecodesOnManyThreadsAtOnce) {
  // stb keeps its failure reason per thread, and so does nn its bookkeeping of stb's memory.
  const Image image = random_levels(30, 20, 3, 4);
  const Bytes png = nn::data::encode_png(image);
  Bytes bad_zlib = png;  // IDAT's zlib header (0x78 ..) made invalid, CRCs fixed
  auto idat = std::search(bad_zlib.begin(), bad_zlib.end(), std::begin("IDAT"), std::end("IDAT") - 1);
  ASSERT_NE(idat, bad_zlib.end());
  idat[4] ^= 0x01;
  fix_png_crcs(bad_zlib);
  Bytes bad_sof = make_jpeg(smooth(16, 16, 3), 90);  // 2 components: neither gray nor colour
  const uint8_t sof0[] = {0xff, 0xc0};
  auto sof = std::search(bad_sof.begin(), bad_sof.end(), std::begin(sof0), std::end(sof0));
  ASSERT_NE(sof, bad_sof.end());
  sof[9] = 2;
  const std::string zlib_reason = error_of([&] { decode(bad_zlib); });
  const std::string sof_reason = error_of([&] { decode(bad_sof); });
  EXPECT_TRUE(contains(zlib_reason, "zlib")) << zlib_reason;
  EXPECT_NE(zlib_reason, sof_reason);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        if (decode(png).pixels != image.pixels) ++wrong;
        try {
          decode(t % 2 ? bad_zlib : bad_sof);
          ++wrong;
        } catch (const nn::Error& e) {
          if (e.what() != (t % 2 ? zlib_reason : sof_reason)) ++wrong;
        }
      }
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(wrong, 0);
}

TEST(Image, LoadImageReadsFilesAndNamesThePath) {
  TempDir dir;
  Image im = random_levels(6, 5, 3, 9);
  nn::data::save_png(dir / "a.png", im);
  Image back = nn::data::load_image(dir / "a.png");
  EXPECT_EQ(back.pixels, im.pixels);
  std::string message = error_of([&] { nn::data::load_image(dir / "missing.png"); });
  EXPECT_TRUE(contains(message, dir / "missing.png")) << message;
  EXPECT_TRUE(contains(message, "No such file")) << message;
  fs::create_directories(dir / "d.png");
  EXPECT_TRUE(contains(error_of([&] { nn::data::load_image(dir / "d.png"); }), "not a regular file"));
  { std::ofstream(dir / "bad.jpg") << "GIF89a......"; }
  message = error_of([&] { nn::data::load_image(dir / "bad.jpg"); });
  EXPECT_TRUE(contains(message, dir / "bad.jpg") && contains(message, "GIF images")) << message;
  message = error_of([&] { nn::data::save_png(dir / "no/such/dir/x.png", im); });
  EXPECT_TRUE(contains(message, "no/such/dir/x.png")) << message;

  EXPECT_TRUE(nn::data::is_image_file_name("x/a.jpg"));
  EXPECT_TRUE(nn::data::is_image_file_name("B.JPEG"));
  EXPECT_TRUE(nn::data::is_image_file_name("c.Png"));
  EXPECT_FALSE(nn::data::is_image_file_name("d.gif"));
  EXPECT_FALSE(nn::data::is_image_file_name("png"));
  EXPECT_FALSE(nn::data::is_image_file_name("e.png.txt"));
  EXPECT_FALSE(nn::data::is_image_file_name(".DS_Store"));
}

// ---- colour ----

TEST(Image, ToRgbAndGrayscale) {
  Image gray{1, 2, 1, {0.25f, 0.5f}};
  EXPECT_EQ(nn::data::to_rgb(gray).pixels, (std::vector<float>{0.25f, 0.25f, 0.25f, 0.5f, 0.5f, 0.5f}));
  Image gray_alpha{1, 1, 2, {0.75f, 0.1f}};
  EXPECT_EQ(nn::data::to_rgb(gray_alpha).pixels, (std::vector<float>{0.75f, 0.75f, 0.75f}));
  Image rgba{1, 1, 4, {0.1f, 0.2f, 0.3f, 0.4f}};
  Image rgb = nn::data::to_rgb(rgba);
  EXPECT_EQ(rgb.channels, 3);
  EXPECT_EQ(rgb.pixels, (std::vector<float>{0.1f, 0.2f, 0.3f}));
  EXPECT_EQ(nn::data::to_rgb(rgb).pixels, rgb.pixels);
  Image luma = nn::data::to_grayscale(rgba);
  ASSERT_EQ(luma.channels, 1);
  EXPECT_NEAR(luma.pixels[0], 0.299 * 0.1 + 0.587 * 0.2 + 0.114 * 0.3, 1e-7);
  EXPECT_EQ(nn::data::to_grayscale(gray_alpha).pixels, (std::vector<float>{0.75f}));
  EXPECT_NEAR(nn::data::to_grayscale(Image{1, 1, 3, {1, 1, 1}}).pixels[0], 1.0f, 1e-6f);
  EXPECT_TRUE(contains(error_of([] { nn::data::to_rgb(Image{1, 1, 5, std::vector<float>(5)}); }), "1 to 4 channels"));
  EXPECT_TRUE(contains(error_of([] { nn::data::to_rgb(Image{2, 2, 3, std::vector<float>(5)}); }), "samples"));
  EXPECT_TRUE(contains(error_of([] { nn::data::to_rgb(Image{}); }), "empty image"));
  EXPECT_TRUE(contains(error_of([] { Image{1, 1, 1, {0}}.at(1, 0, 0); }), "outside"));
}

// ---- geometry ----

TEST(Image, ResizeKeepsConstantImagesConstant) {
  for (int64_t c = 1; c <= 4; ++c) {
    Image im{23, 31, c, std::vector<float>(23 * 31 * c, 0.3f)};
    for (auto [h, w] : std::vector<std::pair<int64_t, int64_t>>{{7, 9}, {50, 70}, {23, 5}, {1, 1}, {100, 31}, {2, 97}}) {
      Image out = nn::data::resize(im, h, w);
      ASSERT_EQ(out.height, h);
      ASSERT_EQ(out.width, w);
      ASSERT_EQ(out.channels, c);
      for (float v : out.pixels) ASSERT_NEAR(v, 0.3f, 1e-6f) << h << "x" << w;
    }
  }
}

TEST(Image, IntegerDownscaleOfARampAveragesEachBlock) {
  // On a linear ramp the (symmetric) triangle filter of an integer downscale by s returns the ramp
  // at the block's centre, i.e. the mean of the s x s block, away from the borders (where the
  // filter is cut and renormalised).
  for (int64_t s : {2, 3, 4}) {
    const int64_t h = 8 * s, w = 10 * s;
    Image im{h, w, 1, std::vector<float>(h * w)};
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) im.pixels[y * w + x] = 0.01f * x + 0.003f * y;
    Image out = nn::data::resize(im, h / s, w / s);
    for (int64_t y = 1; y < h / s - 1; ++y)
      for (int64_t x = 1; x < w / s - 1; ++x) {
        double mean = 0;
        for (int64_t i = 0; i < s; ++i)
          for (int64_t j = 0; j < s; ++j) mean += im.at(y * s + i, x * s + j, 0);
        mean /= static_cast<double>(s * s);
        ASSERT_NEAR(out.at(y, x, 0), mean, 1e-5) << "factor " << s << " at " << y << "," << x;
      }
  }
}

TEST(Image, ResizeMatchesFloat64Reference) {
  const std::vector<std::array<int64_t, 5>> cases = {
      // in h, in w, channels, out h, out w
      {37, 53, 3, 16, 24}, {37, 53, 3, 80, 111}, {37, 53, 1, 60, 20}, {20, 30, 4, 7, 7},
      {9, 13, 2, 9, 40},   {40, 31, 3, 40, 29},  {64, 48, 3, 1, 1},   {1, 17, 1, 5, 3},
      {300, 200, 3, 224, 149}, {50, 50, 3, 17, 3}};
  uint32_t seed = 1;
  for (const auto& [ih, iw, c, oh, ow] : cases) {
    Image im = random_levels(ih, iw, c, seed++);
    Image out = nn::data::resize(im, oh, ow);
    std::vector<double> ref = reference_resize(im, oh, ow);
    // float32 weights and sums: measured at most 1.4e-7 from float64 on these cases.
    ASSERT_EQ(out.pixels.size(), ref.size());
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::abs(out.pixels[i] - ref[i]));
    EXPECT_LE(worst, 1e-6) << ih << "x" << iw << "x" << c << " -> " << oh << "x" << ow;
  }
  EXPECT_TRUE(contains(error_of([] { nn::data::resize(random_levels(2, 2, 1, 1), 0, 3); }), "positive"));
}

TEST(Image, ResizeShorterSideFollowsTorchvision) {
  auto size_of = [](int64_t h, int64_t w, int64_t size) {
    Image out = nn::data::resize_shorter_side(Image{h, w, 1, std::vector<float>(h * w, 0.5f)}, size);
    return std::vector<int64_t>{out.height, out.width};
  };
  using Size = std::vector<int64_t>;
  EXPECT_EQ(size_of(300, 400, 256), (Size{256, 341}));
  EXPECT_EQ(size_of(400, 300, 256), (Size{341, 256}));
  EXPECT_EQ(size_of(500, 500, 256), (Size{256, 256}));
  EXPECT_EQ(size_of(224, 1000, 256), (Size{256, 1142}));  // 1142.86 truncated
  EXPECT_EQ(size_of(100, 150, 128), (Size{128, 192}));    // exact
  EXPECT_EQ(size_of(3, 1000, 2), (Size{2, 666}));
}

TEST(Image, CenterCropUsesPythonRounding) {
  // Pixel value = its column, so the crop's first value is its left offset.
  auto left_of = [](int64_t width, int64_t crop) {
    Image im{1, width, 1, std::vector<float>(width)};
    for (int64_t x = 0; x < width; ++x) im.pixels[x] = static_cast<float>(x);
    Image out = nn::data::center_crop(im, 1, crop);
    EXPECT_EQ(out.width, crop);
    return static_cast<int64_t>(out.pixels[0]);
  };
  // int(round(d / 2.0)) with round half to even: d = 1 -> 0, 3 -> 2, 5 -> 2, 7 -> 4, 117 -> 58.
  EXPECT_EQ(left_of(10, 10), 0);
  EXPECT_EQ(left_of(10, 9), 0);
  EXPECT_EQ(left_of(10, 8), 1);
  EXPECT_EQ(left_of(10, 7), 2);
  EXPECT_EQ(left_of(10, 5), 2);
  EXPECT_EQ(left_of(10, 3), 4);
  EXPECT_EQ(left_of(341, 224), 58);
  EXPECT_EQ(left_of(342, 224), 59);
  // Rows likewise, and channels are kept.
  Image im{5, 4, 2, {}};
  for (int64_t i = 0; i < 5 * 4 * 2; ++i) im.pixels.push_back(static_cast<float>(i));
  Image out = nn::data::center_crop(im, 2, 2);  // top = round(1.5) = 2, left = 1
  EXPECT_EQ(out.pixels, (std::vector<float>{im.at(2, 1, 0), im.at(2, 1, 1), im.at(2, 2, 0), im.at(2, 2, 1),
                                            im.at(3, 1, 0), im.at(3, 1, 1), im.at(3, 2, 0), im.at(3, 2, 1)}));
  EXPECT_TRUE(contains(error_of([&] { nn::data::center_crop(im, 6, 2); }), "does not fit"));
}

// ---- tensors ----

TEST(Image, PreprocessingOfAKnownPixel) {
  Image px{1, 1, 3, {0.2f, 0.5f, 0.8f}};
  nn::Tensor t = nn::data::to_tensor(px, nn::data::Preprocessing::torchvision);
  ASSERT_EQ(t.shape(), (nn::Shape{3, 1, 1}));
  EXPECT_EQ(t.dtype(), nn::f32);
  EXPECT_NEAR(t.at({0, 0, 0}), (0.2 - 0.485) / 0.229, 1e-6);
  EXPECT_NEAR(t.at({1, 0, 0}), (0.5 - 0.456) / 0.224, 1e-6);
  EXPECT_NEAR(t.at({2, 0, 0}), (0.8 - 0.406) / 0.225, 1e-6);
  nn::Tensor k = nn::data::to_tensor(px, nn::data::Preprocessing::caffe);
  EXPECT_NEAR(k.at({0, 0, 0}), 0.8 * 255 - 103.939, 1e-4);  // B
  EXPECT_NEAR(k.at({1, 0, 0}), 0.5 * 255 - 116.779, 1e-4);  // G
  EXPECT_NEAR(k.at({2, 0, 0}), 0.2 * 255 - 123.68, 1e-4);   // R
  // Planes are [3, H, W]: pixel (y, x) of channel c at c*H*W + y*W + x.
  Image two{1, 2, 3, {0, 0, 0, 1, 1, 1}};
  nn::Tensor p = nn::data::to_tensor(two, nn::data::Preprocessing::torchvision);
  EXPECT_NEAR(p.at({1, 0, 1}), (1 - 0.456) / 0.224, 1e-6);
  EXPECT_TRUE(contains(error_of([] { nn::data::to_tensor(Image{1, 1, 1, {0}}, nn::data::Preprocessing::caffe); }),
                       "3 channels"));

  EXPECT_EQ(nn::data::parse_preprocessing("torchvision"), nn::data::Preprocessing::torchvision);
  EXPECT_EQ(nn::data::parse_preprocessing("caffe"), nn::data::Preprocessing::caffe);
  EXPECT_STREQ(nn::data::preprocessing_name(nn::data::Preprocessing::caffe), "caffe");
  EXPECT_STREQ(nn::data::preprocessing_name(nn::data::Preprocessing::torchvision), "torchvision");
  std::string message = error_of([] { nn::data::parse_preprocessing("keras"); });
  EXPECT_TRUE(contains(message, "'keras'") && contains(message, "torchvision, caffe")) << message;
}

TEST(Image, EvalTransformShapesAndTheNoResizeRule) {
  using nn::data::Preprocessing;
  // to_rgb, resized to 256 on the short side, cropped to 224. (eval_transform resizes gray images
  // as one channel and converts last: the floats must be the same.)
  for (int64_t c = 1; c <= 4; ++c) {
    Image im = random_levels(300, 400, c, 5);
    nn::Tensor t = nn::data::eval_transform(im, Preprocessing::torchvision);
    ASSERT_EQ(t.shape(), (nn::Shape{3, 224, 224}));
    nn::Tensor want = nn::data::to_tensor(
        nn::data::center_crop(nn::data::resize_shorter_side(nn::data::to_rgb(im), 256), 224, 224),
        Preprocessing::torchvision);
    EXPECT_EQ(t.to_vector<float>(), want.to_vector<float>()) << c << " channels";
  }
  Image gray = random_levels(300, 400, 1, 5);
  // Already input_size x input_size: used as it is, no resize.
  Image exact = random_levels(224, 224, 3, 6);
  EXPECT_EQ(nn::data::eval_transform(exact, Preprocessing::caffe).to_vector<float>(),
            nn::data::to_tensor(exact, Preprocessing::caffe).to_vector<float>());
  // A square image of another size is resized (to 256) and cropped.
  Image square = random_levels(230, 230, 3, 7);
  EXPECT_EQ(nn::data::eval_transform(square, Preprocessing::caffe).to_vector<float>(),
            nn::data::to_tensor(nn::data::center_crop(nn::data::resize(square, 256, 256), 224, 224),
                                Preprocessing::caffe)
                .to_vector<float>());
  // Other input sizes: resize_size defaults to input_size * 256 / 224 (299 -> 341).
  nn::Tensor big = nn::data::eval_transform(random_levels(400, 341, 3, 8), Preprocessing::torchvision, 299);
  EXPECT_EQ(big.shape(), (nn::Shape{3, 299, 299}));
  EXPECT_EQ(nn::data::eval_transform(random_levels(30, 20, 3, 9), Preprocessing::torchvision, 16, 16).shape(),
            (nn::Shape{3, 16, 16}));
  EXPECT_TRUE(contains(error_of([&] { nn::data::eval_transform(gray, Preprocessing::torchvision, 224, 200); }),
                       "resize_size"));
}

// eval_transform computes only the center crop of the resized image: the same floats as
// center_crop(resize_shorter_side(...)) (compared exactly, on elongated images where the resize
// is many times the crop), and a very elongated image costs no more than its crop. The JPEG below
// is fuzz_image's reproducer (2026-11-26): 1 x 2815 pixels, whose shorter side resized to 9 made a
// 25335 x 9 image (the fuzz target now caps that ratio); eval_transform of a 1 x 10000 image at the defaults would have built
// 256 x 2,560,000 RGB floats (7.8 GB) to keep 224 x 224 of them.
TEST(Image, EvalTransformResizesOnlyTheCropWindow) {
  using nn::data::Preprocessing;
  const std::vector<std::pair<int64_t, int64_t>> sizes = {{3000, 1}, {1, 3000}, {2815, 2}, {40, 9}, {9, 40}, {300, 400}};
  for (const auto& [h, w] : sizes) {
    for (int64_t c : {1, 3}) {
      Image im = random_levels(h, w, c, static_cast<uint32_t>(h + w + c));
      nn::Tensor t = nn::data::eval_transform(im, Preprocessing::torchvision, 8, 9);
      nn::Tensor want = nn::data::to_tensor(
          nn::data::center_crop(nn::data::resize_shorter_side(nn::data::to_rgb(im), 9), 8, 8), Preprocessing::torchvision);
      EXPECT_EQ(t.to_vector<float>(), want.to_vector<float>()) << h << "x" << w << "x" << c;
    }
  }
  // Only one axis resized (the shorter side already 9): crop on the other.
  Image exact_short = random_levels(9, 50, 3, 3);
  EXPECT_EQ(nn::data::eval_transform(exact_short, Preprocessing::caffe, 8, 9).to_vector<float>(),
            nn::data::to_tensor(nn::data::center_crop(nn::data::resize_shorter_side(exact_short, 9), 8, 8),
                                Preprocessing::caffe)
                .to_vector<float>());
  // 1 x 10000 at the defaults: 3 x 224 x 224, every value a finite normalised pixel.
  nn::Tensor thin = nn::data::eval_transform(random_levels(1, 10000, 3, 4), Preprocessing::torchvision);
  ASSERT_EQ(thin.shape(), (nn::Shape{3, 224, 224}));
  for (float v : thin.to_vector<float>()) ASSERT_TRUE(std::isfinite(v) && std::abs(v) < 3.0f);
  const unsigned char reproducer[] = {
      0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0xff, 0xd8,
      0xff, 0xc4, 0xff, 0x01, 0x00, 0x01, 0x00, 0x00, 0x2c, 0x2d, 0x2e, 0x24, 0x01, 0x3d, 0x3e, 0x3f, 0x40,
      0x41, 0xff, 0xc0, 0x00, 0x11, 0x08, 0x0a, 0xff, 0x00, 0x01, 0x03, 0x01, 0x11, 0x00, 0x02, 0x11, 0x01,
      0x03, 0x11, 0x01, 0xff, 0xc4, 0x00, 0x1f, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x82, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09,
      0x0a, 0x0b, 0xff, 0xc4, 0x00, 0xb5, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa2,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x53, 0xf0, 0x01, 0x03, 0x02, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09,
      0x03, 0x00, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26,
      0x27, 0x28, 0x29, 0x81, 0x34, 0x34, 0x77, 0x78, 0x79, 0x7a, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
      0x88, 0x89, 0x8a, 0x91, 0x92, 0x8b, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa1, 0xa2, 0xa3, 0xa4,
      0xa5, 0xa6, 0xa5, 0xa8, 0xa9, 0xaa, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc1,
      0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xff, 0xc2, 0xc9, 0xca, 0xd1, 0xd2, 0xd3, 0xd4, 0xd4, 0xd6, 0xd7, 0xd8,
      0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5,
      0xf6, 0xf7, 0xf8, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xff, 0xc2,
      0xc9, 0xca, 0xd1, 0xd2, 0xd3, 0xd4, 0xd4, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5,
      0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xff, 0xda,
      0x00, 0x0c, 0x03, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x3f, 0x00, 0xa7, 0xfc, 0x00, 0x00, 0x00,
      0x03, 0xff, 0xd9};
  // stb_image decoded it (with the quantization table it never defined read as zeros); libjpeg-turbo
  // refuses it. An image of its size goes through eval_transform.
  std::string message = error_of([&] { nn::data::decode_image(reproducer, sizeof reproducer, "fuzz-reproducer.jpg"); });
  EXPECT_TRUE(contains(message, "Quantization table 0x00 was not defined")) << message;
  EXPECT_EQ(nn::data::eval_transform(random_levels(1, 2815, 3, 5), Preprocessing::torchvision).shape(),
            (nn::Shape{3, 224, 224}));
}

TEST(Image, ImageFromTensorAndPngWriting) {
  TempDir dir;
  nn::Tensor chw = nn::zeros({3, 2, 4});
  chw.set({0, 1, 2}, 0.5);
  chw.set({2, 0, 3}, 1.0);
  Image im = nn::data::image_from_tensor(chw);
  ASSERT_EQ(im.height, 2);
  ASSERT_EQ(im.width, 4);
  ASSERT_EQ(im.channels, 3);
  EXPECT_EQ(im.at(1, 2, 0), 0.5f);
  EXPECT_EQ(im.at(0, 3, 2), 1.0f);
  // Any float dtype and any strides.
  Image from_view = nn::data::image_from_tensor(chw.to(nn::f64).permute({0, 2, 1}).contiguous().permute({0, 2, 1}));
  EXPECT_EQ(from_view.pixels, im.pixels);
  Image gray = nn::data::image_from_tensor(nn::full({1, 3, 3}, 0.25));
  EXPECT_EQ(gray.channels, 1);

  nn::data::save_png(dir / "x.png", im);
  Image back = nn::data::load_image(dir / "x.png");
  for (size_t i = 0; i < im.pixels.size(); ++i) EXPECT_NEAR(back.pixels[i], im.pixels[i], 0.5 / 255 + 1e-6);
  EXPECT_TRUE(contains(error_of([] { nn::data::image_from_tensor(nn::zeros({3, 4})); }), "[C, H, W]"));
  EXPECT_TRUE(contains(error_of([] { nn::data::image_from_tensor(nn::zeros({5, 4, 4})); }), "[C, H, W]"));
  EXPECT_TRUE(contains(error_of([] { nn::data::image_from_tensor(nn::zeros({3, 4, 4}, nn::i64)); }), "floating"));
  EXPECT_TRUE(contains(error_of([] { nn::data::encode_png(Image{}); }), "empty image"));
}

// ---- golden: PIL and torchvision ----

const char* kPython = "/usr/bin/python3";

bool torchvision_available() {
  static const bool ok =
      std::system((std::string(kPython) + " -c 'import torch, torchvision, PIL, numpy' >/dev/null 2>&1").c_str()) == 0;
  return ok;
}

// Samples of an Image in [C, H, W] order (the references' tensor layout).
std::vector<float> planes(const Image& im) {
  std::vector<float> out(im.pixels.size());
  const int64_t n = im.height * im.width;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < im.channels; ++c) out[c * n + i] = im.pixels[i * im.channels + c];
  return out;
}

class ImageGolden : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torchvision_available()) GTEST_SKIP() << kPython << " cannot import torch, torchvision, PIL and numpy";
    dir_ = std::make_unique<TempDir>();
    std::string cmd = std::string(kPython) + " " NN_SOURCE_DIR "/tests/golden/image_reference.py " + (*dir_ / "");
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    ref_ = nn::io::load_safetensors(*dir_ / "ref.safetensors");
  }

  struct Diff {
    double max = INFINITY, mean = INFINITY;
  };
  // max and mean |ours - reference| after checking the shapes agree.
  Diff diff(const std::vector<float>& ours, const std::string& name, const nn::Shape& shape) {
    const nn::Tensor& ref = ref_.at(name);
    EXPECT_EQ(ref.shape(), shape) << name;
    if (ref.shape() != shape || static_cast<int64_t>(ours.size()) != ref.numel()) return {};
    std::vector<float> want = ref.to_vector<float>();
    Diff d{0, 0};
    for (size_t i = 0; i < want.size(); ++i) {
      double e = std::abs(static_cast<double>(ours[i]) - want[i]);
      d.max = std::max(d.max, e);
      d.mean += e / static_cast<double>(want.size());
    }
    return d;
  }

  std::unique_ptr<TempDir> dir_;
  nn::io::SafetensorsFile ref_;
};

TEST_F(ImageGolden, DecodingMatchesPIL) {
  const double level = 1.0 / 255;
  auto files = nlohmann::json::parse(ref_.metadata.at("files"));
  for (const std::string file : files) {
    Image im = nn::data::load_image(*dir_ / file);
    if (file == "palette.png") {
      ASSERT_EQ(im.channels, 3);
    }
    const bool jpeg = file.size() > 4 && file.substr(file.size() - 4) == ".jpg";
    Diff d = diff(im.pixels, "decoded." + file, {im.height, im.width, im.channels});
    // PNG (8- and 16-bit, palette, every row filter) is lossless; JPEG (baseline 4:2:0 and 4:4:4,
    // odd sizes, progressive, gray, and CMYK against PIL's conversion to RGB) is decoded by the
    // same libjpeg-turbo with the same settings as PIL: identical to the last bit either way.
    EXPECT_EQ(d.max, 0.0) << file << (jpeg ? " (JPEG)" : " (PNG)");
    if (ref_.contains("gray." + file)) {
      // PIL's convert("L") rounds to 8 bits: within half a level of our unrounded luma.
      Diff g = diff(nn::data::to_grayscale(im).pixels, "gray." + file, {im.height, im.width, 1});
      EXPECT_LE(g.max, 0.5 * level + 1e-6) << "grayscale of " << file;
    }
  }
}

TEST_F(ImageGolden, ResizeMatchesTorchvisionAntialias) {
  auto cases = nlohmann::json::parse(ref_.metadata.at("resize"));
  for (const auto& c : cases) {
    Image im = nn::data::load_image(*dir_ / c["source"].get<std::string>());
    const int64_t h = c["height"], w = c["width"];
    Image out = nn::data::resize(im, h, w);
    // The same filter. torch computes its weights in float32 (ours: float64, rounded once), which
    // costs it up to 4.4e-6 against its own float64 result on these cases (6e-7 downscaling);
    // we are within 1.4e-7 of float64 (ResizeMatchesFloat64Reference). Measured here: 4.4e-6.
    Diff d = diff(planes(out), "resize." + c["name"].get<std::string>(), {im.channels, h, w});
    EXPECT_LE(d.max, 1e-5) << c.dump();
  }
}

TEST_F(ImageGolden, EvalTransformMatchesTorchvision) {
  const double level = 1.0 / 255;
  auto cases = nlohmann::json::parse(ref_.metadata.at("eval"));
  for (const std::string src : cases) {
    Image im = nn::data::load_image(*dir_ / src);
    std::vector<float> tv = nn::data::eval_transform(im, nn::data::Preprocessing::torchvision).to_vector<float>();
    std::vector<float> caffe = nn::data::eval_transform(im, nn::data::Preprocessing::caffe).to_vector<float>();
    const nn::Shape shape{3, 224, 224};
    // The float-tensor path (ToTensor, Resize(256, antialias=True), CenterCrop(224), Normalize):
    // only torch's float32 weights differ (8.2e-6 against its own float64 resize of this image,
    // 3.7e-5 after dividing by std ~0.225). Measured 3.9e-5; bound 1e-4.
    Diff t = diff(tv, "eval." + src + ".tensor", shape);
    EXPECT_LE(t.max, 1e-4) << src;
    // Keras caffe preprocessing of the same crop: the same differences times 255 (measured 2.3e-3).
    Diff k = diff(caffe, "eval." + src + ".caffe", shape);
    EXPECT_LE(k.max, 5e-3) << src;
    // The PIL path (what torchvision training scripts run): PIL resizes the 8-bit image with a
    // uint8 rounding after each pass, so pixels differ by up to one 8-bit level, 1/255/std =
    // 0.0175 after normalisation (measured 0.0174), 0.3 levels on average. Bound: 1.5 levels, mean
    // half a level.
    Diff p = diff(tv, "eval." + src + ".pil", shape);
    EXPECT_LE(p.max, 1.5 * level / 0.224) << src;
    EXPECT_LE(p.mean, 0.5 * level / 0.224) << src;
  }
}

}  // namespace
