// Shared by the weight-file fuzz targets: reads every byte of every tensor a reader returned, so
// AddressSanitizer sees any tensor that points outside its buffer or mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "nn/tensor.h"

inline uint64_t read_every_byte(const std::vector<std::pair<std::string, nn::Tensor>>& tensors) {
  uint64_t sum = 0;
  for (const auto& [name, tensor] : tensors) {
    sum += name.size();
    const nn::Tensor t = tensor.contiguous();
    const auto* p = static_cast<const uint8_t*>(t.raw_data());
    const size_t n = static_cast<size_t>(t.numel()) * nn::dtype_size(t.dtype());
    for (size_t i = 0; i < n; ++i) sum += p[i];
  }
  return sum;
}
