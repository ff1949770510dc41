// What every reader in weights/ produces: tensors under torchvision's names (OIHW convolutions,
// (out, in) linear weights) and the safetensors __metadata__ to write with them.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nn/tensor.h>

namespace nn::weights {

struct ConvertedWeights {
  std::vector<std::pair<std::string, Tensor>> tensors;  // in the source file's order
  std::map<std::string, std::string> metadata;          // e.g. {"preprocessing": "caffe"}
};

// Metadata keys written by nn-convert.
inline constexpr const char* kMetaPreprocessing = "preprocessing";  // "torchvision" or "caffe"
inline constexpr const char* kMetaSourceFormat = "source_format";   // see each reader
inline constexpr const char* kMetaSourceFile = "source_file";       // the input's file name
inline constexpr const char* kMetaArchitecture = "architecture";    // "vgg16", ... when recognised

// Throws nn::Error when two tensors share a name (a malformed source file).
void check_unique_names(const ConvertedWeights& weights, const std::string& source);

}  // namespace nn::weights
