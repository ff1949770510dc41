// ONNX export and import (nn::onnx, library nn::onnx): models leave nn for onnxruntime, OpenVINO or
// TensorRT, and networks trained elsewhere come in, through the standard file format. The protobuf
// schema and parser are ONNX's own (Debian's libonnx-dev); the graph on either side is ours.
//
// The subset, both ways (opset 13 written; opsets 9-21 read):
//   Conv2d             <-> Conv (2-D, group 1, dilation 1; explicit or SAME/VALID auto_pad)
//   Linear             <-> Gemm (alpha = beta = 1, transA 0; transB 0 or 1 read, 1 written)
//   BatchNorm2d/1d     <-> BatchNormalization (eval mode: the running statistics)
//   MaxPool2d          <-> MaxPool (ceil_mode, padding; one output)
//   AdaptiveAvgPool2d   -> GlobalAveragePool (1x1 output) or AveragePool (input a multiple of the output)
//   AvgPool2d-like     <-  AveragePool / GlobalAveragePool
//   ReLU, Sigmoid      <-> Relu, Sigmoid
//   Flatten            <-> Flatten
//   Dropout, Identity   -> nothing (identity in inference); <- Dropout, Identity read as Identity
// and, for ensembles: the members' outputs averaged (Mean), divided by a temperature (Div), shifted
// by a calibration bias (Add; only when it is not 0) and passed through Sigmoid for a calibrated
// probability. Anything else is refused naming the node and its op
// type (import) or the module and its type (export).
//
// Tensors of a model that the graph does not use (BatchNorm's num_batches_tracked, a pneumonia
// model's out-of-distribution gate) travel inside the file as one safetensors blob in the metadata
// property "nn.extra_tensors", so export -> import gives back every tensor of the original file.
//
// Reading is hardened like the other parsers (docs/onnx.md): file and tensor sizes are checked before
// anything is allocated, every shape is propagated and checked through the graph, and external data
// is read only from files inside the model's folder (no absolute paths, no "..", no symlink out).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/module.h"
#include "nn/tensor.h"

namespace nn::onnx {

// The opset export writes, and the range import reads.
inline constexpr int64_t kExportOpset = 13;
inline constexpr int64_t kMinImportOpset = 9, kMaxImportOpset = 21;

struct ExportOptions {
  std::string input_name = "input";
  // The graph output: the (averaged) network output. With a temperature, a second output
  // `probability_name` = sigmoid(output / temperature + bias).
  std::string output_name = "output";
  std::string probability_name = "probability";
  double temperature = 0;     // > 0: add the probability output
  double bias = 0;            // the calibration bias (Platt scaling); needs a temperature when not 0
  bool dynamic_batch = true;  // the batch dimension is the symbol "batch" instead of the example's N
  std::map<std::string, std::string> metadata;  // the graph's metadata_props (preprocessing, threshold, ...)
  StateDict extra_tensors;                      // carried in "nn.extra_tensors" (see above)
  std::string graph_name = "nn";
};

// A network to export under a name prefix for its tensors ("member0." for an ensemble's first
// member, "" for a single network).
struct ExportMember {
  std::string prefix;
  Module* module = nullptr;
};

// Writes `model` (any module whose forward is a chain of the layers above, e.g. nn::models::VGG or a
// Sequential) as an ONNX file, tracing the chain with `example_input` (N, C, H, W) in eval mode.
// Initializers keep the state dict's names ("features.0.weight"). Checked with ONNX's checker before
// the file is written (atomically). Throws nn::Error naming the first module it cannot export.
void export_model(Module& model, const Tensor& example_input, const std::string& path,
                  const ExportOptions& options = {});
// An ensemble: the members run on the same input and their outputs are averaged (ONNX Mean).
void export_ensemble(const std::vector<ExportMember>& members, const Tensor& example_input, const std::string& path,
                     const ExportOptions& options = {});
// The same, to bytes (a serialized ModelProto) instead of a file.
std::string export_to_bytes(const std::vector<ExportMember>& members, const Tensor& example_input,
                            const ExportOptions& options = {});

// What import_model gives back: one Sequential per chain from the graph input (one for a chain
// graph; K for an ensemble whose outputs are averaged), in eval mode, float32 on the CPU.
struct ImportedModel {
  std::vector<std::shared_ptr<Sequential>> members;
  bool averaged = false;     // the first output is the mean of the members' outputs
  double temperature = 0;    // > 0: the graph also outputs sigmoid(output / temperature + bias)
  double bias = 0;
  std::string input_name, output_name, probability_name;
  std::vector<int64_t> input_shape;  // (N, C, H, W) as declared; -1 for a symbolic dimension
  // Every tensor, under the file's names when they follow the state-dict pattern ("x.weight",
  // "x.bias", "x.running_mean", ...; e.g. what torch.onnx.export and export_model write), otherwise
  // "<k>.<index>.weight" (member k, layer index); plus the "nn.extra_tensors" blob.
  StateDict state;
  std::map<std::string, std::string> metadata;  // the graph's metadata_props, minus the blob
  int64_t opset = 0;
  std::string producer;  // producer_name and producer_version
  // Elements per input image of the largest value the graph computes (from the declared sizes):
  // what one image costs in activation memory, before anything runs.
  int64_t largest_activation = 0;

  // The graph's first output for x (N, C, H, W): the member's, or the members' mean.
  Tensor forward(const Tensor& x) const;
  // sigmoid(forward(x) / temperature + bias); needs temperature > 0.
  Tensor probability(const Tensor& x) const;
};

// Reads an ONNX file; nn::Error naming the file and the first problem (an unsupported node names
// its name and op type).
ImportedModel import_model(const std::string& path);
// The same from bytes; external data is then refused. `source` names the bytes in errors.
ImportedModel import_from_bytes(const std::string& bytes, const std::string& source = "<bytes>");

// The largest file import_model reads (ONNX's protobuf limit), and the largest tensor.
inline constexpr int64_t kMaxModelBytes = int64_t{2} << 30;
inline constexpr int64_t kMaxTensorElements = int64_t{1} << 31;

}  // namespace nn::onnx
