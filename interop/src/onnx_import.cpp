// ONNX import: the graph is checked and turned into chains of nn layers (one Sequential per chain
// from the graph input), with the optional ensemble head (Mean, Div or Mul by a constant, Sigmoid).
// Nothing is allocated from a size the file states before that size is checked against the bytes
// that are actually there; every shape is propagated and checked node by node.
#include "nn/onnx.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nn/error.h>
#include <nn/io/safetensors.h>
#include <nn/ops.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include "onnx_common.h"

namespace nn::onnx {

namespace {

using namespace detail;
namespace fs = std::filesystem;

// ---- reading tensors ----

// Elements of a shape, checked for negative dims and overflow against kMaxTensorElements.
int64_t checked_numel(const std::vector<int64_t>& dims, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : dims) {
    NN_CHECK(d >= 0, what, ": negative dimension ", d);
    NN_CHECK(d == 0 || n <= kMaxTensorElements / d, what, ": more than ", kMaxTensorElements, " elements");
    n *= d;
  }
  return n;
}

class Reader {
 public:
  Reader(const proto::ModelProto& model, std::string source, std::optional<fs::path> base_dir)
      : model_(model), source_(std::move(source)), base_dir_(std::move(base_dir)) {}

  ImportedModel read();

 private:
  [[noreturn]] void fail(const std::string& message) const { NN_CHECK(false, source_, ": ", message); }
  void check(bool ok, const std::string& message) const {
    if (!ok) fail(message);
  }

  Tensor tensor_from_proto(const proto::TensorProto& t, const std::string& what) const;
  std::string read_external(const proto::TensorProto& t, int64_t nbytes, const std::string& what) const;

  // Per node.
  const proto::AttributeProto* attribute(const proto::NodeProto& n, const std::string& name,
                                         proto::AttributeProto::AttributeType type) const;
  int64_t int_attribute(const proto::NodeProto& n, const std::string& name, int64_t fallback) const;
  double float_attribute(const proto::NodeProto& n, const std::string& name, double fallback) const;
  std::vector<int64_t> ints_attribute(const proto::NodeProto& n, const std::string& name) const;
  std::string string_attribute(const proto::NodeProto& n, const std::string& name, const std::string& fallback) const;
  void refuse_other_attributes(const proto::NodeProto& n, const std::set<std::string>& known) const;
  std::string describe(const proto::NodeProto& n) const {
    return "node '" + n.name() + "' (" + n.op_type() + ")";
  }
  const Tensor& constant(const proto::NodeProto& n, int index, const std::string& role) const;
  std::array<int64_t, 2> pool_padding(const proto::NodeProto& n, const std::vector<int64_t>& in,
                                      std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride) const;

  const proto::ModelProto& model_;
  std::string source_;
  std::optional<fs::path> base_dir_;
  // Initializers and Constant nodes, converted on first use (an unsupported element type is then
  // reported for the node that uses it).
  std::map<std::string, const proto::TensorProto*> constants_;
  mutable std::map<std::string, Tensor> converted_;
};

const proto::AttributeProto* Reader::attribute(const proto::NodeProto& n, const std::string& name,
                                               proto::AttributeProto::AttributeType type) const {
  const proto::AttributeProto* found = nullptr;
  for (const auto& a : n.attribute()) {
    if (a.name() != name) continue;
    check(found == nullptr, describe(n) + ": the attribute '" + name + "' is given twice");
    found = &a;
  }
  if (found && found->type() != type && found->type() != proto::AttributeProto::UNDEFINED)
    fail(describe(n) + ": the attribute '" + name + "' has the wrong type");
  return found;
}

int64_t Reader::int_attribute(const proto::NodeProto& n, const std::string& name, int64_t fallback) const {
  const auto* a = attribute(n, name, proto::AttributeProto::INT);
  return a ? a->i() : fallback;
}

double Reader::float_attribute(const proto::NodeProto& n, const std::string& name, double fallback) const {
  const auto* a = attribute(n, name, proto::AttributeProto::FLOAT);
  return a ? a->f() : fallback;
}

std::vector<int64_t> Reader::ints_attribute(const proto::NodeProto& n, const std::string& name) const {
  const auto* a = attribute(n, name, proto::AttributeProto::INTS);
  if (!a) return {};
  return {a->ints().begin(), a->ints().end()};
}

std::string Reader::string_attribute(const proto::NodeProto& n, const std::string& name,
                                     const std::string& fallback) const {
  const auto* a = attribute(n, name, proto::AttributeProto::STRING);
  return a ? a->s() : fallback;
}

void Reader::refuse_other_attributes(const proto::NodeProto& n, const std::set<std::string>& known) const {
  for (const auto& a : n.attribute())
    check(known.count(a.name()) > 0, describe(n) + ": the attribute '" + a.name() + "' is not supported");
}

std::string Reader::read_external(const proto::TensorProto& t, int64_t nbytes, const std::string& what) const {
  check(base_dir_.has_value(), what + ": external data is refused for a model read from memory");
  std::string location;
  int64_t offset = 0, length = -1;
  for (const auto& e : t.external_data()) {
    if (e.key() == "location") {
      location = e.value();
    } else if (e.key() == "offset" || e.key() == "length") {
      const std::string& v = e.value();
      check(!v.empty() && v.size() <= 18 && v.find_first_not_of("0123456789") == std::string::npos,
            what + ": external data " + e.key() + " '" + v + "' is not a number");
      (e.key() == "offset" ? offset : length) = std::stoll(v);
    }
  }
  check(!location.empty(), what + ": external data without a location");
  const fs::path rel(location);
  check(rel.is_relative() && !location.empty() && location.find('\0') == std::string::npos,
        what + ": external data location '" + location + "' is not a relative path");
  for (const auto& part : rel) check(part != "..", what + ": external data location '" + location + "' leaves the model's folder");
  std::error_code ec;
  const fs::path base = fs::canonical(*base_dir_, ec);
  check(!ec, what + ": cannot resolve the model's folder");
  const fs::path file = fs::weakly_canonical(base / rel, ec);
  check(!ec, what + ": cannot resolve external data location '" + location + "'");
  const std::string base_text = base.string() + "/", file_text = file.string();
  check(file_text.compare(0, base_text.size(), base_text) == 0,
        what + ": external data location '" + location + "' leaves the model's folder");
  check(length < 0 || length == nbytes, what + ": external data length " + std::to_string(length) + " for " +
                                            std::to_string(nbytes) + " bytes of tensor data");
  const int fd = ::open(file_text.c_str(), O_RDONLY | O_CLOEXEC);
  check(fd >= 0, what + ": cannot open external data '" + location + "': " + std::strerror(errno));
  struct stat st;
  const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  const int64_t size = regular ? static_cast<int64_t>(st.st_size) : -1;
  if (!regular || offset > size || nbytes > size - offset) {
    ::close(fd);
    check(regular, what + ": external data '" + location + "' is not a regular file");
    fail(what + ": external data '" + location + "' holds " + std::to_string(size) + " bytes; the tensor needs " +
         std::to_string(nbytes) + " at offset " + std::to_string(offset));
  }
  std::string bytes(static_cast<size_t>(nbytes), '\0');
  int64_t done = 0;
  while (done < nbytes) {
    const ssize_t r = ::pread(fd, bytes.data() + done, static_cast<size_t>(nbytes - done), offset + done);
    if (r <= 0) {
      ::close(fd);
      fail(what + ": reading external data '" + location + "' failed");
    }
    done += r;
  }
  ::close(fd);
  return bytes;
}

Tensor Reader::tensor_from_proto(const proto::TensorProto& t, const std::string& what) const {
  const std::vector<int64_t> dims(t.dims().begin(), t.dims().end());
  check(dims.size() <= 8, what + ": " + std::to_string(dims.size()) + " dimensions");
  const int64_t numel = checked_numel(dims, source_ + ": " + what);
  check(t.has_segment() == false, what + ": segmented tensors are not supported");
  const bool external = t.data_location() == proto::TensorProto::EXTERNAL;
  // The data must be all there before the tensor is allocated: a few bytes may not declare 8 GB.
  int width = 0;
  int64_t typed = 0;
  const char* type_name = "";
  switch (t.data_type()) {
    case proto::TensorProto::FLOAT: width = 4, typed = t.float_data_size(), type_name = "float32"; break;
    case proto::TensorProto::DOUBLE: width = 8, typed = t.double_data_size(), type_name = "float64"; break;
    case proto::TensorProto::INT64: width = 8, typed = t.int64_data_size(), type_name = "int64"; break;
    case proto::TensorProto::INT32: width = 4, typed = t.int32_data_size(), type_name = "int32"; break;
    case proto::TensorProto::BOOL: width = 1, typed = t.int32_data_size(), type_name = "bool"; break;
    default:
      fail(what + ": element type " + std::to_string(t.data_type()) + " is not supported (float32 and float64 are)");
  }
  std::string external_bytes;
  if (external) {
    check(t.data_type() == proto::TensorProto::FLOAT, what + ": external data other than float32 is not supported");
    external_bytes = read_external(t, numel * 4, what);  // checks the file holds them before reading
  } else if (t.has_raw_data()) {
    check(static_cast<int64_t>(t.raw_data().size()) == numel * width,
          what + ": " + std::to_string(t.raw_data().size()) + " bytes of raw data for " + std::to_string(numel) + " " +
              type_name + " values");
  } else {
    check(typed == numel, what + ": " + std::to_string(typed) + " " + type_name + " values for a tensor of " +
                              std::to_string(numel));
  }
  Tensor out = empty(Shape(dims.begin(), dims.end()), f32);
  float* dst = out.data<float>();
  switch (t.data_type()) {
    case proto::TensorProto::FLOAT: {
      const int64_t nbytes = numel * 4;
      if (external) {
        std::memcpy(dst, external_bytes.data(), static_cast<size_t>(nbytes));
      } else if (t.has_raw_data()) {
        check(static_cast<int64_t>(t.raw_data().size()) == nbytes,
              what + ": " + std::to_string(t.raw_data().size()) + " bytes of raw data for " + std::to_string(numel) +
                  " float32 values");
        std::memcpy(dst, t.raw_data().data(), static_cast<size_t>(nbytes));
      } else {
        check(t.float_data_size() == numel, what + ": " + std::to_string(t.float_data_size()) +
                                                " float values for a tensor of " + std::to_string(numel));
        std::copy(t.float_data().begin(), t.float_data().end(), dst);
      }
      break;
    }
    case proto::TensorProto::DOUBLE: {
      check(!external, what + ": external float64 data is not supported");
      if (t.has_raw_data()) {
        check(static_cast<int64_t>(t.raw_data().size()) == numel * 8, what + ": raw data of the wrong size");
        for (int64_t i = 0; i < numel; ++i) {
          double v;
          std::memcpy(&v, t.raw_data().data() + 8 * i, 8);
          dst[i] = static_cast<float>(v);
        }
      } else {
        check(t.double_data_size() == numel, what + ": double data of the wrong size");
        for (int64_t i = 0; i < numel; ++i) dst[i] = static_cast<float>(t.double_data(static_cast<int>(i)));
      }
      break;
    }
    case proto::TensorProto::INT64:
    case proto::TensorProto::INT32:
    case proto::TensorProto::BOOL: {
      // Small integer constants (a Dropout's training_mode), as floats.
      check(!external, what + ": external integer data is not supported");
      const int width = t.data_type() == proto::TensorProto::INT64 ? 8 : t.data_type() == proto::TensorProto::INT32 ? 4 : 1;
      if (t.has_raw_data()) {
        check(static_cast<int64_t>(t.raw_data().size()) == numel * width, what + ": raw data of the wrong size");
        for (int64_t i = 0; i < numel; ++i) {
          int64_t v = 0;
          if (width == 8) {
            std::memcpy(&v, t.raw_data().data() + 8 * i, 8);
          } else if (width == 4) {
            int32_t v32;
            std::memcpy(&v32, t.raw_data().data() + 4 * i, 4);
            v = v32;
          } else {
            v = static_cast<uint8_t>(t.raw_data()[static_cast<size_t>(i)]);
          }
          dst[i] = static_cast<float>(v);
        }
      } else if (width == 8) {
        check(t.int64_data_size() == numel, what + ": int64 data of the wrong size");
        for (int64_t i = 0; i < numel; ++i) dst[i] = static_cast<float>(t.int64_data(static_cast<int>(i)));
      } else {
        check(t.int32_data_size() == numel, what + ": int32 data of the wrong size");
        for (int64_t i = 0; i < numel; ++i) dst[i] = static_cast<float>(t.int32_data(static_cast<int>(i)));
      }
      break;
    }
    default:
      fail(what + ": element type " + std::to_string(t.data_type()) + " is not supported (float32 and float64 are)");
  }
  return out;
}

const Tensor& Reader::constant(const proto::NodeProto& n, int index, const std::string& role) const {
  check(index < n.input_size() && !n.input(index).empty(), describe(n) + ": no " + role + " input");
  const std::string& name = n.input(index);
  auto it = constants_.find(name);
  check(it != constants_.end(), describe(n) + ": the " + role + " '" + name +
                                    "' is not an initializer (computed weights are not supported)");
  auto done = converted_.find(name);
  if (done == converted_.end())
    done = converted_.emplace(name, tensor_from_proto(*it->second, describe(n) + ": " + role + " '" + name + "'")).first;
  return done->second;
}

// Symmetric padding from pads / auto_pad (asymmetric padding has no nn counterpart).
std::array<int64_t, 2> Reader::pool_padding(const proto::NodeProto& n, const std::vector<int64_t>& in,
                                            std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride) const {
  const std::string auto_pad = string_attribute(n, "auto_pad", "NOTSET");
  const std::vector<int64_t> pads = ints_attribute(n, "pads");
  std::array<int64_t, 2> p{0, 0};
  if (auto_pad == "NOTSET") {
    if (!pads.empty()) {
      check(pads.size() == 4, describe(n) + ": pads must have 4 values for 2-D, got " + std::to_string(pads.size()));
      check(pads[0] == pads[2] && pads[1] == pads[3],
            describe(n) + ": asymmetric padding is not supported");
      p = {pads[0], pads[1]};
    }
  } else if (auto_pad == "VALID") {
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    for (int a = 0; a < 2; ++a) {
      check(in[2 + a] > 0, describe(n) + ": auto_pad SAME needs a static spatial size");
      const int64_t out = (in[2 + a] + stride[a] - 1) / stride[a];
      const int64_t total = std::max<int64_t>((out - 1) * stride[a] + kernel[a] - in[2 + a], 0);
      check(total % 2 == 0, describe(n) + ": auto_pad " + auto_pad + " pads asymmetrically here (not supported)");
      p[a] = total / 2;
    }
  } else {
    fail(describe(n) + ": auto_pad '" + auto_pad + "' is not supported");
  }
  for (int a = 0; a < 2; ++a) check(p[a] >= 0 && p[a] <= 1 << 20, describe(n) + ": bad padding");
  return p;
}

// Output side of a convolution or pooling window (floor, or ceil as PyTorch's ceil_mode), or -1 for
// a symbolic input.
int64_t window_output(int64_t in, int64_t k, int64_t s, int64_t p, bool ceil_mode) {
  if (in < 0) return -1;
  const int64_t span = in + 2 * p - k;
  if (span < 0) return 0;
  int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;  // the last window must start inside the input
  return out;
}

// ---- the graph ----

// A value flowing through the graph: the output of chain `member` (its current end), or of the head.
struct Value {
  enum Kind { kChain, kMean, kScaled, kShifted, kProbability } kind = kChain;
  int member = -1;
  std::vector<int64_t> shape;  // -1: symbolic
  bool consumed = false;
};

ImportedModel Reader::read() {
  ImportedModel out;
  // The model and its opset.
  check(model_.ir_version() >= 3 && model_.ir_version() <= 12,
        "IR version " + std::to_string(model_.ir_version()) + " is not supported (3-12 are)");
  int64_t opset = -1;
  for (const auto& o : model_.opset_import()) {
    if (o.domain().empty() || o.domain() == "ai.onnx") {
      check(opset < 0, "the default opset is imported twice");
      opset = o.version();
    }
  }
  check(opset >= kMinImportOpset && opset <= kMaxImportOpset,
        "opset " + std::to_string(opset) + " is not supported (" + std::to_string(kMinImportOpset) + "-" +
            std::to_string(kMaxImportOpset) + " are)");
  out.opset = opset;
  out.producer = model_.producer_name() + (model_.producer_version().empty() ? "" : " " + model_.producer_version());
  check(model_.functions_size() == 0, "model-local functions are not supported");

  std::string blob;
  for (const auto& e : model_.metadata_props()) {
    check(!out.metadata.count(e.key()) && !(e.key() == kExtraTensorsKey && !blob.empty()),
          "the metadata key '" + e.key() + "' is given twice");
    if (e.key() == kExtraTensorsKey)
      blob = e.value();
    else
      out.metadata[e.key()] = e.value();
  }

  const proto::GraphProto& g = model_.graph();
  check(g.sparse_initializer_size() == 0, "sparse initializers are not supported");
  std::map<std::string, std::string> initializer_names;  // name -> itself (file order kept separately)
  for (const auto& t : g.initializer()) {
    check(!t.name().empty(), "an initializer has no name");
    check(!constants_.count(t.name()), "the initializer '" + t.name() + "' is given twice");
    constants_.emplace(t.name(), &t);
  }

  // The input: the one graph input that is not an initializer (older exporters list those too).
  std::map<std::string, Value> values;
  const proto::ValueInfoProto* input = nullptr;
  for (const auto& in : g.input()) {
    if (constants_.count(in.name())) continue;
    check(input == nullptr, "the graph has more than one input ('" + (input ? input->name() : "") + "' and '" +
                                in.name() + "'); one image tensor is supported");
    input = &in;
  }
  check(input != nullptr && !input->name().empty(), "the graph has no input");
  check(input->type().has_tensor_type() && input->type().tensor_type().elem_type() == proto::TensorProto::FLOAT,
        "the input '" + input->name() + "' is not a float32 tensor");
  const auto& shape = input->type().tensor_type().shape();
  check(shape.dim_size() >= 2 && shape.dim_size() <= 4,
        "the input '" + input->name() + "' has " + std::to_string(shape.dim_size()) + " dimensions; 2 to 4 are supported");
  for (const auto& d : shape.dim()) {
    const int64_t v = d.has_dim_value() ? d.dim_value() : -1;
    check(v == -1 || (v > 0 && v <= (int64_t{1} << 24)), "the input's dimension " + std::to_string(v) + " is out of range");
    out.input_shape.push_back(v);
  }
  for (size_t d = 1; d < out.input_shape.size(); ++d)
    check(out.input_shape[d] > 0, "the input '" + input->name() + "' must have static sizes after the batch dimension");
  out.input_name = input->name();
  out.largest_activation = checked_numel(std::vector<int64_t>(out.input_shape.begin() + 1, out.input_shape.end()), source_);
  const std::string input_name = input->name();

  std::vector<std::vector<std::string>> layer_tensors;  // per module added: its tensors' file names, in state order
  std::vector<int> layer_member;
  std::vector<std::string> mean_output;
  int head_stage = 0;  // 0: chains, 1: mean taken, 2: scaled (and perhaps shifted by a bias), 3: probability

  for (const auto& n : g.node()) {
    const std::string& op = n.op_type();
    check(n.domain().empty() || n.domain() == "ai.onnx",
          describe(n) + ": the domain '" + n.domain() + "' is not supported");
    check(n.output_size() >= 1 && !n.output(0).empty(), describe(n) + ": no output");
    for (const auto& o : n.output())
      check(o.empty() || (!values.count(o) && !constants_.count(o) && o != input_name),
            describe(n) + ": the output '" + o + "' is defined twice");
    if (op == "Constant") {
      check(n.output_size() == 1 && n.input_size() == 0, describe(n) + ": needs no input and one output");
      const auto* v = attribute(n, "value", proto::AttributeProto::TENSOR);
      check(v != nullptr && n.attribute_size() == 1, describe(n) + ": only a 'value' tensor is supported");
      constants_.emplace(n.output(0), &v->t());
      continue;
    }
    if (op == "Identity" && n.input_size() == 1 && constants_.count(n.input(0))) {
      // A constant under a second name (torch.onnx.export shares equal initializers this way).
      check(n.output_size() == 1, describe(n) + ": one output");
      constants_.emplace(n.output(0), constants_.at(n.input(0)));
      continue;
    }
    if (op == "Mean") {
      check(head_stage == 0 && n.input_size() >= 1 && n.output_size() == 1, describe(n) + ": a second Mean, or no inputs");
      std::set<int> members;
      std::vector<int64_t> s;
      for (const auto& in : n.input()) {
        auto it = values.find(in);
        check(it != values.end() && it->second.kind == Value::kChain && !it->second.consumed,
              describe(n) + ": the input '" + in + "' is not the end of a chain from the graph input");
        check(members.insert(it->second.member).second, describe(n) + ": a chain is averaged twice");
        check(s.empty() || s == it->second.shape, describe(n) + ": the inputs differ in shape");
        s = it->second.shape;
        it->second.consumed = true;
      }
      check(static_cast<int>(members.size()) == static_cast<int>(out.members.size()),
            describe(n) + ": averages " + std::to_string(members.size()) + " of the " +
                std::to_string(out.members.size()) + " chains; every chain must end here");
      values[n.output(0)] = Value{Value::kMean, -1, s};
      out.averaged = true;
      head_stage = 1;
      continue;
    }
    check(n.input_size() >= 1, describe(n) + ": no input");
    auto src = values.end();
    if (n.input(0) == input_name) {
      // A new chain from the graph input.
      out.members.push_back(std::make_shared<Sequential>());
      Value v{Value::kChain, static_cast<int>(out.members.size()) - 1, out.input_shape};
      check(head_stage == 0, describe(n) + ": a chain starts after the ensemble head");
      check(out.members.size() <= 64, "more than 64 chains from the input");
      src = values.emplace("\x01" + std::to_string(v.member), v).first;  // a private name for the input's copy
    } else {
      src = values.find(n.input(0));
      check(src != values.end(), describe(n) + ": the input '" + n.input(0) +
                                     "' is not computed before it (nodes must be in topological order)");
    }
    Value& in = src->second;
    check(!in.consumed, describe(n) + ": the value '" + n.input(0) +
                            "' feeds more than one node; only chains (and their mean) are supported");
    in.consumed = true;
    const std::vector<int64_t>& s = in.shape;

    // The ensemble head: Div / Mul by a positive scalar, then Sigmoid.
    // The averaged output, or a single chain's end (then the first output), scaled by a constant.
    const bool scales_mean = in.kind != Value::kChain;
    const bool scales_chain = in.kind == Value::kChain && out.members.size() == 1 && n.input_size() == 2 &&
                              constants_.count(n.input(1));
    if ((op == "Div" || op == "Mul") && (scales_mean || scales_chain)) {
      if (scales_mean)
        check(in.kind == Value::kMean && n.input_size() == 2 && n.output_size() == 1,
              describe(n) + ": only the averaged output can be scaled");
      const Tensor& c = constant(n, 1, "divisor");
      check(c.numel() == 1, describe(n) + ": the constant must be a scalar");
      const double v = c.item<double>();
      check(std::isfinite(v) && v > 0, describe(n) + ": the constant must be positive");
      out.temperature = op == "Div" ? v : 1.0 / v;
      if (!scales_mean) mean_output = {n.input(0)};
      values[n.output(0)] = Value{Value::kScaled, -1, s};
      head_stage = 2;
      continue;
    }
    if (op == "Add" && in.kind == Value::kScaled) {
      check(n.input_size() == 2 && n.output_size() == 1, describe(n) + ": one bias after the scaling");
      const Tensor& c = constant(n, 1, "bias");
      check(c.numel() == 1, describe(n) + ": the bias must be a scalar");
      const double v = c.item<double>();
      check(std::isfinite(v), describe(n) + ": the bias must be finite");
      out.bias = v;
      values[n.output(0)] = Value{Value::kShifted, -1, s};
      continue;
    }
    if (op == "Sigmoid" && (in.kind == Value::kScaled || in.kind == Value::kShifted)) {
      check(n.output_size() == 1, describe(n) + ": one output");
      values[n.output(0)] = Value{Value::kProbability, -1, s};
      out.probability_name = n.output(0);
      head_stage = 3;
      continue;
    }
    check(in.kind == Value::kChain, describe(n) + ": only a Div or Mul by a constant, an Add of one and a Sigmoid may follow the mean");

    // A layer extending the chain.
    const int k = in.member;
    Sequential& chain = *out.members[k];
    const size_t before = chain.size();
    std::vector<int64_t> y = s;
    std::vector<std::string> names;  // the file's names of the module's tensors, in state_dict order
    auto one_output = [&]() { check(n.output_size() == 1, describe(n) + ": only one output is supported"); };
    if (op == "Conv") {
      one_output();
      refuse_other_attributes(n, {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"});
      check(s.size() == 4, describe(n) + ": the input is not (N, C, H, W)");
      const Tensor& w = constant(n, 1, "weight");
      check(w.dim() == 4 && w.numel() > 0, describe(n) + ": the weight is not (O, C, KH, KW)");
      check(int_attribute(n, "group", 1) == 1, describe(n) + ": grouped convolution is not supported");
      for (int64_t d : ints_attribute(n, "dilations")) check(d == 1, describe(n) + ": dilation is not supported");
      check(w.size(1) == s[1], describe(n) + ": the weight expects " + std::to_string(w.size(1)) +
                                   " input channels, the input has " + std::to_string(s[1]));
      const std::vector<int64_t> ks = ints_attribute(n, "kernel_shape");
      check(ks.empty() || (ks.size() == 2 && ks[0] == w.size(2) && ks[1] == w.size(3)),
            describe(n) + ": kernel_shape disagrees with the weight");
      std::vector<int64_t> st = ints_attribute(n, "strides");
      if (st.empty()) st = {1, 1};
      check(st.size() == 2 && st[0] >= 1 && st[1] >= 1 && st[0] <= 4096 && st[1] <= 4096, describe(n) + ": bad strides");
      const std::array<int64_t, 2> kernel{w.size(2), w.size(3)}, stride{st[0], st[1]};
      const auto pad = pool_padding(n, s, kernel, stride);
      Tensor b;
      if (n.input_size() > 2 && !n.input(2).empty()) {
        b = constant(n, 2, "bias");
        check(b.dim() == 1 && b.size(0) == w.size(0), describe(n) + ": the bias is not (O)");
      }
      check(n.input_size() <= 3, describe(n) + ": too many inputs");
      auto conv = std::make_shared<Conv2d>(w.size(1), w.size(0), kernel, stride, pad, b.defined());
      conv->weight().detach().copy_(w);
      names.push_back(n.input(1));
      if (b.defined()) {
        conv->bias().detach().copy_(b);
        names.push_back(n.input(2));
      }
      chain.push_back(conv);
      y = {s[0], w.size(0), window_output(s[2], kernel[0], stride[0], pad[0], false),
           window_output(s[3], kernel[1], stride[1], pad[1], false)};
      check(y[2] != 0 && y[3] != 0, describe(n) + ": the kernel is larger than the padded input");
    } else if (op == "Gemm") {
      one_output();
      refuse_other_attributes(n, {"alpha", "beta", "transA", "transB"});
      check(s.size() == 2, describe(n) + ": the input is not (N, features)");
      check(float_attribute(n, "alpha", 1) == 1 && float_attribute(n, "beta", 1) == 1 && int_attribute(n, "transA", 0) == 0,
            describe(n) + ": only alpha = beta = 1 and transA = 0 are supported");
      const int64_t trans_b = int_attribute(n, "transB", 0);
      check(trans_b == 0 || trans_b == 1, describe(n) + ": transB must be 0 or 1");
      const Tensor& w = constant(n, 1, "weight");
      check(w.dim() == 2 && w.numel() > 0, describe(n) + ": the weight is not 2-D");
      const Tensor weight = trans_b ? w : w.t().contiguous();  // (out, in)
      check(weight.size(1) == s[1], describe(n) + ": the weight expects " + std::to_string(weight.size(1)) +
                                        " features, the input has " + std::to_string(s[1]));
      Tensor b;
      if (n.input_size() > 2 && !n.input(2).empty()) {
        b = constant(n, 2, "bias");
        check(b.numel() == weight.size(0) && (b.dim() == 1 || (b.dim() == 2 && b.size(0) == 1)),
              describe(n) + ": the bias is not (out) (broadcasting a bias is not supported)");
      }
      check(n.input_size() <= 3, describe(n) + ": too many inputs");
      auto linear = std::make_shared<Linear>(weight.size(1), weight.size(0), b.defined());
      linear->weight().detach().copy_(weight);
      names.push_back(n.input(1));
      if (b.defined()) {
        linear->bias().detach().copy_(b.reshape({weight.size(0)}));
        names.push_back(n.input(2));
      }
      chain.push_back(linear);
      y = {s[0], weight.size(0)};
    } else if (op == "BatchNormalization") {
      refuse_other_attributes(n, {"epsilon", "momentum", "training_mode", "spatial"});
      check(n.output_size() == 1, describe(n) + ": training outputs (running statistics) are not supported");
      check(int_attribute(n, "training_mode", 0) == 0, describe(n) + ": training mode is not supported");
      check(int_attribute(n, "spatial", 1) == 1, describe(n) + ": spatial = 0 is not supported");
      check(s.size() >= 2 && s.size() <= 4, describe(n) + ": the input must have 2 to 4 dimensions");
      check(n.input_size() == 5, describe(n) + ": needs X, scale, B, mean and var");
      const double eps = float_attribute(n, "epsilon", 1e-5);
      const double momentum = float_attribute(n, "momentum", 0.9);
      check(std::isfinite(eps) && eps > 0 && std::isfinite(momentum) && momentum >= 0 && momentum <= 1,
            describe(n) + ": epsilon must be positive and momentum in [0, 1]");
      const int64_t c = s[1];
      const char* roles[] = {"scale", "B", "mean", "var"};
      // The file's tensors are checked before the layer is made: C comes from the declared input,
      // which costs nothing to state.
      for (int i = 0; i < 4; ++i) {
        const Tensor& t = constant(n, i + 1, roles[i]);
        check(t.dim() == 1 && t.size(0) == c, describe(n) + ": " + roles[i] + " is not (C) with C = " + std::to_string(c));
      }
      std::shared_ptr<BatchNorm> bn;
      if (s.size() == 4)
        bn = std::make_shared<BatchNorm2d>(c, eps, 1.0 - momentum);
      else
        bn = std::make_shared<BatchNorm1d>(c, eps, 1.0 - momentum);
      const Tensor* targets[] = {&bn->weight(), &bn->bias(), &bn->running_mean(), &bn->running_var()};
      for (int i = 0; i < 4; ++i) {
        targets[i]->detach().copy_(constant(n, i + 1, roles[i]));
        names.push_back(n.input(i + 1));
      }
      const auto var = bn->running_var().to_vector<float>();
      for (float v : var) check(std::isfinite(v) && v >= 0, describe(n) + ": a variance is negative or not finite");
      names.push_back("");  // num_batches_tracked: not in ONNX
      chain.push_back(bn);
    } else if (op == "MaxPool" || op == "AveragePool") {
      one_output();
      refuse_other_attributes(n, {"kernel_shape", "strides", "pads", "ceil_mode", "auto_pad", "dilations",
                                  "storage_order", "count_include_pad"});
      check(s.size() == 4, describe(n) + ": the input is not (N, C, H, W)");
      const std::vector<int64_t> ks = ints_attribute(n, "kernel_shape");
      check(ks.size() == 2 && ks[0] >= 1 && ks[1] >= 1 && ks[0] <= 4096 && ks[1] <= 4096,
            describe(n) + ": kernel_shape must be 2 positive sizes");
      std::vector<int64_t> st = ints_attribute(n, "strides");
      if (st.empty()) st = {1, 1};
      check(st.size() == 2 && st[0] >= 1 && st[1] >= 1 && st[0] <= 4096 && st[1] <= 4096, describe(n) + ": bad strides");
      for (int64_t d : ints_attribute(n, "dilations")) check(d == 1, describe(n) + ": dilation is not supported");
      check(int_attribute(n, "storage_order", 0) == 0, describe(n) + ": storage_order 1 is not supported");
      Pool2dOptions o;
      o.kernel = {ks[0], ks[1]};
      o.stride = {st[0], st[1]};
      o.padding = pool_padding(n, s, o.kernel, o.stride);
      o.ceil_mode = int_attribute(n, "ceil_mode", 0) != 0;
      o.count_include_pad = int_attribute(n, "count_include_pad", 0) != 0;
      for (int a = 0; a < 2; ++a)
        check(2 * o.padding[a] <= o.kernel[a], describe(n) + ": padding over half the kernel is not supported");
      if (op == "MaxPool")
        chain.push_back(std::make_shared<MaxPool2d>(o));
      else
        chain.push_back(std::make_shared<AvgPool2d>(o));
      y = {s[0], s[1], window_output(s[2], o.kernel[0], o.stride[0], o.padding[0], o.ceil_mode),
           window_output(s[3], o.kernel[1], o.stride[1], o.padding[1], o.ceil_mode)};
      check(y[2] != 0 && y[3] != 0, describe(n) + ": the window is larger than the padded input");
    } else if (op == "GlobalAveragePool") {
      one_output();
      check(s.size() == 4, describe(n) + ": the input is not (N, C, H, W)");
      chain.push_back(std::make_shared<AdaptiveAvgPool2d>(1));
      y = {s[0], s[1], 1, 1};
    } else if (op == "Relu" || op == "Sigmoid") {
      one_output();
      refuse_other_attributes(n, {});
      if (op == "Relu")
        chain.push_back(std::make_shared<ReLU>());
      else
        chain.push_back(std::make_shared<Sigmoid>());
    } else if (op == "Flatten") {
      one_output();
      refuse_other_attributes(n, {"axis"});
      int64_t axis = int_attribute(n, "axis", 1);
      if (axis < 0) axis += static_cast<int64_t>(s.size());
      check(axis == 1, describe(n) + ": only axis 1 is supported");
      if (s.size() > 2) {
        chain.push_back(std::make_shared<Flatten>(1, -1));
        int64_t f = 1;
        for (size_t d = 1; d < s.size(); ++d) f *= s[d];
        y = {s[0], f};
      }
    } else if (op == "Dropout" || op == "Identity") {
      check(n.output_size() == 1 || (op == "Dropout" && n.output_size() == 2 && n.output(1).empty()),
            describe(n) + ": the mask output is not supported");
      if (op == "Dropout") {
        refuse_other_attributes(n, {"ratio", "seed", "is_test"});
        if (n.input_size() > 2 && !n.input(2).empty()) {
          const Tensor& training = constant(n, 2, "training_mode");
          check(training.numel() == 1 && training.item<double>() == 0, describe(n) + ": training mode is not supported");
        }
      }
      // the identity in inference: the output is the chain's end
    } else {
      fail(describe(n) + ": the op type " + op + " is not supported (Conv, Gemm, BatchNormalization, MaxPool, "
           "AveragePool, GlobalAveragePool, Relu, Sigmoid, Flatten, Dropout, Identity, Constant, and Mean, Div, Mul, "
           "Sigmoid after the ensemble's chains)");
    }
    for (int64_t d : y) check(d == -1 || (d > 0 && d <= (int64_t{1} << 31)), describe(n) + ": a dimension out of range");
    if (y.size() > 1)
      out.largest_activation = std::max(
          out.largest_activation, checked_numel(std::vector<int64_t>(y.begin() + 1, y.end()), source_ + ": " + describe(n)));
    for (size_t m = before; m < chain.size(); ++m) {
      layer_tensors.push_back(names);
      layer_member.push_back(k);
    }
    values[n.output(0)] = Value{Value::kChain, k, y};
  }

  // The outputs: the chain's end or the mean first, then optionally the probability.
  check(g.output_size() >= 1 && g.output_size() <= 2, "the graph must have one or two outputs");
  check(!out.members.empty(), "the graph computes nothing from its input");
  const std::string& first = g.output(0).name();
  auto first_value = values.find(first);
  check(first_value != values.end(), "the output '" + first + "' is not computed by the graph");
  if (out.averaged) {
    check(first_value->second.kind == Value::kMean, "the first output '" + first + "' is not the chains' mean");
  } else {
    check(out.members.size() == 1 && first_value->second.kind == Value::kChain,
          "the first output '" + first + "' is not the end of the graph's one chain");
    check(!first_value->second.consumed || (!mean_output.empty() && mean_output[0] == first),
          "the first output '" + first + "' is not the end of its chain");
  }
  out.output_name = first;
  if (g.output_size() == 2) {
    check(head_stage == 3 && g.output(1).name() == out.probability_name,
          "the second output '" + g.output(1).name() + "' is not sigmoid(output / constant)");
  } else {
    check(head_stage <= 1, "the scaled output or probability is computed but not an output");
    out.temperature = 0;
    out.bias = 0;
    out.probability_name.clear();
  }
  for (const auto& [name, v] : values)
    check(v.consumed || name == first || name == out.probability_name || name[0] == '\x01',
          "the value '" + name + "' is computed but neither used nor an output");

  // Names: the file's, when every layer's tensors follow the state-dict pattern; else positional.
  const char* suffixes_bn[] = {".weight", ".bias", ".running_mean", ".running_var"};
  bool file_names = true;
  std::set<std::string> seen_prefixes;
  {
    size_t layer = 0;
    for (size_t k = 0; k < out.members.size() && file_names; ++k) {
      for (size_t i = 0; i < out.members[k]->size() && file_names; ++i, ++layer) {
        const auto& names = layer_tensors[layer];
        if (names.empty()) continue;
        const std::string& w = names[0];
        if (w.size() <= 7 || w.compare(w.size() - 7, 7, ".weight") != 0) {
          file_names = false;
          break;
        }
        const std::string prefix = w.substr(0, w.size() - 7);
        file_names = seen_prefixes.insert(prefix).second;
        const bool bn = names.size() == 5;
        for (size_t j = 1; j < names.size() && file_names; ++j) {
          if (bn && j == 4) continue;
          file_names = names[j] == prefix + (bn ? suffixes_bn[j] : ".bias");
        }
      }
    }
  }
  std::set<std::string> state_names, carried;  // carried: the tensors the graph holds
  size_t layer = 0;
  for (size_t k = 0; k < out.members.size(); ++k) {
    auto& chain = *out.members[k];
    chain.eval();
    for (size_t i = 0; i < chain.size(); ++i, ++layer) {
      const auto state = chain[i]->state_dict();
      const auto& names = layer_tensors[layer];
      for (size_t j = 0; j < state.size(); ++j) {
        std::string name;
        if (file_names && j < names.size() && !names[j].empty())
          name = names[j];
        else if (file_names)
          name = names[0].substr(0, names[0].size() - 7) + "." + state[j].first;  // num_batches_tracked
        else
          name = (out.members.size() > 1 ? std::to_string(k) + "." : "") + std::to_string(i) + "." + state[j].first;
        check(state_names.insert(name).second, "the tensor name '" + name + "' is used by two layers");
        if (j < names.size() && !names[j].empty()) carried.insert(name);
        out.state.emplace_back(name, state[j].second);
      }
    }
  }
  if (!blob.empty()) {
    const std::string bytes = base64_decode(blob, source_ + ": metadata " + kExtraTensorsKey);
    io::SafetensorsFile extra = io::parse_safetensors(bytes.data(), bytes.size(), source_ + " (" + kExtraTensorsKey + ")");
    for (const auto& entry : extra.tensors) {
      const std::string& name = entry.first;
      const Tensor& t = entry.second;
      auto it = std::find_if(out.state.begin(), out.state.end(), [&](const auto& e) { return e.first == name; });
      if (it != out.state.end()) {
        // Only a tensor the graph does not carry (num_batches_tracked) takes its value from the blob.
        check(!carried.count(name), "the extra tensor '" + name + "' has the name of a graph tensor");
        check(it->second.shape() == t.shape(), "the extra tensor '" + name + "' has the wrong shape");
        it->second.detach().copy_(t);
      } else {
        out.state.emplace_back(name, t);
      }
    }
  }
  return out;
}

ImportedModel parse(const std::string& bytes, const std::string& source, std::optional<fs::path> base_dir) {
  NN_CHECK(!bytes.empty(), source, ": the file is empty");
  NN_CHECK(static_cast<int64_t>(bytes.size()) < kMaxModelBytes, source, ": ", bytes.size(),
           " bytes, over the 2 GiB protobuf limit (large models keep their weights in external data)");
  proto::ModelProto model;
  google::protobuf::io::ArrayInputStream stream(bytes.data(), static_cast<int>(bytes.size()));
  google::protobuf::io::CodedInputStream coded(&stream);
  coded.SetTotalBytesLimit(INT_MAX);
  NN_CHECK(model.ParseFromCodedStream(&coded) && coded.ConsumedEntireMessage(), source,
           ": not an ONNX model (the protobuf does not parse)");
  NN_CHECK(model.has_graph(), source, ": not an ONNX model (no graph)");
  return Reader(model, source, std::move(base_dir)).read();
}

}  // namespace

Tensor ImportedModel::forward(const Tensor& x) const {
  NN_CHECK(!members.empty(), "ImportedModel: no network");
  Tensor sum;
  for (const auto& m : members) {
    Tensor y = (*m)(x);
    sum = sum.defined() ? add(sum, y) : y;
  }
  return members.size() > 1 ? mul(sum, 1.0 / static_cast<double>(members.size())) : sum;
}

Tensor ImportedModel::probability(const Tensor& x) const {
  NN_CHECK(temperature > 0, "ImportedModel: the graph has no probability output");
  return sigmoid(add(mul(forward(x), 1.0 / temperature), bias));
}

ImportedModel import_from_bytes(const std::string& bytes, const std::string& source) {
  return parse(bytes, source, std::nullopt);
}

ImportedModel import_model(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  NN_CHECK(!ec, path, ": cannot read: ", ec.message());
  NN_CHECK(static_cast<int64_t>(size) < kMaxModelBytes, path, ": ", size,
           " bytes, over the 2 GiB protobuf limit (large models keep their weights in external data)");
  std::ifstream in(path, std::ios::binary);
  NN_CHECK(in.good(), path, ": cannot open: ", std::strerror(errno));
  std::string bytes(static_cast<size_t>(size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  NN_CHECK(in.gcount() == static_cast<std::streamsize>(size), path, ": the file changed while it was read");
  return parse(bytes, path, fs::absolute(path).parent_path());
}

}  // namespace nn::onnx
