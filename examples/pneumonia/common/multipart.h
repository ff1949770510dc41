// A strict multipart/form-data parser (RFC 7578 / RFC 2046) for the web server's uploads.
//
// The body is parsed in memory (the server has already bounded its size); parts are views into it,
// nothing is copied or written to disk. Strict on purpose: the boundary must come from the
// Content-Type, every part needs a Content-Disposition "form-data" with a name, nested multipart
// parts are refused, the closing delimiter must be present, and there are caps on the number of
// parts and on the size of each part's headers. Every problem throws MultipartError with a message
// that says what was wrong (the server returns it to the client as a 400).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pneumonia::http {

class MultipartError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct MultipartPart {
  std::string name;          // Content-Disposition name="..."
  std::string filename;      // filename="..." as sent (never used as a path); empty when absent
  bool has_filename = false; // a file field (filename present, even if empty)
  std::string content_type;  // the part's Content-Type, empty when absent
  std::string_view data;     // the part's bytes: a view into the body given to parse_multipart
};

struct MultipartLimits {
  size_t max_parts = 16;
  size_t max_part_header_bytes = 8192;
};

// The boundary parameter of a "multipart/form-data; boundary=..." Content-Type (quoted or not,
// 1-70 characters). Throws MultipartError when the type is not multipart/form-data or the boundary
// is missing or invalid.
std::string multipart_boundary(std::string_view content_type);

// Splits the body into its parts. Throws MultipartError on any malformation.
std::vector<MultipartPart> parse_multipart(std::string_view body, std::string_view content_type,
                                           const MultipartLimits& limits = {});

}  // namespace pneumonia::http
