// Image writing (nn/data/image.h): PNG (encode_png, save_png), and JPEG through libjpeg-turbo
// (encode_jpeg; data/jpeg_encode.cpp).
//
// Each row is stored with one of PNG's five filters. At levels 0-2 (what a server answering
// requests wants: speed) every row uses Up, a byte minus the byte above it, which costs one
// vectorised pass (on the server's Grad-CAM heatmaps it also gives smaller files than Sub). From
// level 3 each row takes the filter whose output has the smallest sum of absolute values (as
// signed bytes), the heuristic the PNG specification recommends and libpng uses: the smallest files
// for the time. The filtered rows are then compressed: level 1 with nn's own run-length + Huffman
// deflate (data/deflate_rle.h, several times faster than zlib's level 1 for a similar size: the
// server's level), the other levels with zlib's deflate at that level. The pixels are lossless
// either way.
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "data/deflate_rle.h"
#include "data/jpeg_decode.h"
#include "nn/data/image.h"
#include "nn/error.h"

namespace nn::data {
namespace {

// The nearest of v/255, clamped to [0, 1]; NaN -> 0.
// (Branch-free, so that the loops over an image vectorise.)
uint8_t to_8_bit(float v) {
  float x = v * 255.0f + 0.5f;
  x = x > 0.0f ? x : 0.0f;  // also NaN
  x = x < 255.0f ? x : 255.0f;
  return static_cast<uint8_t>(static_cast<int>(x));
}

uint8_t paeth(int a, int b, int c) {
  const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  return static_cast<uint8_t>(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
}

// Row `cur` filtered with `type` (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth) into out; `prev` is the
// row above (zeros for the first), bpp the bytes per pixel. One loop per type, so that None, Sub and
// Up vectorise.
void filter_row(int type, const uint8_t* cur, const uint8_t* prev, size_t n, size_t bpp, uint8_t* out) {
  const size_t head = std::min(bpp, n);  // the first pixel: no left neighbour (a = c = 0)
  switch (type) {
    case 1:
      for (size_t i = 0; i < head; ++i) out[i] = cur[i];
      for (size_t i = head; i < n; ++i) out[i] = static_cast<uint8_t>(cur[i] - cur[i - bpp]);
      return;
    case 2:
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(cur[i] - prev[i]);
      return;
    case 3:
      for (size_t i = 0; i < head; ++i) out[i] = static_cast<uint8_t>(cur[i] - prev[i] / 2);
      for (size_t i = head; i < n; ++i) out[i] = static_cast<uint8_t>(cur[i] - (cur[i - bpp] + prev[i]) / 2);
      return;
    case 4:
      for (size_t i = 0; i < head; ++i) out[i] = static_cast<uint8_t>(cur[i] - paeth(0, prev[i], 0));
      for (size_t i = head; i < n; ++i) out[i] = static_cast<uint8_t>(cur[i] - paeth(cur[i - bpp], prev[i], prev[i - bpp]));
      return;
    default:
      std::memcpy(out, cur, n);
      return;
  }
}

uint64_t signed_sum(const uint8_t* row, size_t n) {
  uint64_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += static_cast<uint64_t>(std::abs(static_cast<int>(static_cast<int8_t>(row[i]))));
  return sum;
}

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}

void put_chunk(std::vector<uint8_t>& out, const char* type, const uint8_t* data, size_t n) {
  put_be32(out, static_cast<uint32_t>(n));
  const size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  if (n > 0) out.insert(out.end(), data, data + n);
  put_be32(out, static_cast<uint32_t>(crc32(0L, &out[start], static_cast<uInt>(n + 4))));
}

}  // namespace

std::vector<uint8_t> encode_png(const Image& image, int compression_level) {
  NN_CHECK(image.height >= 1 && image.width >= 1, "encode_png: empty image (", image.height, "x", image.width, ")");
  NN_CHECK(image.channels >= 1 && image.channels <= 4, "encode_png: an image has 1 to 4 channels, got ", image.channels);
  NN_CHECK(image.pixels.size() == static_cast<size_t>(image.height * image.width * image.channels),
           "encode_png: the image holds ", image.pixels.size(), " samples, but ", image.height, "x", image.width, "x",
           image.channels, " needs ", image.height * image.width * image.channels);
  NN_CHECK(compression_level >= 0 && compression_level <= 9, "encode_png: the compression level must be 0..9, got ",
           compression_level);
  NN_CHECK(image.width * image.channels <= INT_MAX / 2 && image.height <= INT_MAX,
           "encode_png: a ", image.height, "x", image.width, " image is too large for PNG encoding");
  const size_t w = static_cast<size_t>(image.width), h = static_cast<size_t>(image.height);
  const size_t bpp = static_cast<size_t>(image.channels), stride = w * bpp;

  std::vector<uint8_t> rows(h * stride);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = to_8_bit(image.pixels[i]);
  std::vector<uint8_t> filtered(h * (stride + 1)), zeros(stride, 0), trial(stride);
  for (size_t y = 0; y < h; ++y) {
    const uint8_t* cur = &rows[y * stride];
    const uint8_t* prev = y > 0 ? &rows[(y - 1) * stride] : zeros.data();
    uint8_t* out = &filtered[y * (stride + 1)];
    int best = 2;
    if (compression_level >= 3) {
      uint64_t best_sum = UINT64_MAX;
      for (int type = 0; type < 5; ++type) {
        filter_row(type, cur, prev, stride, bpp, trial.data());
        const uint64_t sum = signed_sum(trial.data(), stride);
        if (sum < best_sum) best_sum = sum, best = type;
      }
    }
    out[0] = static_cast<uint8_t>(best);
    filter_row(best, cur, prev, stride, bpp, out + 1);
  }

  std::vector<uint8_t> packed;
  if (compression_level == 1) {
    packed = detail::deflate_rle(filtered.data(), filtered.size());
  } else {
    uLongf packed_size = compressBound(static_cast<uLong>(filtered.size()));
    packed.resize(packed_size);
    const int z = compress2(packed.data(), &packed_size, filtered.data(), static_cast<uLong>(filtered.size()),
                            compression_level);
    NN_CHECK(z == Z_OK, "encode_png: zlib failed to compress a ", image.height, "x", image.width, "x", image.channels,
             " image (error ", z, ")");
    packed.resize(packed_size);
  }

  static const uint8_t kColourType[5] = {0, 0, 4, 2, 6};  // gray, gray + alpha, RGB, RGBA
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  const uint8_t ihdr[13] = {uint8_t(w >> 24), uint8_t(w >> 16), uint8_t(w >> 8), uint8_t(w),
                            uint8_t(h >> 24), uint8_t(h >> 16), uint8_t(h >> 8), uint8_t(h),
                            8, kColourType[bpp], 0, 0, 0};
  put_chunk(png, "IHDR", ihdr, sizeof ihdr);
  put_chunk(png, "IDAT", packed.data(), packed.size());
  put_chunk(png, "IEND", nullptr, 0);
  return png;
}

std::vector<uint8_t> encode_jpeg(const Image& image, int quality) {
  NN_CHECK(image.height >= 1 && image.width >= 1, "encode_jpeg: empty image (", image.height, "x", image.width, ")");
  NN_CHECK(image.channels >= 1 && image.channels <= 4, "encode_jpeg: an image has 1 to 4 channels, got ", image.channels);
  NN_CHECK(image.pixels.size() == static_cast<size_t>(image.height * image.width * image.channels),
           "encode_jpeg: the image holds ", image.pixels.size(), " samples, but ", image.height, "x", image.width, "x",
           image.channels, " needs ", image.height * image.width * image.channels);
  NN_CHECK(quality >= 1 && quality <= 100, "encode_jpeg: quality must be 1..100, got ", quality);
  NN_CHECK(image.height <= 65500 && image.width <= 65500, "encode_jpeg: a ", image.height, "x", image.width,
           " image is larger than JPEG's 65500 per side");
  const int64_t n = image.height * image.width, c = image.channels, out_c = c <= 2 ? 1 : 3;
  std::vector<uint8_t> samples(static_cast<size_t>(n * out_c));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < out_c; ++k) samples[static_cast<size_t>(i * out_c + k)] = to_8_bit(image.pixels[i * c + k]);
  std::vector<uint8_t> out;
  std::string error;
  NN_CHECK(detail::jpeg_encode(samples.data(), static_cast<int>(image.width), static_cast<int>(image.height),
                               static_cast<int>(out_c), quality, &out, &error),
           "encode_jpeg: ", error);
  return out;
}

void save_png(const std::string& path, const Image& image, int compression_level) {
  std::vector<uint8_t> png = encode_png(image, compression_level);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  NN_CHECK(f != nullptr, "cannot write PNG '", path, "': ", std::strerror(errno));
  size_t written = std::fwrite(png.data(), 1, png.size(), f);
  int write_errno = errno;
  bool ok = written == png.size();
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    write_errno = errno;
  }
  NN_CHECK(ok, "cannot write PNG '", path, "': ", std::strerror(write_errno));
}

}  // namespace nn::data
