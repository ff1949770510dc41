// A fast zlib stream (RFC 1950/1951) for encode_png's level 1: run-length matches at distance 1
// (what zlib's Z_RLE strategy looks for) coded with dynamic Huffman codes, one block per 256 KiB of
// input (memory stays bounded whatever the input's size). About the size
// zlib's Z_RLE gives, at several times zlib's level-1 speed (measured: bench/README.md, "PNG
// encoding for the server"). Any zlib inflater reads it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace nn::data::detail {

// The zlib stream (2-byte header, deflate data, Adler-32) of data[0, n).
std::vector<uint8_t> deflate_rle(const uint8_t* data, size_t n);

}  // namespace nn::data::detail
