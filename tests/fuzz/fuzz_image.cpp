// libFuzzer target: the image decoder (nn/data/image.h). The input is the bytes of an image file;
// it is decoded from memory with limits low enough for fuzzing (ImageLimits below) and, when it
// decodes, sent through the post-decode code: colour conversion, resize, center crop, the eval
// transform and PNG re-encoding (whose output is decoded again). nn::Error is the expected answer
// to a malformed image; anything else is a finding.
//
// decode_image refuses a PNG whose critical chunks fail their CRCs before stb sees it, so almost
// every mutation of a PNG would stop there. A PNG input is therefore decoded twice: as it is, and
// with every chunk's CRC recomputed, which lets the mutations reach stb's inflate and unfiltering.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "nn/data/image.h"

namespace {

volatile float sink;

uint32_t crc32(const uint8_t* d, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) {
    c ^= d[i];
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xedb88320u ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xffffffffu;
}

// The PNG with each complete chunk's CRC made to match; false when nothing changed.
bool fix_png_crcs(std::vector<uint8_t>& b) {
  static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (b.size() < 8 || std::memcmp(b.data(), kSignature, 8) != 0) return false;
  bool changed = false;
  size_t at = 8;
  while (b.size() - at >= 12) {
    const uint32_t length = (uint32_t(b[at]) << 24) | (uint32_t(b[at + 1]) << 16) |
                            (uint32_t(b[at + 2]) << 8) | uint32_t(b[at + 3]);
    if (b.size() - at - 12 < length) break;
    const uint32_t crc = crc32(b.data() + at + 4, size_t{length} + 4);
    uint8_t* out = b.data() + at + 8 + length;
    const uint8_t want[4] = {uint8_t(crc >> 24), uint8_t(crc >> 16), uint8_t(crc >> 8), uint8_t(crc)};
    if (std::memcmp(out, want, 4) != 0) {
      std::memcpy(out, want, 4);
      changed = true;
    }
    at += 12 + size_t{length};
  }
  return changed;
}

void run(const uint8_t* data, size_t size);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  run(data, size);
  std::vector<uint8_t> fixed(data, data + size);
  if (fix_png_crcs(fixed)) run(fixed.data(), fixed.size());
  return 0;
}

namespace {

void run(const uint8_t* data, size_t size) {
  // 4 M pixels: big enough for any seed, small enough that a decode fits the fuzzer's memory limit
  // (the float image is 16 bytes per RGBA pixel, stb's budget 32 bytes per pixel).
  nn::data::ImageLimits limits;
  limits.max_pixels = 4'000'000;
  limits.max_side = 8'192;
  nn::data::Image image;
  try {
    image = nn::data::decode_image(data, size, "<fuzz>", limits);
  } catch (const nn::Error&) {
    return;
  }
  // The post-decode steps run on images up to 128 x 128 pixels: their code paths (odd sizes, 1 x N,
  // every channel count, down- and upscaling ratios up to 128) are all there, while resampling a
  // 4 M pixel image through coverage-instrumented loops would cut the executions per second by
  // about ten or more for nothing new.
  if (image.height * image.width > 128 * 128) {
    sink = image.at(image.height - 1, image.width - 1, image.channels - 1);
    return;
  }
  try {
    float s = 0.0f;
    for (float v : image.pixels) s += v;
    nn::data::Image rgb = nn::data::to_rgb(image);
    nn::data::Image gray = nn::data::to_grayscale(image);
    // Small outputs keep the executions fast; both down- and upscaling, odd sizes.
    const int64_t h = 1 + static_cast<int64_t>(size % 7), w = 1 + static_cast<int64_t>(size % 5);
    nn::data::Image small = nn::data::resize(image, h, w);
    nn::data::Image up = nn::data::resize(gray, std::min<int64_t>(image.height * 2, 37),
                                          std::min<int64_t>(image.width * 3, 41));
    // The shorter side to 9, the longer capped so a 1 x 16384 image does not become 9 x 147456
    // (resize_shorter_side gives what it is asked; eval_transform below only computes its crop).
    nn::data::Image shorter = std::max(image.height, image.width) <= 40 * std::min(image.height, image.width)
                                  ? nn::data::resize_shorter_side(rgb, 9)
                                  : nn::data::resize(rgb, 9, 9);
    nn::data::Image crop = nn::data::center_crop(shorter, std::min<int64_t>(shorter.height, 8),
                                                 std::min<int64_t>(shorter.width, 8));
    nn::Tensor t = nn::data::eval_transform(rgb, nn::data::Preprocessing::caffe, 8, 9);
    std::vector<uint8_t> png = nn::data::encode_png(small);
    nn::data::Image again = nn::data::decode_image(png.data(), png.size(), "<re-encoded>", limits);
    s += small.pixels[0] + up.pixels[0] + crop.pixels[0] + again.pixels[0] +
         static_cast<float>(t.numel()) + image.at(0, 0, 0);
    sink = s;
  } catch (const nn::Error&) {
    // A decoded image must go through every step: an error here is a finding.
    __builtin_trap();
  }
}

}  // namespace
