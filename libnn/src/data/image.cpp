// Image decoding, resizing, cropping and preprocessing (nn/data/image.h). The format checks, the
// limits and the messages are here; libjpeg-turbo (data/jpeg_decode.cpp) decodes JPEG, stb
// (data/stb_impl.cpp) decodes and encodes PNG, GDCM (data/dicom_decode.cpp, when nn is built with
// it: NN_WITH_DICOM) decodes DICOM.
#include "nn/data/image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <utility>

#include "cpu/parallel.h"
#ifdef NN_WITH_DICOM
#include "data/dicom_decode.h"
#endif
#include "data/jpeg_decode.h"
#include "data/stb_impl.h"

namespace nn::data {
namespace {

// ---- validation ----

// Every operation takes a well-formed, non-empty image.
void check_image(const Image& image, const char* op) {
  NN_CHECK(image.height >= 1 && image.width >= 1, op, ": empty image (", image.height, "x",
           image.width, ")");
  NN_CHECK(image.channels >= 1 && image.channels <= 4, op, ": an image has 1 to 4 channels, got ",
           image.channels);
  NN_CHECK(image.pixels.size() == static_cast<size_t>(image.height * image.width * image.channels),
           op, ": the image holds ", image.pixels.size(), " samples, but ", image.height, "x",
           image.width, "x", image.channels, " needs ", image.height * image.width * image.channels);
}

Image make_image(int64_t height, int64_t width, int64_t channels) {
  Image out;
  out.height = height;
  out.width = width;
  out.channels = channels;
  out.pixels.resize(static_cast<size_t>(height * width * channels));
  return out;
}

// ---- formats ----

enum class Format { png, jpeg, dicom };

// What this build reads, for messages.
#ifdef NN_WITH_DICOM
constexpr const char* kReadable = "JPEG, PNG and DICOM";
constexpr const char* kReadableOr = "JPEG, PNG or DICOM";
#else
constexpr const char* kReadable = "JPEG and PNG";
constexpr const char* kReadableOr = "JPEG or PNG";
#endif

std::string hex_byte(uint8_t b) {
  const char* digits = "0123456789abcdef";
  return {digits[b >> 4], digits[b & 15]};
}

bool starts_with(const uint8_t* d, size_t n, size_t at, const char* magic, size_t len) {
  return n >= at + len && std::memcmp(d + at, magic, len) == 0;
}

// The format of the data from its magic bytes. Formats nn does not read are refused by name, so
// that "this is a GIF" is what a user reads rather than a decoder's complaint.
Format detect_format(const uint8_t* d, size_t n, const std::string& source) {
  if (starts_with(d, n, 0, "\x89PNG\r\n\x1a\n", 8)) return Format::png;
  if (starts_with(d, n, 0, "\xff\xd8\xff", 3)) return Format::jpeg;
  // DICOM Part 10 (PS3.10 7.1): a 128-byte preamble, then "DICM".
  if (starts_with(d, n, 128, "DICM", 4)) {
#ifdef NN_WITH_DICOM
    return Format::dicom;
#else
    NN_CHECK(false, "cannot decode image '", source,
             "': DICOM images are not supported by this build of nn (built without GDCM: NN_DICOM=OFF)");
#endif
  }
  // A bare DICOM data set (no preamble and "DICM"; its transfer syntax would have to be guessed):
  // a first element of group 0002 or 0008 with an explicit VR's two capitals, or "DICM" at byte 0.
  const bool bare_dicom = n >= 8 && (d[0] == 0x02 || d[0] == 0x08) && d[1] == 0 && d[3] == 0 &&
                          std::isupper(d[4]) && std::isupper(d[5]);
  NN_CHECK(!bare_dicom && !starts_with(d, n, 0, "DICM", 4), "cannot decode image '", source,
           "': a DICOM data set without the 128-byte preamble and 'DICM' (nn reads DICOM Part 10 files only)");
  const char* other = nullptr;
  if (starts_with(d, n, 0, "GIF87a", 6) || starts_with(d, n, 0, "GIF89a", 6)) other = "GIF";
  else if (starts_with(d, n, 0, "RIFF", 4) && starts_with(d, n, 8, "WEBP", 4)) other = "WEBP";
  else if (starts_with(d, n, 0, "II*\0", 4) || starts_with(d, n, 0, "MM\0*", 4)) other = "TIFF";
  else if (starts_with(d, n, 0, "BM", 2)) other = "BMP";
  else if (starts_with(d, n, 0, "8BPS", 4)) other = "PSD";
  else if (starts_with(d, n, 0, "qoif", 4)) other = "QOI";
  else if (starts_with(d, n, 0, "#?RADIANCE", 10) || starts_with(d, n, 0, "#?RGBE", 6)) other = "HDR";
  else if (starts_with(d, n, 0, "\0\0\1\0", 4) || starts_with(d, n, 0, "\0\0\2\0", 4)) other = "ICO";
  else if (starts_with(d, n, 0, "\0\0\0\x0cjP  ", 8) || starts_with(d, n, 0, "\xff\x4f\xff\x51", 4))
    other = "JPEG 2000";
  else if (starts_with(d, n, 0, "\xff\x0a", 2) || starts_with(d, n, 0, "\0\0\0\x0cJXL ", 8))
    other = "JPEG XL";
  else if (starts_with(d, n, 4, "ftypavif", 8) || starts_with(d, n, 4, "ftypavis", 8)) other = "AVIF";
  else if (starts_with(d, n, 4, "ftyphei", 7) || starts_with(d, n, 4, "ftypmif1", 8) ||
           starts_with(d, n, 4, "ftypmsf1", 8) || starts_with(d, n, 4, "ftyphevc", 8))
    other = "HEIF";
  else if (n >= 3 && d[0] == 'P' && d[1] >= '1' && d[1] <= '7' && std::isspace(d[2])) other = "PNM";
  NN_CHECK(other == nullptr, "cannot decode image '", source, "': ", other,
           " images are not supported (", kReadable, " only)");
  std::string start;
  for (size_t i = 0; i < std::min<size_t>(n, 8); ++i) start += (i ? " " : "") + hex_byte(d[i]);
  NN_CHECK(false, "cannot decode image '", source, "': not a ", kReadableOr, " image (", n,
           " bytes starting with ", start, ")");
  return Format::png;  // not reached
}

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// CRC-32 of PNG chunks (ISO 3309, reflected polynomial 0xEDB88320), table-driven.
uint32_t crc32(const uint8_t* d, size_t n) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ d[i]) & 0xffu] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

std::string chunk_name(const uint8_t* type) {
  bool letters = std::all_of(type, type + 4, [](uint8_t ch) { return std::isalpha(ch) != 0; });
  return letters ? std::string(reinterpret_cast<const char*>(type), 4) : "(not a chunk type)";
}

// Walks a PNG's chunks from the signature to IEND: every chunk must be complete, and a critical
// chunk's CRC (IHDR, PLTE, IDAT, IEND: upper-case first letter) must match, as libpng requires;
// ancillary chunks' CRCs are not checked (libpng only warns). stb_image reads no CRC and stops at
// IEND's type, so without this a cut or bit-flipped file could decode into garbage pixels.
void check_png_chunks(const uint8_t* d, size_t n, const std::string& source) {
  size_t at = 8;
  while (true) {
    NN_CHECK(n - at >= 12, "cannot decode image '", source, "': truncated PNG (the data ends at byte ",
             n, ", before the IEND chunk)");
    const uint32_t length = read_be32(d + at);
    const uint8_t* type = d + at + 4;
    NN_CHECK(length <= 0x7fffffffu, "cannot decode image '", source, "': corrupt PNG (chunk ",
             chunk_name(type), " at byte ", at, " declares ", length, " bytes)");
    NN_CHECK(n - at - 12 >= length, "cannot decode image '", source, "': truncated PNG (chunk ",
             chunk_name(type), " at byte ", at, " declares ", length, " bytes; the data ends at byte ",
             n, ")");
    if ((type[0] & 0x20) == 0)
      NN_CHECK(crc32(type, length + 4) == read_be32(type + 4 + length), "cannot decode image '",
               source, "': corrupt PNG (CRC mismatch in chunk ", chunk_name(type), " at byte ", at, ")");
    at += 12 + size_t{length};
    if (std::memcmp(type, "IEND", 4) == 0) return;
  }
}

// Sides come from a header: up to 2^32 - 1 each (PNG), so the product is taken in 64 unsigned bits.
void check_limits(uint64_t width, uint64_t height, const ImageLimits& limits,
                  const std::string& source) {
  const uint64_t pixels = width * height;
  const auto max_side = static_cast<uint64_t>(limits.max_side);
  NN_CHECK(width <= max_side && height <= max_side && pixels <= static_cast<uint64_t>(limits.max_pixels),
           "cannot decode image '", source, "': its header declares ", width, "x", height,
           " pixels (width x height, ", pixels, " pixels), over the limits of ", limits.max_side,
           " per side and ", limits.max_pixels, " pixels (ImageLimits); refused before decoding");
}

// A DHT segment holds tables until its length is used up. A table declares 16 code counts that
// must sum to at most 256 (libjpeg refuses more as a "bogus Huffman table"; stb_image 2.27, which nn
// used before libjpeg-turbo, wrote past its table). Refused here with the numbers.
void check_huffman_tables(const uint8_t* d, size_t n, size_t at, int64_t length,
                          const std::string& source) {
  auto byte_at = [&](size_t p) -> unsigned { return p < n ? d[p] : 0u; };
  while (length > 0) {
    const unsigned q = byte_at(at);
    if ((q >> 4) > 1 || (q & 15) > 3) return;  // the decoder refuses the table itself
    unsigned codes = 0;
    for (size_t k = 1; k <= 16; ++k) codes += byte_at(at + k);
    NN_CHECK(codes <= 256, "cannot decode image '", source, "': corrupt JPEG (a Huffman table at byte ",
             at, " declares ", codes, " codes; at most 256)");
    at += 17 + codes;
    length -= 17 + static_cast<int64_t>(codes);
  }
}

// A start-of-frame marker: SOF0-SOF3, SOF5-SOF7, SOF9-SOF11, SOF13-SOF15 (C4 is DHT, C8 reserved,
// CC DAC).
bool is_start_of_frame(uint8_t marker) {
  return marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 && marker != 0xcc;
}

// Follows a JPEG's marker segments from SOI to EOI (bytes other than 0xFF before a marker are
// skipped, fill bytes too; the entropy-coded data after a start-of-scan runs to the next 0xFF that
// is not a stuffed 0xFF00 or a restart marker) and refuses, before the decoder sees the data:
// - data that ends before the end-of-image marker (a decoder would fill the rest in grey);
// - a frame over `limits` (from the first start-of-frame segment, so the numbers in the message
//   are the file's even where libjpeg would refuse the frame on its own, above 65500 per side);
// - Huffman tables with more than 256 codes (check_huffman_tables).
// Data after EOI is allowed.
void check_jpeg_structure(const uint8_t* d, size_t n, const std::string& source, const ImageLimits& limits) {
  auto truncated = [&](const char* where) {
    NN_CHECK(false, "cannot decode image '", source, "': truncated JPEG (the data ends ", where,
             ", before the end-of-image marker)");
  };
  bool seen_frame = false;
  size_t i = 2;  // after SOI
  while (true) {
    while (i < n && d[i] != 0xff) ++i;  // stray bytes (skipped by the decoder too, or refused)
    while (i < n && d[i] == 0xff) ++i;  // fill bytes
    if (i >= n) truncated("between segments");
    const uint8_t marker = d[i++];
    if (marker == 0xd9) return;  // EOI
    // Markers without a length: TEM, RSTn, and ones the decoder refuses (a lone 0xFF00, a second SOI).
    if (marker == 0x00 || marker == 0x01 || (marker >= 0xd0 && marker <= 0xd8)) continue;
    if (n - i < 2) truncated("in a segment's length");
    const size_t length = (size_t{d[i]} << 8) | d[i + 1];  // includes its own two bytes
    NN_CHECK(length >= 2, "cannot decode image '", source, "': corrupt JPEG (segment ff ",
             hex_byte(marker), " at byte ", i - 2, " has length ", length, ")");
    if (marker == 0xc4) check_huffman_tables(d, n, i + 2, static_cast<int64_t>(length) - 2, source);
    if (n - i < length) truncated("inside a segment");
    if (is_start_of_frame(marker) && !seen_frame && length >= 7) {
      seen_frame = true;  // precision, height, width (big-endian), ...
      const uint64_t height = (uint64_t{d[i + 3]} << 8) | d[i + 4], width = (uint64_t{d[i + 5]} << 8) | d[i + 6];
      check_limits(width, height, limits, source);
    }
    i += length;
    if (marker != 0xda) continue;
    while (true) {  // entropy-coded data
      const void* ff = i < n ? std::memchr(d + i, 0xff, n - i) : nullptr;
      if (ff == nullptr) truncated("in the scan data");
      size_t j = static_cast<size_t>(static_cast<const uint8_t*>(ff) - d) + 1;
      while (j < n && d[j] == 0xff) ++j;
      if (j >= n) truncated("in the scan data");
      if (d[j] != 0x00 && (d[j] < 0xd0 || d[j] > 0xd7)) {
        i = j - 1;  // the 0xFF before the next marker
        break;
      }
      i = j + 1;
    }
  }
}

struct StbFree {
  void operator()(void* p) const { detail::stb_free(p); }
};

// ---- resampling ----

// The filter taps of one axis: output i reads `count[i]` inputs from `first[i]` with the weights
// at weights[i * ksize ...]. PIL's precompute_coeffs (and torch's _upsample_bilinear2d_aa): the
// triangle filter has support 1 in output pixels, i.e. max(scale, 1) input pixels either side of
// the output pixel's centre (i + 0.5) * scale, and the weights of the taps inside the image are
// normalised to sum to 1. Computed in double, stored as float.
struct AxisFilter {
  int64_t ksize = 0;
  std::vector<int64_t> first, count;
  std::vector<float> weights;
};

// The filters of the outputs [begin, begin + count) of a resize from in_size to out_size (all of
// them by default): the same floats as those outputs' filters in the whole resize, so a window of
// a resized image can be computed without the rest of it.
AxisFilter axis_filter(int64_t in_size, int64_t out_size, int64_t begin = 0, int64_t count_out = -1) {
  if (count_out < 0) count_out = out_size - begin;
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filter_scale = std::max(scale, 1.0);
  const double support = 1.0 * filter_scale;  // the triangle's support is 1
  const double inv = 1.0 / filter_scale;
  AxisFilter f;
  f.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  f.first.resize(count_out);
  f.count.resize(count_out);
  f.weights.assign(static_cast<size_t>(count_out * f.ksize), 0.0f);
  std::vector<double> w(static_cast<size_t>(f.ksize));
  for (int64_t i = 0; i < count_out; ++i) {
    const double center = (static_cast<double>(begin + i) + 0.5) * scale;
    // C's truncating conversions, as in PIL; the clamps make the truncation of negatives harmless.
    int64_t lo = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    int64_t hi = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in_size);
    int64_t count = std::min<int64_t>(hi - lo, f.ksize);
    double total = 0.0;
    for (int64_t k = 0; k < count; ++k) {
      double x = std::abs((static_cast<double>(k + lo) - center + 0.5) * inv);
      w[k] = x < 1.0 ? 1.0 - x : 0.0;
      total += w[k];
    }
    for (int64_t k = 0; k < count; ++k)
      f.weights[i * f.ksize + k] = static_cast<float>(total != 0.0 ? w[k] / total : w[k]);
    f.first[i] = lo;
    f.count[i] = count;
  }
  return f;
}

// Horizontal pass: rows of `in` (width in_w) -> rows of `out` (width filter's output size), C
// channels known at compile time so the inner loops unroll.
template <int C>
void resample_rows(const float* in, int64_t rows, int64_t in_w, const AxisFilter& f, int64_t out_w,
                   float* out) {
  int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, out_w * C * f.ksize));
  cpu::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* src = in + r * in_w * C;
      float* dst = out + r * out_w * C;
      for (int64_t x = 0; x < out_w; ++x) {
        const float* w = f.weights.data() + x * f.ksize;
        const float* s = src + f.first[x] * C;
        float acc[C] = {};
        for (int64_t k = 0; k < f.count[x]; ++k)
          for (int c = 0; c < C; ++c) acc[c] += w[k] * s[k * C + c];
        for (int c = 0; c < C; ++c) dst[x * C + c] = acc[c];
      }
    }
  });
}

// Vertical pass: each output row is a weighted sum of whole input rows (contiguous, vectorises).
void resample_columns(const float* in, int64_t row_len, const AxisFilter& f, int64_t out_h,
                      float* out) {
  int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, row_len * f.ksize));
  cpu::parallel_for(0, out_h, grain, [&](int64_t y0, int64_t y1) {
    for (int64_t y = y0; y < y1; ++y) {
      float* dst = out + y * row_len;
      std::fill(dst, dst + row_len, 0.0f);
      const float* w = f.weights.data() + y * f.ksize;
      for (int64_t k = 0; k < f.count[y]; ++k) {
        const float* src = in + (f.first[y] + k) * row_len;
        const float wk = w[k];
        for (int64_t j = 0; j < row_len; ++j) dst[j] += wk * src[j];
      }
    }
  });
}

// Columns [left, left + count) of `in` resized to `width` columns (all of them by default).
Image resize_horizontal(const Image& in, int64_t width, int64_t left = 0, int64_t count = -1) {
  if (count < 0) count = width;
  Image out = make_image(in.height, count, in.channels);
  AxisFilter f = axis_filter(in.width, width, left, count);
  width = count;
  const float* s = in.pixels.data();
  float* d = out.pixels.data();
  switch (in.channels) {
    case 1: resample_rows<1>(s, in.height, in.width, f, width, d); break;
    case 2: resample_rows<2>(s, in.height, in.width, f, width, d); break;
    case 3: resample_rows<3>(s, in.height, in.width, f, width, d); break;
    default: resample_rows<4>(s, in.height, in.width, f, width, d); break;
  }
  return out;
}

// Rows [top, top + count) of `in` resized to `height` rows (all of them by default).
Image resize_vertical(const Image& in, int64_t height, int64_t top = 0, int64_t count = -1) {
  if (count < 0) count = height;
  Image out = make_image(count, in.width, in.channels);
  AxisFilter f = axis_filter(in.height, height, top, count);
  height = count;
  resample_columns(in.pixels.data(), in.width * in.channels, f, height, out.pixels.data());
  return out;
}

// The (height, width) of resize_shorter_side(size) on an h x w image: the shorter side becomes
// `size`, the longer Python's int(size * long / short) (the exact product, one correctly rounded
// division, truncated).
std::pair<int64_t, int64_t> shorter_side_size(int64_t h, int64_t w, int64_t size) {
  const int64_t shorter = std::min(h, w), longer = std::max(h, w);
  const auto new_long = static_cast<int64_t>(static_cast<double>(size * longer) / static_cast<double>(shorter));
  return w <= h ? std::make_pair(new_long, size) : std::make_pair(size, new_long);
}

// Where a center crop starts when it leaves `d` pixels out: int(round(d / 2.0)) with Python's
// round (half to even), as torchvision's center_crop; d odd -> d/2 rounded to even.
int64_t center_crop_offset(int64_t d) {
  const int64_t half = d / 2;
  return d % 2 == 0 || half % 2 == 0 ? half : half + 1;
}

// ---- preprocessing ----

constexpr float kTorchvisionMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kTorchvisionStd[3] = {0.229f, 0.224f, 0.225f};
constexpr float kCaffeMeanBGR[3] = {103.939f, 116.779f, 123.68f};

// v / 255 for every 8-bit sample value.
const std::array<float, 256> kLevels = [] {
  std::array<float, 256> t{};
  for (int v = 0; v < 256; ++v) t[v] = static_cast<float>(v) / 255.0f;
  return t;
}();

// ---- decoders ----

// What a decoder may allocate for an image of this many pixels from `size` bytes of data: a
// legitimate file needs at most ~16 bytes per pixel (16-bit RGBA PNG: inflated rows plus the image;
// progressive CMYK JPEG: coefficients, planes and the image) plus a copy of the compressed data;
// small buffers fit in the constant. A zlib stream that inflates past it is refused rather than
// followed up to 4 GiB (a decompression bomb).
size_t decode_budget(size_t size, uint64_t width, uint64_t height) {
  return (size_t{64} << 20) + 2 * size + size_t{32} * static_cast<size_t>(width) * static_cast<size_t>(height);
}

Image decode_png(const uint8_t* d, size_t size, const std::string& source, const ImageLimits& limits) {
  NN_CHECK(size <= static_cast<size_t>(INT_MAX), "cannot decode image '", source, "': ", size,
           " bytes is over the 2 GiB the decoder reads");
  const int n = static_cast<int>(size);
  // A PNG's size is in its first chunk (IHDR, at a fixed place): checked even where stb would
  // refuse the header itself (sides above 2^24), so the message gives the numbers.
  if (starts_with(d, size, 12, "IHDR", 4) && size >= 24) check_limits(read_be32(d + 16), read_be32(d + 20), limits, source);
  check_png_chunks(d, size, source);
  int width = 0, height = 0, channels = 0;
  NN_CHECK(detail::stb_info(d, n, &width, &height, &channels), "cannot decode image '", source,
           "': corrupt PNG header (", detail::stb_failure_reason(), ")");
  check_limits(static_cast<uint64_t>(width), static_cast<uint64_t>(height), limits, source);

  const bool sixteen_bit = detail::stb_is_16_bit(d, n);
  const size_t budget = decode_budget(size, static_cast<uint64_t>(width), static_cast<uint64_t>(height));
  int w = 0, h = 0, c = 0;
  std::unique_ptr<void, StbFree> samples(detail::stb_load(d, n, sixteen_bit, budget, &w, &h, &c));
  NN_CHECK(samples != nullptr, "cannot decode image '", source, "': corrupt or truncated PNG (",
           detail::stb_failure_reason(), ")");
  NN_ASSERT(w == width && h == height && c >= 1 && c <= 4, "stb decoded ", w, "x", h, "x", c,
            " from a header that declared ", width, "x", height);

  Image image = make_image(h, w, c);
  const size_t count = image.pixels.size();
  float* out = image.pixels.data();
  if (sixteen_bit) {
    const auto* s = static_cast<const uint16_t*>(samples.get());
    for (size_t i = 0; i < count; ++i) out[i] = static_cast<float>(s[i]) / 65535.0f;
  } else {
    const auto* s = static_cast<const uint8_t*>(samples.get());
    for (size_t i = 0; i < count; ++i) out[i] = kLevels[s[i]];
  }
  return image;
}

Image decode_jpeg(const uint8_t* d, size_t size, const std::string& source, const ImageLimits& limits) {
  check_jpeg_structure(d, size, source, limits);
  detail::JpegDecoder decoder(d, size);
  NN_CHECK(decoder.read_header(), "cannot decode image '", source, "': corrupt JPEG header (", decoder.error(), ")");
  const auto width = static_cast<uint64_t>(decoder.width()), height = static_cast<uint64_t>(decoder.height());
  check_limits(width, height, limits, source);
  std::vector<uint8_t> samples;
  int channels = 0;
  NN_CHECK(decoder.decode(decode_budget(size, width, height), &samples, &channels), "cannot decode image '",
           source, "': corrupt or truncated JPEG (", decoder.error(), ")");
  Image image = make_image(static_cast<int64_t>(height), static_cast<int64_t>(width), channels);
  NN_ASSERT(samples.size() == image.pixels.size(), "the JPEG decoder gave ", samples.size(), " samples for ",
            width, "x", height, "x", channels);
  float* out = image.pixels.data();
  for (size_t i = 0; i < samples.size(); ++i) out[i] = kLevels[samples[i]];
  return image;
}

}  // namespace

float Image::at(int64_t y, int64_t x, int64_t c) const {
  NN_CHECK(y >= 0 && y < height && x >= 0 && x < width && c >= 0 && c < channels,
           "Image::at(", y, ", ", x, ", ", c, ") is outside the ", height, "x", width, "x",
           channels, " image");
  return pixels[static_cast<size_t>((y * width + x) * channels + c)];
}

// ---- decoding ----

Image decode_image(const void* data, size_t size, const std::string& source,
                   const ImageLimits& limits) {
  NN_CHECK(limits.max_side > 0 && limits.max_pixels > 0, "decode_image: ImageLimits must be positive (max_side ",
           limits.max_side, ", max_pixels ", limits.max_pixels, ")");
  NN_CHECK(size > 0, "cannot decode image '", source, "': the data is empty");
  NN_CHECK(data != nullptr, "cannot decode image '", source, "': null data");
  const auto* d = static_cast<const uint8_t*>(data);
  const Format format = detect_format(d, size, source);
#ifdef NN_WITH_DICOM
  if (format == Format::dicom)
    return detail::decode_dicom(d, size, source, limits,
                                [&](uint64_t width, uint64_t height) { check_limits(width, height, limits, source); });
#endif
  return format == Format::png ? decode_png(d, size, source, limits) : decode_jpeg(d, size, source, limits);
}

Image load_image(const std::string& path, const ImageLimits& limits) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  NN_CHECK(fd >= 0, "cannot read image '", path, "': ", std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  NN_CHECK(::fstat(fd, &st) == 0, "cannot read image '", path, "': ", std::strerror(errno));
  NN_CHECK(S_ISREG(st.st_mode), "cannot read image '", path, "': not a regular file");
  NN_CHECK(st.st_size <= INT_MAX, "cannot read image '", path, "': ", st.st_size,
           " bytes is over the 2 GiB the decoder reads");
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t got = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (got < 0 && errno == EINTR) continue;
    NN_CHECK(got >= 0, "cannot read image '", path, "': ", std::strerror(errno));
    if (got == 0) break;  // the file shrank while being read: decode what is there
    done += static_cast<size_t>(got);
  }
  bytes.resize(done);
  return decode_image(bytes.data(), bytes.size(), path, limits);
}

bool is_image_file_name(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".dcm" || ext == ".dicom";
}

// ---- colour ----

Image to_rgb(const Image& image) {
  check_image(image, "to_rgb");
  if (image.channels == 3) return image;
  Image out = make_image(image.height, image.width, 3);
  const int64_t n = image.height * image.width, c = image.channels;
  const float* s = image.pixels.data();
  float* d = out.pixels.data();
  for (int64_t i = 0; i < n; ++i) {
    if (c <= 2) {
      d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = s[c * i];
    } else {
      d[3 * i] = s[c * i];
      d[3 * i + 1] = s[c * i + 1];
      d[3 * i + 2] = s[c * i + 2];
    }
  }
  return out;
}

Image to_grayscale(const Image& image) {
  check_image(image, "to_grayscale");
  Image out = make_image(image.height, image.width, 1);
  const int64_t n = image.height * image.width, c = image.channels;
  const float* s = image.pixels.data();
  float* d = out.pixels.data();
  for (int64_t i = 0; i < n; ++i)
    d[i] = c <= 2 ? s[c * i] : 0.299f * s[c * i] + 0.587f * s[c * i + 1] + 0.114f * s[c * i + 2];
  return out;
}

// ---- geometry ----

Image resize(const Image& image, int64_t height, int64_t width) {
  check_image(image, "resize");
  NN_CHECK(height >= 1 && width >= 1, "resize: the output size must be positive, got ", height,
           "x", width);
  // A side that keeps its size needs no pass (the filter would be the identity).
  if (width == image.width) return height == image.height ? image : resize_vertical(image, height);
  Image horizontal = resize_horizontal(image, width);
  return height == image.height ? horizontal : resize_vertical(horizontal, height);
}

Image resize_shorter_side(const Image& image, int64_t size) {
  check_image(image, "resize_shorter_side");
  NN_CHECK(size >= 1, "resize_shorter_side: the size must be positive, got ", size);
  const auto [out_h, out_w] = shorter_side_size(image.height, image.width, size);
  return resize(image, out_h, out_w);
}

Image center_crop(const Image& image, int64_t height, int64_t width) {
  check_image(image, "center_crop");
  NN_CHECK(height >= 1 && width >= 1, "center_crop: the crop size must be positive, got ", height,
           "x", width);
  NN_CHECK(height <= image.height && width <= image.width, "center_crop: a ", height, "x", width,
           " crop does not fit in the ", image.height, "x", image.width, " image (height x width)");
  const int64_t top = center_crop_offset(image.height - height), left = center_crop_offset(image.width - width);
  Image out = make_image(height, width, image.channels);
  const int64_t row = width * image.channels;
  for (int64_t y = 0; y < height; ++y) {
    const float* s = image.pixels.data() + ((top + y) * image.width + left) * image.channels;
    std::copy(s, s + row, out.pixels.data() + y * row);
  }
  return out;
}

// ---- tensors ----

Preprocessing parse_preprocessing(const std::string& name) {
  if (name == "torchvision") return Preprocessing::torchvision;
  if (name == "caffe") return Preprocessing::caffe;
  NN_CHECK(false, "unknown preprocessing '", name, "' (valid: torchvision, caffe)");
  return Preprocessing::torchvision;  // not reached
}

const char* preprocessing_name(Preprocessing p) {
  switch (p) {
    case Preprocessing::torchvision: return "torchvision";
    case Preprocessing::caffe: return "caffe";
  }
  return "unknown";
}

Tensor to_tensor(const Image& rgb, Preprocessing p) {
  check_image(rgb, "to_tensor");
  NN_CHECK(rgb.channels == 3, "to_tensor: needs an RGB image (3 channels), got ", rgb.channels,
           " channels (convert with to_rgb)");
  NN_CHECK(p == Preprocessing::torchvision || p == Preprocessing::caffe,
           "to_tensor: unknown preprocessing ", static_cast<int>(p));
  const int64_t n = rgb.height * rgb.width;
  Tensor out = empty({3, rgb.height, rgb.width}, f32);
  float* d = out.data<float>();
  const float* s = rgb.pixels.data();
  for (int64_t c = 0; c < 3; ++c) {
    float* plane = d + c * n;
    if (p == Preprocessing::torchvision) {
      // torchvision's Normalize: (x - mean) / std in float32.
      const float mean = kTorchvisionMean[c], std = kTorchvisionStd[c];
      for (int64_t i = 0; i < n; ++i) plane[i] = (s[3 * i + c] - mean) / std;
    } else {
      // Keras' preprocess_input(mode="caffe"): RGB -> BGR, then minus the BGR means, on 0..255.
      const int64_t src = 2 - c;
      const float mean = kCaffeMeanBGR[c];
      for (int64_t i = 0; i < n; ++i) plane[i] = s[3 * i + src] * 255.0f - mean;
    }
  }
  return out;
}

Tensor eval_transform(const Image& image, Preprocessing p, int64_t input_size, int64_t resize_size) {
  check_image(image, "eval_transform");
  NN_CHECK(input_size >= 1, "eval_transform: input_size must be positive, got ", input_size);
  if (resize_size == 0) resize_size = input_size * 256 / 224;
  NN_CHECK(resize_size >= input_size, "eval_transform: resize_size (", resize_size,
           ") must be at least input_size (", input_size, ")");
  // to_rgb first, as specified, gives the same floats as resizing and cropping first and
  // converting last: every channel is filtered on its own by the same float operations. So a gray
  // image is resized as one channel and replicated at the end, and alpha is dropped
  // before resizing rather than resized.
  Image reduced;
  const Image* src = &image;
  if (image.channels == 2 || image.channels == 4) {
    reduced = image.channels == 2 ? to_grayscale(image) : to_rgb(image);
    src = &reduced;
  }
  if (src->height == input_size && src->width == input_size) return to_tensor(to_rgb(*src), p);
  // center_crop(resize_shorter_side(...)) computed for the crop window only: the same floats (each
  // output pixel's filters do not depend on the others), but a very elongated image - 1 x 10000
  // pixels would resize to 256 x 2,560,000, 7.8 GB of floats - costs no more than its crop.
  const auto [out_h, out_w] = shorter_side_size(src->height, src->width, resize_size);
  const int64_t top = center_crop_offset(out_h - input_size), left = center_crop_offset(out_w - input_size);
  Image window;
  if (out_w == src->width) {  // as resize(): no horizontal pass, so columns are only cropped
    window = center_crop(*src, src->height, input_size);
  } else {
    window = resize_horizontal(*src, out_w, left, input_size);
  }
  if (out_h == src->height) {
    window = center_crop(window, input_size, input_size);
  } else {
    window = resize_vertical(window, out_h, top, input_size);
  }
  return to_tensor(to_rgb(window), p);
}

Image image_from_tensor(const Tensor& chw) {
  NN_CHECK(chw.defined(), "image_from_tensor: undefined tensor");
  NN_CHECK(chw.dim() == 3 && chw.size(0) >= 1 && chw.size(0) <= 4,
           "image_from_tensor: expects a [C, H, W] tensor with C = 1 or 3 (2 and 4 accepted), got ",
           shape_str(chw.shape()));
  NN_CHECK(is_floating(chw.dtype()), "image_from_tensor: expects a floating-point tensor, got ",
           dtype_name(chw.dtype()));
  const int64_t c = chw.size(0), h = chw.size(1), w = chw.size(2);
  NN_CHECK(h >= 1 && w >= 1, "image_from_tensor: empty image ", shape_str(chw.shape()));
  std::vector<float> planes = chw.to_vector<float>();
  Image out = make_image(h, w, c);
  for (int64_t k = 0; k < c; ++k)
    for (int64_t i = 0; i < h * w; ++i) out.pixels[i * c + k] = planes[k * h * w + i];
  return out;
}

}  // namespace nn::data
