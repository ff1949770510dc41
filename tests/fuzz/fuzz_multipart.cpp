// libFuzzer target: the web app's multipart/form-data parser (examples/pneumonia/common/multipart.h),
// the only part of a request pneumonia-serve parses itself (Boost.Beast parses the HTTP). The input
// is "<Content-Type>\n<body>": the first line is the header value, the rest the body, so the fuzzer
// mutates both the boundary parameter and the parts. MultipartError is the expected answer to a
// malformed upload. Besides the sanitizers, the target checks what the parser promises: at most
// max_parts parts, each part's data a view inside the body, and each part's name non-empty.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "multipart.h"

namespace {
volatile size_t sink;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t newline = input.find('\n');
  const std::string_view content_type = input.substr(0, newline);
  const std::string_view body = newline == std::string_view::npos ? std::string_view() : input.substr(newline + 1);
  pneumonia::http::MultipartLimits limits;
  limits.max_parts = 8;
  limits.max_part_header_bytes = 1024;
  try {
    (void)pneumonia::http::multipart_boundary(content_type);
  } catch (const pneumonia::http::MultipartError&) {
  }
  try {
    const auto parts = pneumonia::http::parse_multipart(body, content_type, limits);
    if (parts.size() > limits.max_parts) __builtin_trap();
    for (const auto& part : parts) {
      if (part.name.empty()) __builtin_trap();
      if (!part.data.empty() && (part.data.data() < body.data() ||
                                 part.data.data() + part.data.size() > body.data() + body.size()))
        __builtin_trap();
      size_t sum = part.filename.size() + part.content_type.size();
      for (char c : part.data) sum += static_cast<unsigned char>(c);
      sink = sum;
    }
  } catch (const pneumonia::http::MultipartError&) {
  }
  return 0;
}
