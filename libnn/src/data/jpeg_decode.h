// The library's only contact with libjpeg-turbo (its libjpeg API; Debian libjpeg62-turbo-dev), the
// JPEG decoder Pillow and the browsers use. Thin: the checks that run before it (structure, size
// limits) and the messages are image.cpp's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace nn::data::detail {

// One JPEG decode, in two steps so that the caller can check the frame's size before any pixel
// memory is allocated. Every libjpeg error, and every warning that means pixels were lost or
// made up (corrupt entropy-coded data, data that ends early), is a failure with libjpeg's message
// in error(); harmless warnings (extraneous bytes between markers, an unknown JFIF version) are not.
class JpegDecoder {
 public:
  // More scans than this is refused (a legitimate progressive JPEG has about ten; each scan of a
  // crafted file costs a pass over the whole image, so a few kilobytes could buy minutes).
  static constexpr int kMaxScans = 256;

  JpegDecoder(const uint8_t* data, size_t size);
  ~JpegDecoder();
  JpegDecoder(const JpegDecoder&) = delete;
  JpegDecoder& operator=(const JpegDecoder&) = delete;

  // Reads the markers up to the first scan. False (error() says why) when libjpeg refuses them.
  bool read_header();
  int width() const;
  int height() const;
  int components() const;  // in the file: 1 gray, 3 YCbCr or RGB, 4 CMYK or YCCK, others refused
  // Decodes every pixel, libjpeg's defaults (accurate integer IDCT, smooth chroma upsampling, as
  // Pillow): 1 channel for gray, 3 for colour; CMYK and YCCK become RGB, as a screen shows Adobe's
  // (inverted) CMYK: R = C' K' / 255 with the stored C', K' (rounded). At most `memory_budget` bytes
  // for libjpeg's whole-image buffers (progressive coefficients). False with error() on failure.
  bool decode(size_t memory_budget, std::vector<uint8_t>* samples, int* channels);
  const std::string& error() const;

  struct State;  // libjpeg's objects (jpeg_decode.cpp); public so its callbacks can reach it

 private:
  std::unique_ptr<State> state_;
};

// Baseline JPEG of 8-bit samples (1 channel: gray; 3: RGB, stored as YCbCr with 4:2:0 chroma, as
// libjpeg does by default) at `quality` 1..100; false with `error` set on failure.
bool jpeg_encode(const uint8_t* samples, int width, int height, int channels, int quality,
                 std::vector<uint8_t>* out, std::string* error);

}  // namespace nn::data::detail
