#include "converted_weights.h"

#include <set>

#include <nn/error.h>

namespace nn::weights {

void check_unique_names(const ConvertedWeights& weights, const std::string& source) {
  std::set<std::string> seen;
  for (const auto& [name, tensor] : weights.tensors)
    NN_CHECK(seen.insert(name).second, source, ": the tensor name '", name, "' occurs twice");
}

}  // namespace nn::weights
