// safetensors reading (memory-mapped, fully validated) and writing (atomic). The format is in
// nn/io/safetensors.h. The reader trusts no number from the file until it has been checked
// against the file's size with overflow-checked arithmetic, so a hostile file costs at most one
// pass over a header no longer than the file itself, and creates no tensor unless the whole header
// is valid. The writer never leaves a half-written file at the destination path.
#include "nn/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

// Tensor bytes are written and aliased in host order; the format is little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "nn's safetensors code assumes a little-endian host");

namespace nn::io {
namespace {

using json = nlohmann::json;

// The official implementation's limit; a real header (one entry per tensor) is far smaller.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// JSON readers in other languages hold numbers as doubles: larger integers are not exact there.
constexpr uint64_t kMaxDimension = uint64_t{1} << 53;
// The parsed header's memory is bounded before the header is validated: at most this many JSON
// values (keys, strings, numbers, objects, arrays; a tensor entry has about 17, so about 120,000
// tensors, far more than any file holds - sharded checkpoints keep a few thousand per file) and
// at most this many elements in one array (the rank of a shape; data_offsets has 2). Without them
// a 100 MB header of "[0,0,0,..." or of millions of tiny keys would build a JSON tree of more than
// 1 GiB before any rule saw it.
constexpr size_t kMaxHeaderValues = size_t{1} << 21;
constexpr size_t kMaxArrayElements = 64;

struct DTypeName {
  DType dtype;
  const char* name;
};
constexpr DTypeName kDTypeNames[] = {{DType::f32, "F32"}, {DType::f64, "F64"}, {DType::f16, "F16"},
                                     {DType::bf16, "BF16"}, {DType::i64, "I64"}, {DType::i32, "I32"},
                                     {DType::u8, "U8"}};

bool dtype_from_name(const std::string& name, DType& out) {
  for (const DTypeName& d : kDTypeNames) {
    if (name == d.name) {
      out = d.dtype;
      return true;
    }
  }
  return false;
}

template <typename... Args>
[[noreturn]] void fail(const std::string& source, const Args&... args) {
  throw Error(detail::concat_message(source, ": ", args...));
}

// A tensor's header entry after validation: every number is known to lie inside the buffer.
struct Entry {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

struct Layout {
  std::vector<Entry> entries;  // sorted by begin
  std::map<std::string, std::string> metadata;
  uint64_t buffer_start = 0;  // 8 + header length
};

// ---- recognising files that are not safetensors ----

// Files people rename or mistake for safetensors, recognised by their first bytes so the message
// can say what the file is. Nothing in them is ever interpreted.
const char* foreign_format(const uint8_t* p, size_t size) {
  if (size >= 4 && std::memcmp(p, "PK\x03\x04", 4) == 0)
    return "a zip archive (a PyTorch .pt/.pth checkpoint? convert it with nn-convert)";
  if (size >= 8 && std::memcmp(p, "\x89HDF\r\n\x1a\n", 8) == 0)
    return "an HDF5 file (Keras .h5 weights? convert them with nn-convert)";
  if (size >= 2 && p[0] == 0x80 && p[1] >= 2 && p[1] <= 5)
    return "a Python pickle (a legacy PyTorch checkpoint? convert it with nn-convert)";
  if (size >= 6 && std::memcmp(p, "\x93NUMPY", 6) == 0) return "a NumPy .npy file";
  return nullptr;
}

[[noreturn]] void not_safetensors(const std::string& source, const uint8_t* p, size_t size,
                                  const std::string& reason) {
  const char* foreign = foreign_format(p, size);
  if (foreign) fail(source, "not a safetensors file: it looks like ", foreign, " (", reason, ")");
  fail(source, "not a safetensors file: ", reason);
}

uint64_t load_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Offset of the first byte that does not start a well-formed UTF-8 sequence (overlong forms,
// surrogates and code points above U+10FFFF are ill-formed), or npos when the text is valid.
size_t find_invalid_utf8(const uint8_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    uint32_t min;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1Fu, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0Fu, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07u, min = 0x10000;
    } else {
      return i;
    }
    if (n - i < len) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string::npos;
}

// ---- the header ----

// Thrown from inside the JSON parser's callback; turned into an nn::Error naming the file.
struct HeaderShapeError {
  std::string message;
};

// Parses the header JSON. nlohmann::json keeps only one of two equal keys, so the callback sees
// every key as it is read and refuses duplicates (tensor names, fields, metadata keys). It also
// refuses nesting deeper than a safetensors header has (object > entry > shape array): a header
// of a million '[' would otherwise build a million nested arrays before failing.
json parse_header_json(const uint8_t* p, size_t n, const std::string& source) {
  std::vector<std::set<std::string>> open_objects;  // keys seen in each enclosing object
  struct Open {
    bool array;
    size_t elements;
  };
  std::vector<Open> open;  // every enclosing object and array, innermost last
  size_t values = 0;
  std::string current_tensor;
  auto in_entry = [&] {
    return current_tensor.empty() ? std::string() : ", in the entry \"" + current_tensor + "\"";
  };
  auto count_array_element = [&] {
    if (!open.empty() && open.back().array && ++open.back().elements > kMaxArrayElements)
      throw HeaderShapeError{"an array in the header has more than " + std::to_string(kMaxArrayElements) +
                             " elements (a shape of higher rank?)" + in_entry()};
  };
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    if (++values > kMaxHeaderValues)
      throw HeaderShapeError{"the header holds more than " + std::to_string(kMaxHeaderValues) +
                             " JSON values; far more than a safetensors header has"};
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth > 2)
          throw HeaderShapeError{
              "the header nests JSON deeper than a safetensors header (tensor entry > shape array) "
              "allows" + in_entry()};
        count_array_element();
        open.push_back({event == json::parse_event_t::array_start, 0});
        if (event == json::parse_event_t::object_start) open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!open.empty()) open.pop_back();
        if (event == json::parse_event_t::object_end && !open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::value:
        count_array_element();
        break;
      case json::parse_event_t::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        if (depth == 1) current_tensor = key;
        if (!open_objects.back().insert(key).second) {
          if (depth == 1) throw HeaderShapeError{"duplicate tensor name \"" + key + "\" in the header"};
          throw HeaderShapeError{"duplicate key \"" + key + "\" in the entry \"" + current_tensor + "\""};
        }
        break;
      }
      default:
        break;
    }
    return true;
  };
  const char* text = reinterpret_cast<const char*>(p);
  try {
    return json::parse(text, text + n, on_event);
  } catch (const HeaderShapeError& e) {
    fail(source, e.message);
  } catch (const json::exception& e) {
    fail(source, "the header is not valid JSON (", e.what(), ")");
  }
}

// A JSON value for an error message, cut short: headers can be large.
std::string brief(const json& value) {
  std::string s = value.dump();
  if (s.size() > 120) s = s.substr(0, 117) + "...";
  return s;
}

bool read_unsigned(const json& value, uint64_t& out) {
  if (value.is_number_unsigned()) {
    out = value.get<uint64_t>();
    return true;
  }
  if (value.is_number_integer() && value.get<int64_t>() >= 0) {  // "-0" parses as signed
    out = static_cast<uint64_t>(value.get<int64_t>());
    return true;
  }
  return false;
}

std::map<std::string, std::string> parse_metadata(const json& value, const std::string& source) {
  const char* rule = "\"__metadata__\" must be an object mapping strings to strings";
  if (!value.is_object()) fail(source, rule, ", but it is a JSON ", value.type_name());
  std::map<std::string, std::string> metadata;
  for (const auto& item : value.items()) {
    if (!item.value().is_string())
      fail(source, rule, ", but the value of \"", item.key(), "\" is a JSON ", item.value().type_name());
    metadata.emplace(item.key(), item.value().get<std::string>());
  }
  return metadata;
}

Entry parse_entry(const std::string& name, const json& value, uint64_t buffer_size,
                  const std::string& source) {
  if (name.empty()) fail(source, "empty tensor name in the header");
  const std::string where = "tensor \"" + name + "\"";
  if (!value.is_object())
    fail(source, where, ": the entry is not a JSON object (it is a JSON ", value.type_name(), ")");
  static const char* const kFields[] = {"dtype", "shape", "data_offsets"};
  for (const auto& item : value.items()) {
    if (std::find(std::begin(kFields), std::end(kFields), item.key()) == std::end(kFields))
      fail(source, where, ": unexpected field \"", item.key(),
           "\" (an entry has exactly dtype, shape and data_offsets)");
  }
  for (const char* field : kFields) {
    if (!value.contains(field)) fail(source, where, ": missing field \"", field, "\"");
  }

  Entry e;
  e.name = name;
  const json& dtype = value["dtype"];
  if (!dtype.is_string()) fail(source, where, ": dtype is not a string (", brief(dtype), ")");
  const std::string& dtype_name_in_file = dtype.get_ref<const std::string&>();
  if (!dtype_from_name(dtype_name_in_file, e.dtype))
    fail(source, where, ": unknown dtype \"", dtype_name_in_file,
         "\" (nn reads F32, F64, F16, BF16, I64, I32 and U8)");

  const json& shape = value["shape"];
  const char* shape_rule = ": shape must be an array of non-negative integers no larger than 2^53, got ";
  if (!shape.is_array()) fail(source, where, shape_rule, brief(shape));
  // Both the element count and the product of max(d, 1) (the outermost stride, which nn computes
  // for zero-size tensors too) must fit a signed 64-bit integer.
  int64_t numel = 1;
  int64_t stride_product = 1;
  for (const json& d : shape) {
    uint64_t dim = 0;
    if (!read_unsigned(d, dim) || dim > kMaxDimension) fail(source, where, shape_rule, brief(shape));
    int64_t sdim = static_cast<int64_t>(dim);
    if (__builtin_mul_overflow(numel, sdim, &numel) ||
        __builtin_mul_overflow(stride_product, std::max<int64_t>(sdim, 1), &stride_product))
      fail(source, where, ": shape ", brief(shape), " overflows 64 bits");
    e.shape.push_back(sdim);
  }
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(numel), static_cast<uint64_t>(dtype_size(e.dtype)),
                             &nbytes))
    fail(source, where, ": shape ", brief(shape), " of dtype ", dtype_name_in_file, " overflows 64 bits");

  const json& offsets = value["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !read_unsigned(offsets[0], e.begin) ||
      !read_unsigned(offsets[1], e.end))
    fail(source, where, ": data_offsets must be two non-negative integers [begin, end], got ",
         brief(offsets));
  if (e.begin > e.end)
    fail(source, where, ": data_offsets [", e.begin, ", ", e.end, "] run backwards (begin > end)");
  if (e.end > buffer_size)
    fail(source, where, ": data_offsets [", e.begin, ", ", e.end,
         "] point past the end of the data buffer (", buffer_size, " bytes)");
  if (e.end - e.begin != nbytes)
    fail(source, where, ": shape ", shape_str(e.shape), " of dtype ", dtype_name_in_file, " needs ",
         nbytes, " bytes, but data_offsets [", e.begin, ", ", e.end, "] span ", e.end - e.begin);
  return e;
}

// The tensors sorted by offset must tile [0, buffer_size) exactly: an overlap would let two
// tensors alias each other, and a hole or trailing bytes mean the header does not describe the
// file (the official implementation refuses both as well).
void check_tiling(const std::vector<Entry>& entries, uint64_t buffer_size, const std::string& source) {
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry& e : entries) {
    if (e.begin < covered)
      fail(source, "tensors \"", previous->name, "\" (bytes ", previous->begin, "..", previous->end,
           ") and \"", e.name, "\" (bytes ", e.begin, "..", e.end, ") overlap");
    if (e.begin > covered)
      fail(source, "hole in the data buffer: bytes ", covered, "..", e.begin,
           " belong to no tensor (the next tensor is \"", e.name, "\")");
    covered = e.end;
    previous = &e;
  }
  if (covered != buffer_size)
    fail(source, buffer_size - covered, " trailing bytes after the last tensor (the data buffer is ",
         buffer_size, " bytes, the tensors cover ", covered, ")");
}

// Validates everything about the file in p[0, size) and returns where each tensor lies.
Layout read_layout(const uint8_t* p, size_t size, const std::string& source) {
  if (size == 0) fail(source, "empty file (0 bytes), not a safetensors file");
  if (size < 8)
    not_safetensors(source, p, size,
                    "the file is " + std::to_string(size) +
                        " bytes, shorter than 8 bytes (the header length alone takes 8)");
  const uint64_t header_size = load_le64(p);
  if (header_size > kMaxHeaderBytes)
    not_safetensors(source, p, size,
                    "header length " + std::to_string(header_size) + " exceeds the limit of " +
                        std::to_string(kMaxHeaderBytes) + " bytes");
  if (header_size > size - 8)
    not_safetensors(source, p, size,
                    "header length " + std::to_string(header_size) + " is larger than the " +
                        std::to_string(size - 8) + " bytes that follow it");
  // A pickle can start with bytes that also read as a plausible header length; its "header"
  // then is not JSON, and the signature says more than a JSON syntax error would.
  if (foreign_format(p, size) && (header_size == 0 || p[8] != '{'))
    not_safetensors(source, p, size, "the header does not start with '{'");

  const uint8_t* header = p + 8;
  size_t bad = find_invalid_utf8(header, header_size);
  if (bad != std::string::npos) {
    char byte[8];
    std::snprintf(byte, sizeof(byte), "0x%02x", static_cast<unsigned>(header[bad]));
    fail(source, "the header is not valid UTF-8 (byte ", byte, " at header offset ", bad, ")");
  }
  json root = parse_header_json(header, header_size, source);
  if (!root.is_object())
    fail(source, "the header is not a JSON object (it is a JSON ", root.type_name(), ")");

  Layout layout;
  layout.buffer_start = 8 + header_size;
  const uint64_t buffer_size = size - layout.buffer_start;
  for (const auto& item : root.items()) {
    if (item.key() == "__metadata__") {
      layout.metadata = parse_metadata(item.value(), source);
    } else {
      layout.entries.push_back(parse_entry(item.key(), item.value(), buffer_size, source));
    }
  }
  std::sort(layout.entries.begin(), layout.entries.end(), [](const Entry& a, const Entry& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return a.name < b.name;
  });
  check_tiling(layout.entries, buffer_size, source);
  return layout;
}

// Builds the tensors of a validated layout. With an owner, aligned tensors alias `p` and keep the
// owner alive; unaligned ones (and all of them without an owner) are copied, because reading a
// float through a misaligned pointer is undefined behaviour.
SafetensorsFile make_file(const Layout& layout, uint8_t* p, const std::shared_ptr<void>& owner,
                          const std::string& source) {
  SafetensorsFile file;
  file.source = source;
  file.metadata = layout.metadata;
  file.tensors.reserve(layout.entries.size());
  for (const Entry& e : layout.entries) {
    uint8_t* data = p + layout.buffer_start + e.begin;
    const size_t nbytes = static_cast<size_t>(e.end - e.begin);
    const bool aligned = reinterpret_cast<uintptr_t>(data) % dtype_size(e.dtype) == 0;
    Tensor t;
    if (owner && aligned && nbytes > 0) {
      t = from_blob(data, e.shape, e.dtype, owner);
    } else {
      t = empty(e.shape, e.dtype);
      if (nbytes > 0) std::memcpy(t.raw_data(), data, nbytes);
    }
    file.tensors.emplace_back(e.name, std::move(t));
  }
  return file;
}

// ---- files ----

std::string errno_text(int err) { return std::strerror(err); }

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }
  // Closes now and reports close()'s own error: some filesystems report write errors only there.
  int close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

// Unmaps the file when the last tensor that aliases it goes away.
struct Mapping {
  void* address;
  size_t size;
  Mapping(void* a, size_t s) : address(a), size(s) {}
  ~Mapping() { ::munmap(address, size); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
};

void write_all(int fd, const void* data, size_t size, const std::string& path, const std::string& tmp) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot save safetensors file " + path, "writing ", tmp, " failed: ", errno_text(errno));
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

std::string parent_directory(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Removes the temporary file unless the write reached the rename.
class TempFileGuard {
 public:
  explicit TempFileGuard(std::string path) : path_(std::move(path)) {}
  ~TempFileGuard() {
    if (!committed_) ::unlink(path_.c_str());
  }
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;
  void commit() { committed_ = true; }

 private:
  std::string path_;
  bool committed_ = false;
};

std::string build_header(const std::vector<std::pair<std::string, Tensor>>& tensors,
                         const std::map<std::string, std::string>& metadata,
                         std::vector<Tensor>& host, const std::string& context) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    NN_CHECK(!name.empty(), context, ": empty tensor name");
    NN_CHECK(name != "__metadata__", context, ": \"__metadata__\" is reserved and cannot name a tensor");
    NN_CHECK(names.insert(name).second, context, ": duplicate tensor name \"", name, "\"");
    NN_CHECK(t.defined(), context, ": tensor \"", name, "\" is undefined");
    Tensor c = t.detach().cpu().contiguous();
    const uint64_t nbytes = static_cast<uint64_t>(c.numel()) * dtype_size(c.dtype());
    header[name] = {{"dtype", safetensors_dtype_name(c.dtype())},
                    {"shape", c.shape()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    host.push_back(std::move(c));
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {  // a name or metadata string that is not UTF-8
    fail(context, "a tensor name or metadata string is not valid UTF-8 (", e.what(), ")");
  }
  // Spaces up to a multiple of 8 keep the data buffer 8-byte aligned, as the official writer does.
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace

const char* safetensors_dtype_name(DType dtype) {
  for (const DTypeName& d : kDTypeNames) {
    if (d.dtype == dtype) return d.name;
  }
  NN_ASSERT(false, "dtype without a safetensors name");
}

const Tensor& SafetensorsFile::at(const std::string& name) const {
  for (const auto& [n, t] : tensors) {
    if (n == name) return t;
  }
  std::string known;
  for (size_t i = 0; i < tensors.size() && i < 8; ++i) known += (i ? ", " : "") + tensors[i].first;
  if (tensors.size() > 8) known += ", ...";
  fail(source.empty() ? "<safetensors>" : source, "no tensor named \"", name, "\" (the file has ",
       tensors.size(), " tensors", tensors.empty() ? "" : ": ", known, ")");
}

bool SafetensorsFile::contains(const std::string& name) const {
  return std::any_of(tensors.begin(), tensors.end(), [&](const auto& p) { return p.first == name; });
}

SafetensorsFile parse_safetensors(const void* data, size_t size, const std::string& source_name) {
  NN_CHECK(data != nullptr || size == 0, source_name, ": null data");
  const uint8_t* p = static_cast<const uint8_t*>(data);
  Layout layout = read_layout(p, size, source_name);
  return make_file(layout, const_cast<uint8_t*>(p), nullptr, source_name);
}

SafetensorsFile load_safetensors(const std::string& path) {
  // O_NONBLOCK so that opening a FIFO by mistake does not hang; it does not affect regular files.
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) fail(path, "cannot open: ", errno_text(errno));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) fail(path, "cannot stat: ", errno_text(errno));
  if (S_ISDIR(st.st_mode)) fail(path, "is a directory, not a safetensors file");
  if (!S_ISREG(st.st_mode)) fail(path, "is not a regular file, not a safetensors file");
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) read_layout(nullptr, 0, path);  // throws "empty file"

  // A private writable mapping: writes into tensors go to copy-on-write pages, never the file.
  // (If another process truncates the file while it is mapped, touching the lost pages raises
  // SIGBUS; safetensors files are written by rename, which never truncates a mapped file.)
  void* address = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd.get(), 0);
  if (address == MAP_FAILED) fail(path, "cannot map ", size, " bytes into memory: ", errno_text(errno));
  auto mapping = std::make_shared<Mapping>(address, size);
  uint8_t* p = static_cast<uint8_t*>(address);
  Layout layout = read_layout(p, size, path);
  return make_file(layout, p, mapping, path);
}

namespace {

// The dtype-ordered tensors, their host copies and the header, as every writer lays them out:
// wider dtypes first (stable, as the official writer does), so that with the header padded to 8
// bytes every tensor starts aligned to its element size and loads without a copy.
struct WriteLayout {
  std::string header;
  std::vector<Tensor> host;
};

WriteLayout lay_out(const std::vector<std::pair<std::string, Tensor>>& tensors,
               const std::map<std::string, std::string>& metadata, const std::string& context) {
  std::vector<std::pair<std::string, Tensor>> ordered(tensors.begin(), tensors.end());
  std::stable_sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) {
    return a.second.defined() && b.second.defined() && dtype_size(a.second.dtype()) > dtype_size(b.second.dtype());
  });
  WriteLayout layout;
  layout.host.reserve(ordered.size());
  layout.header = build_header(ordered, metadata, layout.host, context);
  return layout;
}

// Writes a file atomically: `write` fills the temporary file PATH.tmp.<pid>.<n> (same directory),
// which is fsynced and renamed over PATH; the directory is fsynced after. On failure the
// temporary file is removed and an existing PATH is left as it was.
void write_atomically(const std::string& path, const std::string& context,
                      const std::function<void(int fd, const std::string& tmp)>& write) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) fail(context, "it is a directory");

  // pid and a per-process counter: concurrent saves of one path never share a temporary file.
  static std::atomic<uint64_t> save_counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(save_counter++);
  FileDescriptor fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) fail(context, "cannot create ", tmp, ": ", errno_text(errno));
  TempFileGuard guard(tmp);
  write(fd.get(), tmp);
  if (::fsync(fd.get()) != 0) fail(context, "fsync of ", tmp, " failed: ", errno_text(errno));
  if (fd.close() != 0) fail(context, "closing ", tmp, " failed: ", errno_text(errno));
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    fail(context, "renaming ", tmp, " over it failed: ", errno_text(errno));
  guard.commit();

  // Make the rename itself durable. Some filesystems cannot fsync a directory (EINVAL); the data
  // is already in place then, so only real I/O errors are reported.
  const std::string dir = parent_directory(path);
  FileDescriptor dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0) fail(context, "cannot open directory ", dir, " to fsync it: ", errno_text(errno));
  if (::fsync(dir_fd.get()) != 0 && errno != EINVAL)
    fail(context, "fsync of directory ", dir, " failed: ", errno_text(errno));
}

void length_word_of(uint64_t n, uint8_t out[8]) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
}

}  // namespace

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::string context = "cannot save safetensors file " + path;
  const WriteLayout layout = lay_out(tensors, metadata, context);
  write_atomically(path, context, [&](int fd, const std::string& tmp) {
    uint8_t length_word[8];
    length_word_of(layout.header.size(), length_word);
    write_all(fd, length_word, 8, path, tmp);
    write_all(fd, layout.header.data(), layout.header.size(), path, tmp);
    for (const Tensor& t : layout.host) {
      const size_t nbytes = static_cast<size_t>(t.numel()) * dtype_size(t.dtype());
      if (nbytes > 0) write_all(fd, t.raw_data(), nbytes, path, tmp);
    }
  });
}

std::string serialize_safetensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  const WriteLayout layout = lay_out(tensors, metadata, "cannot serialize safetensors");
  uint8_t length_word[8];
  length_word_of(layout.header.size(), length_word);
  std::string out(reinterpret_cast<const char*>(length_word), 8);
  out += layout.header;
  for (const Tensor& t : layout.host) {
    const size_t nbytes = static_cast<size_t>(t.numel()) * dtype_size(t.dtype());
    if (nbytes > 0) out.append(static_cast<const char*>(t.raw_data()), nbytes);
  }
  return out;
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  const std::string context = "cannot write " + path;
  write_atomically(path, context, [&](int fd, const std::string& tmp) {
    if (!bytes.empty()) write_all(fd, bytes.data(), bytes.size(), path, tmp);
  });
}

namespace {

// Counts NaNs and infinities from the bit patterns (exponent all ones), which stays correct even
// if a build enables -ffast-math, where std::isnan may be folded to false.
template <typename Bits>
void count_non_finite(const void* data, int64_t n, Bits exponent_mask, Bits mantissa_mask,
                      int64_t& nans, int64_t& infs, int64_t& first) {
  const Bits* p = static_cast<const Bits*>(data);
  for (int64_t i = 0; i < n; ++i) {
    Bits b;
    std::memcpy(&b, p + i, sizeof(Bits));
    if ((b & exponent_mask) != exponent_mask) continue;
    if (b & mantissa_mask) ++nans;
    else ++infs;
    if (first < 0) first = i;
  }
}

}  // namespace

void check_finite(const SafetensorsFile& file) {
  for (const auto& [name, tensor] : file.tensors) {
    if (!is_floating(tensor.dtype())) continue;
    Tensor t = tensor.cpu().contiguous();
    int64_t nans = 0, infs = 0, first = -1;
    const int64_t n = t.numel();
    switch (t.dtype()) {
      case DType::f32:
        count_non_finite<uint32_t>(t.raw_data(), n, 0x7f800000u, 0x007fffffu, nans, infs, first);
        break;
      case DType::f64:
        count_non_finite<uint64_t>(t.raw_data(), n, 0x7ff0000000000000ull, 0x000fffffffffffffull, nans,
                                   infs, first);
        break;
      case DType::f16:
        count_non_finite<uint16_t>(t.raw_data(), n, 0x7c00, 0x03ff, nans, infs, first);
        break;
      case DType::bf16:
        count_non_finite<uint16_t>(t.raw_data(), n, 0x7f80, 0x007f, nans, infs, first);
        break;
      default:
        break;
    }
    if (first >= 0)
      fail(file.source.empty() ? "<safetensors>" : file.source, "tensor \"", name, "\" (shape ",
           shape_str(t.shape()), ", ", safetensors_dtype_name(t.dtype()), ") is not finite: ", nans,
           " NaN and ", infs, " infinite values, the first at flat index ", first);
  }
}

}  // namespace nn::io
