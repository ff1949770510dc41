// libFuzzer target: nn's own deflate (data/deflate_rle.h, encode_png's level 1) on any bytes.
//   1. deflate_rle(input) must inflate, through zlib (which refuses incomplete or over-subscribed
//      codes and a wrong Adler-32), to exactly the input.
//   2. The input as an image - width (byte 0 % 64 + 1), height (byte 1 % 64 + 1, but no more rows
//      than the samples fill), channels (byte 2 % 4 + 1), then the samples, repeated to fill the
//      last row - encoded by encode_png at level 1 must decode (nn::data::decode_image) to the same
//      8-bit levels.
// A failed check traps (a crash libFuzzer reports with its input).
#include <nn/data/image.h>
#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "data/deflate_rle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> stream = nn::data::detail::deflate_rle(data, size);
  std::vector<uint8_t> back(size + 1);
  uLongf back_size = static_cast<uLongf>(back.size());
  uLong stream_size = static_cast<uLong>(stream.size());
  if (uncompress2(back.data(), &back_size, stream.data(), &stream_size) != Z_OK) __builtin_trap();
  if (back_size != size || stream_size != stream.size()) __builtin_trap();
  if (size > 0 && std::memcmp(back.data(), data, size) != 0) __builtin_trap();

  if (size < 4) return 0;
  const size_t n = size - 3;
  const int64_t w = data[0] % 64 + 1, c = data[2] % 4 + 1;
  const int64_t h = std::min<int64_t>(data[1] % 64 + 1, (static_cast<int64_t>(n) + w * c - 1) / (w * c));
  nn::data::Image image{h, w, c, {}};
  image.pixels.resize(static_cast<size_t>(h * w * c));
  for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = static_cast<float>(data[3 + i % n]) / 255.0f;
  const std::vector<uint8_t> png = nn::data::encode_png(image, 1);
  const nn::data::Image decoded = nn::data::decode_image(png.data(), png.size());
  if (decoded.height != h || decoded.width != w || decoded.channels != c || decoded.pixels != image.pixels) __builtin_trap();
  return 0;
}
