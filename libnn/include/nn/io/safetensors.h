// safetensors: the only weight/checkpoint format nn reads and writes at run time.
//
// Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
//   {"__metadata__": {"key": "value", ...},
//    "name": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...}
// then the data buffer; offsets are relative to the buffer's start and the tensors, sorted by
// offset, tile the buffer exactly. Data is little-endian, row-major.
//
// Reading validates the whole header (see docs/reliability.md items 1-3 and 5) before it creates a
// single tensor; every failure is an nn::Error naming the file and the problem. Writing is atomic:
// the previous file at the path survives any failure.
#pragma once

#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "nn/tensor.h"

namespace nn::io {

struct SafetensorsFile {
  std::vector<std::pair<std::string, Tensor>> tensors;  // in file order (sorted by data offset)
  std::map<std::string, std::string> metadata;          // the "__metadata__" map
  std::string source;                                   // the path (or name) it was read from

  // The tensor called `name`; nn::Error naming the missing tensor and the file otherwise.
  const Tensor& at(const std::string& name) const;
  bool contains(const std::string& name) const;
};

// Memory-maps PATH (private, writable copy-on-write mapping: writing into a loaded tensor never
// touches the file) and validates it; the tensors alias the mapping, which stays alive as long as
// any of them does. Tensors whose data is not aligned to their element size are copied instead.
SafetensorsFile load_safetensors(const std::string& path);

// The same validation on bytes in memory; the tensors are copies, `data` may be freed afterwards.
SafetensorsFile parse_safetensors(const void* data, size_t size,
                                  const std::string& source_name = "<memory>");

// Writes the tensors (any layout, any device; converted to contiguous CPU bytes), wider dtypes
// first and otherwise in the order given, so that every tensor is aligned to its element size;
// the header is padded by spaces to a multiple of 8 bytes. Atomic: writes PATH.tmp.<pid>.<n>
// in the same directory, fsyncs it, renames it over PATH and fsyncs the directory. On failure the
// temporary file is removed, an existing PATH is left as it was, and nn::Error names the path and
// the system's reason.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// The same for a state dict, written in its (sorted) key order. A template only so that a braced
// list, save_safetensors(path, {{"w", w}, {"b", b}}), unambiguously means the vector overload.
template <typename StateDict,
          typename = std::enable_if_t<std::is_same_v<StateDict, std::map<std::string, Tensor>>>>
void save_safetensors(const std::string& path, const StateDict& tensors,
                      const std::map<std::string, std::string>& metadata = {}) {
  save_safetensors(path, std::vector<std::pair<std::string, Tensor>>(tensors.begin(), tensors.end()),
                   metadata);
}

// The bytes save_safetensors would write (e.g. to embed tensors in another file).
std::string serialize_safetensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

// Writes `bytes` to PATH as save_safetensors writes (a temporary file in the same directory,
// fsynced and renamed over PATH): an existing PATH survives any failure. nn::Error names the path.
void write_file_atomically(const std::string& path, const std::string& bytes);

// Throws nn::Error naming the first floating-point tensor (in file order) that holds a NaN or an
// infinity, with the counts and the index of the first bad element. Integer tensors are skipped.
void check_finite(const SafetensorsFile& file);

// The safetensors dtype name ("F32", "BF16", ...) of an nn dtype.
const char* safetensors_dtype_name(DType dtype);

}  // namespace nn::io
