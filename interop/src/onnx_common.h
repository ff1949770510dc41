// What the ONNX writer and reader share: the metadata key of the extra-tensor blob and its base64
// text form, and the protobuf headers with ONNX's namespace.
#pragma once

#include <onnx/onnx_pb.h>

#include <string>

namespace nn::onnx::detail {

namespace proto = ::ONNX_NAMESPACE;

// metadata_props key holding base64(safetensors bytes) of the tensors the graph does not use.
inline constexpr const char* kExtraTensorsKey = "nn.extra_tensors";
// The initializer name of an ensemble's temperature.
inline constexpr const char* kTemperatureName = "nn.temperature";
// The initializer name of its calibration bias.
inline constexpr const char* kCalibrationBiasName = "nn.calibration_bias";

std::string base64_encode(const std::string& bytes);
// Strict: only the standard alphabet, '=' padding at the end, length a multiple of 4; nn::Error
// naming `what` otherwise.
std::string base64_decode(const std::string& text, const std::string& what);

}  // namespace nn::onnx::detail
