// libFuzzer target: DICOM input of the image decoder (nn/data/image.h's decode_image, through
// libnn/src/data/dicom_decode.cpp and GDCM). The input is the bytes of a file; the seeds
// (make_corpus.py) are DICOM files in every transfer syntax nn reads, whose patient name is
// "Doe^Jane". Checked, besides the sanitizers: a decoded image has one channel, the size the limits
// allow and values in [0, 1]; an nn::Error names the source and never holds the patient's name or
// name (the decoder must not quote header values); anything else is a finding (__builtin_trap).
//
// GDCM is a system library, not instrumented: inside it ASan sees only what its interceptors see
// (memcpy, memset, malloc and free: overflows through them, leaks), and libFuzzer's coverage stops
// at its entry points. The walk in dicom_decode.cpp that keeps malformed data away from GDCM is
// what the coverage sees.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "nn/data/image.h"

namespace {

volatile float sink;

bool holds(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // 4 M pixels as fuzz_image: a decode stays within libFuzzer's memory limits.
  nn::data::ImageLimits limits;
  limits.max_pixels = 4'000'000;
  limits.max_side = 8'192;
  try {
    const nn::data::Image image = nn::data::decode_image(data, size, "<fuzz>", limits);
    if (image.channels < 1 || image.height * image.width > limits.max_pixels ||
        image.pixels.size() != size_t(image.height * image.width * image.channels))
      __builtin_trap();
    if (image.channels != 1 && size >= 132 && std::memcmp(data + 128, "DICM", 4) == 0) __builtin_trap();
    float s = 0.0f;
    for (float v : image.pixels) {
      if (!(v >= 0.0f && v <= 1.0f)) __builtin_trap();
      s += v;
    }
    sink = s;
  } catch (const nn::Error& e) {
    const std::string message = e.what();
    if (message.rfind("cannot decode image '<fuzz>': ", 0) != 0) __builtin_trap();
    // (Letters only: a UID the decoder quotes may well hold the digits of the patient ID.)
    // Only for DICOM input: the other formats' messages may quote their own structure (a PNG chunk
    // type "Jane" in a mutated PNG is not a header value; regressions/fuzz_dicom/png-chunk-type-jane.bin).
    const bool dicom = size >= 132 && std::memcmp(data + 128, "DICM", 4) == 0;
    if (dicom && (holds(message, "Doe") || holds(message, "Jane"))) {
      std::fprintf(stderr, "fuzz_dicom: the patient's name reached the message: %s\n", message.c_str());
      __builtin_trap();
    }
  }
  return 0;
}
