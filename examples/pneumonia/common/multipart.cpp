// multipart/form-data parsing: see multipart.h.
#include "multipart.h"

#include <algorithm>
#include <cctype>

namespace pneumonia::http {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "value; key=value; key="quoted value"" -> the first value and the parameters (keys lower-case).
// A quoted string may contain ';' and backslash escapes.
struct HeaderValue {
  std::string value;
  std::vector<std::pair<std::string, std::string>> params;
};

HeaderValue parse_header_value(std::string_view s, const char* what) {
  HeaderValue out;
  size_t i = s.find(';');
  out.value = lower(trim(s.substr(0, i)));
  while (i != std::string_view::npos && i < s.size()) {
    ++i;  // past ';'
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    if (i >= s.size()) break;  // a trailing ';'
    size_t eq = s.find('=', i);
    if (eq == std::string_view::npos)
      throw MultipartError(std::string(what) + ": parameter without '=' in \"" + std::string(s) + "\"");
    std::string key = lower(trim(s.substr(i, eq - i)));
    if (key.empty()) throw MultipartError(std::string(what) + ": empty parameter name in \"" + std::string(s) + "\"");
    i = eq + 1;
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    std::string value;
    if (i < s.size() && s[i] == '"') {
      ++i;
      bool closed = false;
      for (; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 1 < s.size()) {
          value += s[++i];
        } else if (s[i] == '"') {
          closed = true;
          ++i;
          break;
        } else {
          value += s[i];
        }
      }
      if (!closed) throw MultipartError(std::string(what) + ": unterminated quoted string in \"" + std::string(s) + "\"");
      while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
      if (i < s.size() && s[i] != ';')
        throw MultipartError(std::string(what) + ": unexpected text after a quoted value in \"" + std::string(s) + "\"");
    } else {
      size_t end = s.find(';', i);
      value = std::string(trim(s.substr(i, end == std::string_view::npos ? std::string_view::npos : end - i)));
      i = end == std::string_view::npos ? s.size() : end;
    }
    if (i < s.size() && s[i] != ';') i = s.find(';', i);
    for (const auto& [k, v] : out.params)
      if (k == key) throw MultipartError(std::string(what) + ": parameter '" + key + "' given twice");
    out.params.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

const std::string* find_param(const HeaderValue& h, const std::string& key) {
  for (const auto& [k, v] : h.params)
    if (k == key) return &v;
  return nullptr;
}

bool valid_boundary(const std::string& b) {
  if (b.empty() || b.size() > 70 || b.back() == ' ') return false;
  for (unsigned char c : b)
    if (!(std::isalnum(c) || std::string_view("'()+_,-./:=? ").find(static_cast<char>(c)) != std::string_view::npos))
      return false;
  return true;
}

}  // namespace

std::string multipart_boundary(std::string_view content_type) {
  if (trim(content_type).empty()) throw MultipartError("no Content-Type: expected multipart/form-data");
  HeaderValue h = parse_header_value(content_type, "Content-Type");
  if (h.value != "multipart/form-data")
    throw MultipartError("Content-Type is '" + h.value + "': expected multipart/form-data with a field 'image'");
  const std::string* b = find_param(h, "boundary");
  if (!b) throw MultipartError("Content-Type multipart/form-data has no boundary parameter");
  if (!valid_boundary(*b))
    throw MultipartError("invalid multipart boundary (1-70 characters from letters, digits and '()+_,-./:=? )");
  return *b;
}

std::vector<MultipartPart> parse_multipart(std::string_view body, std::string_view content_type,
                                           const MultipartLimits& limits) {
  const std::string delimiter = "--" + multipart_boundary(content_type);
  const std::string inner = "\r\n" + delimiter;  // a delimiter after a part's content
  // The first delimiter: at the very start, or after a preamble (which is ignored).
  size_t pos;
  if (body.substr(0, delimiter.size()) == delimiter) {
    pos = delimiter.size();
  } else {
    size_t at = body.find(inner);
    if (at == std::string_view::npos)
      throw MultipartError(body.empty() ? "empty multipart body" : "multipart body does not contain the boundary from Content-Type");
    pos = at + inner.size();
  }
  std::vector<MultipartPart> parts;
  for (;;) {
    // After a delimiter: "--" closes the body; otherwise optional padding then CRLF.
    if (body.substr(pos, 2) == "--") {
      if (parts.empty()) throw MultipartError("multipart body has no parts");
      return parts;  // the epilogue, if any, is ignored
    }
    while (pos < body.size() && (body[pos] == ' ' || body[pos] == '\t')) ++pos;
    if (body.substr(pos, 2) != "\r\n") throw MultipartError("malformed multipart body: expected CRLF after the boundary");
    pos += 2;
    if (parts.size() >= limits.max_parts)
      throw MultipartError("too many parts in the multipart body (at most " + std::to_string(limits.max_parts) + ")");

    // The part's headers, up to an empty line.
    MultipartPart part;
    bool has_disposition = false;
    for (;;) {
      size_t eol = body.find("\r\n", pos);
      if (eol == std::string_view::npos) throw MultipartError("truncated multipart body: part headers do not end");
      if (eol == pos) {
        pos += 2;
        break;
      }
      if (eol - pos > limits.max_part_header_bytes)
        throw MultipartError("multipart part header line too long (at most " + std::to_string(limits.max_part_header_bytes) + " bytes)");
      std::string_view line = body.substr(pos, eol - pos);
      pos = eol + 2;
      if (line.front() == ' ' || line.front() == '\t') throw MultipartError("folded multipart part headers are not supported");
      size_t colon = line.find(':');
      if (colon == std::string_view::npos || colon == 0)
        throw MultipartError("malformed multipart part header (no 'Name: value'): \"" + std::string(line.substr(0, 100)) + "\"");
      std::string name = lower(trim(line.substr(0, colon)));
      std::string_view value = trim(line.substr(colon + 1));
      if (name == "content-disposition") {
        if (has_disposition) throw MultipartError("a multipart part has two Content-Disposition headers");
        has_disposition = true;
        HeaderValue h = parse_header_value(value, "Content-Disposition");
        if (h.value != "form-data")
          throw MultipartError("multipart part Content-Disposition is '" + h.value + "': expected form-data");
        const std::string* n = find_param(h, "name");
        if (!n || n->empty()) throw MultipartError("a multipart part's Content-Disposition has no name");
        part.name = *n;
        if (const std::string* f = find_param(h, "filename")) {
          part.filename = *f;
          part.has_filename = true;
        }
      } else if (name == "content-type") {
        part.content_type = lower(value);
        if (part.content_type.rfind("multipart/", 0) == 0)
          throw MultipartError("nested multipart parts are not supported");
      }
    }
    if (!has_disposition) throw MultipartError("a multipart part has no Content-Disposition header");

    // The content, up to CRLF + delimiter.
    size_t end = body.find(inner, pos);
    if (end == std::string_view::npos)
      throw MultipartError("truncated multipart body: the closing boundary is missing");
    part.data = body.substr(pos, end - pos);
    parts.push_back(std::move(part));
    pos = end + inner.size();
  }
}

}  // namespace pneumonia::http
