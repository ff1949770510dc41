// ONNX export: each member's chain of layers is traced with the example input (eval mode, no
// autograd) and written node by node; the shapes seen while tracing decide what adaptive pooling
// and function steps become. See nn/onnx.h for the subset.
#include "nn/onnx.h"

#include <onnx/checker.h>

#include <nn/autograd.h>
#include <nn/error.h>
#include <nn/io/safetensors.h>
#include <nn/ops.h>

#include <cmath>
#include <functional>
#include <set>

#include "onnx_common.h"

namespace nn::onnx {

namespace {

using namespace detail;

// A step of a member's chain, in forward order: a layer (module set) or a function between layers.
struct Leaf {
  std::string path;  // the module's dotted name within its member ("features.0")
  Module* module = nullptr;
  std::function<Tensor(const Tensor&)> function;
};

std::string join(const std::string& a, const std::string& b) { return a.empty() ? b : a + "." + b; }

void collect_leaves(Module& m, const std::string& path, std::vector<Leaf>& out) {
  std::vector<Step> steps = m.steps();
  if (steps.empty()) {
    out.push_back({path, &m, nullptr});
    return;
  }
  for (Step& step : steps) {
    if (step.module)
      collect_leaves(*step.module, join(path, step.name), out);
    else
      out.push_back({join(path, "<function>"), nullptr, step.function});
  }
}

class GraphWriter {
 public:
  explicit GraphWriter(proto::GraphProto& graph) : graph_(graph) {}

  // A fresh value name based on `base`.
  std::string value_name(const std::string& base) {
    std::string name = base.empty() ? "value" : base;
    for (int k = 1; !names_.insert(name).second; ++k) name = base + "_" + std::to_string(k);
    return name;
  }
  void reserve_name(const std::string& name) {
    NN_CHECK(names_.insert(name).second, "ONNX export: the name '", name, "' is used twice");
  }

  // Adds a float32 initializer (contiguous CPU copy of t) under `name`; returns the name.
  std::string initializer(const std::string& name, const Tensor& t) {
    reserve_name(name);
    const Tensor c = t.detach().to(Device::cpu()).to(f32).contiguous();
    proto::TensorProto* init = graph_.add_initializer();
    init->set_name(name);
    init->set_data_type(proto::TensorProto::FLOAT);
    for (int64_t d : c.shape()) init->add_dims(d);
    init->set_raw_data(static_cast<const char*>(c.raw_data()), static_cast<size_t>(c.numel()) * sizeof(float));
    used_.insert(name);
    return name;
  }

  proto::NodeProto& node(const std::string& op, const std::vector<std::string>& inputs, const std::string& output,
                         const std::string& node_name) {
    proto::NodeProto* n = graph_.add_node();
    n->set_op_type(op);
    n->set_name(node_name);
    for (const std::string& in : inputs) n->add_input(in);
    n->add_output(output);
    return *n;
  }

  static void set_ints(proto::NodeProto& n, const std::string& name, const std::vector<int64_t>& v) {
    proto::AttributeProto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(proto::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  static void set_int(proto::NodeProto& n, const std::string& name, int64_t v) {
    proto::AttributeProto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(proto::AttributeProto::INT);
    a->set_i(v);
  }
  static void set_float(proto::NodeProto& n, const std::string& name, double v) {
    proto::AttributeProto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(proto::AttributeProto::FLOAT);
    a->set_f(static_cast<float>(v));
  }

  const std::set<std::string>& used() const { return used_; }

 private:
  proto::GraphProto& graph_;
  std::set<std::string> names_, used_;
};

void set_pool_attributes(proto::NodeProto& n, const Pool2dOptions& o) {
  GraphWriter::set_ints(n, "kernel_shape", {o.kernel[0], o.kernel[1]});
  GraphWriter::set_ints(n, "strides", {o.stride[0] ? o.stride[0] : o.kernel[0], o.stride[1] ? o.stride[1] : o.kernel[1]});
  GraphWriter::set_ints(n, "pads", {o.padding[0], o.padding[1], o.padding[0], o.padding[1]});
  GraphWriter::set_int(n, "ceil_mode", o.ceil_mode ? 1 : 0);
}

// Writes one member's chain from `input`; returns the name of its output value and sets `out`
// to the traced output.
std::string write_member(GraphWriter& w, const ExportMember& member, const std::string& input, const Tensor& example,
                         Tensor& out) {
  std::vector<Leaf> leaves;
  collect_leaves(*member.module, "", leaves);
  std::string current = input;
  Tensor x = example;
  for (const Leaf& leaf : leaves) {
    const std::string where = join(member.prefix.empty() ? "" : member.prefix.substr(0, member.prefix.size() - 1),
                                   leaf.path.empty() ? "<model>" : leaf.path);
    const std::string param = member.prefix + leaf.path + (leaf.path.empty() ? "" : ".");  // "member0.features.0."
    const std::string node_name = member.prefix + (leaf.path.empty() ? "model" : leaf.path);
    Module* m = leaf.module;
    Tensor y = m ? m->forward(x) : leaf.function(x);
    auto next = [&](const std::string& op, std::vector<std::string> inputs) -> proto::NodeProto& {
      inputs.insert(inputs.begin(), current);
      const std::string out_name = w.value_name(node_name);
      proto::NodeProto& n = w.node(op, inputs, out_name, node_name);
      current = out_name;
      return n;
    };
    if (!m) {
      // A function step (VGG's flatten between avgpool and classifier): what it does to the shape says what it is.
      if (y.shape() == x.shape()) {
        // the identity
      } else if (x.dim() > 2 && y.dim() == 2 && y.size(0) == x.size(0) && y.numel() == x.numel()) {
        GraphWriter::set_int(next("Flatten", {}), "axis", 1);
      } else {
        NN_CHECK(false, "ONNX export: the function step after '", where, "' maps ", shape_str(x.shape()), " to ",
                 shape_str(y.shape()), ", which is neither a flatten nor the identity");
      }
    } else if (auto* conv = dynamic_cast<Conv2d*>(m)) {
      std::vector<std::string> inputs = {w.initializer(param + "weight", conv->weight())};
      if (conv->bias().defined()) inputs.push_back(w.initializer(param + "bias", conv->bias()));
      proto::NodeProto& n = next("Conv", inputs);
      const auto k = conv->kernel_size(), s = conv->stride(), p = conv->padding();
      GraphWriter::set_ints(n, "kernel_shape", {k[0], k[1]});
      GraphWriter::set_ints(n, "strides", {s[0], s[1]});
      GraphWriter::set_ints(n, "pads", {p[0], p[1], p[0], p[1]});
      GraphWriter::set_ints(n, "dilations", {1, 1});
      GraphWriter::set_int(n, "group", 1);
    } else if (auto* linear = dynamic_cast<Linear*>(m)) {
      NN_CHECK(x.dim() == 2, "ONNX export: the Linear '", where, "' receives a ", x.dim(),
               "-D input; only (N, features) is exported (as Gemm)");
      std::vector<std::string> inputs = {w.initializer(param + "weight", linear->weight())};
      if (linear->bias().defined()) inputs.push_back(w.initializer(param + "bias", linear->bias()));
      proto::NodeProto& n = next("Gemm", inputs);
      GraphWriter::set_int(n, "transB", 1);
    } else if (auto* bn = dynamic_cast<BatchNorm*>(m)) {
      NN_CHECK(bn->running_mean().defined(), "ONNX export: the ", bn->name(), " '", where,
               "' keeps no running statistics (track_running_stats=false); ONNX's BatchNormalization needs them");
      const int64_t c = bn->num_features();
      const std::string scale = bn->weight().defined() ? w.initializer(param + "weight", bn->weight())
                                                       : w.initializer(param + "weight", ones({c}));
      const std::string shift = bn->bias().defined() ? w.initializer(param + "bias", bn->bias())
                                                     : w.initializer(param + "bias", zeros({c}));
      proto::NodeProto& n = next("BatchNormalization", {scale, shift, w.initializer(param + "running_mean", bn->running_mean()),
                                                        w.initializer(param + "running_var", bn->running_var())});
      GraphWriter::set_float(n, "epsilon", bn->eps());
      GraphWriter::set_float(n, "momentum", 1.0 - bn->momentum());  // ONNX's momentum weighs the old value
    } else if (auto* max_pool = dynamic_cast<MaxPool2d*>(m)) {
      set_pool_attributes(next("MaxPool", {}), max_pool->options());
    } else if (auto* avg_pool = dynamic_cast<AvgPool2d*>(m)) {
      proto::NodeProto& n = next("AveragePool", {});
      set_pool_attributes(n, avg_pool->options());
      GraphWriter::set_int(n, "count_include_pad", avg_pool->options().count_include_pad ? 1 : 0);
    } else if (auto* adaptive = dynamic_cast<AdaptiveAvgPool2d*>(m)) {
      NN_CHECK(x.dim() == 4, "ONNX export: the AdaptiveAvgPool2d '", where, "' receives a ", x.dim(), "-D input");
      const auto o = adaptive->output_size();
      const int64_t h = x.size(2), wd = x.size(3);
      if (o[0] == 1 && o[1] == 1) {
        next("GlobalAveragePool", {});
      } else if (h == o[0] && wd == o[1]) {
        // the identity at this input size
      } else {
        NN_CHECK(h % o[0] == 0 && wd % o[1] == 0, "ONNX export: the AdaptiveAvgPool2d '", where, "' pools ", h, "x", wd,
                 " to ", o[0], "x", o[1],
                 "; ONNX has no adaptive pooling, and these sizes are not multiples (export at another input size)");
        Pool2dOptions po;
        po.kernel = {h / o[0], wd / o[1]};
        po.stride = po.kernel;
        proto::NodeProto& n = next("AveragePool", {});
        set_pool_attributes(n, po);
        GraphWriter::set_int(n, "count_include_pad", 0);
      }
    } else if (dynamic_cast<ReLU*>(m)) {
      next("Relu", {});
    } else if (dynamic_cast<Sigmoid*>(m)) {
      next("Sigmoid", {});
    } else if (dynamic_cast<Dropout*>(m) || dynamic_cast<Identity*>(m)) {
      // the identity in inference
    } else if (auto* flatten = dynamic_cast<Flatten*>(m)) {
      if (y.shape() != x.shape()) {
        const int64_t end = flatten->end_dim() < 0 ? flatten->end_dim() + x.dim() : flatten->end_dim();
        NN_CHECK(flatten->start_dim() == 1 && end == x.dim() - 1, "ONNX export: the Flatten '", where,
                 "' flattens dims ", flatten->start_dim(), "..", flatten->end_dim(),
                 "; only start_dim=1 through the last dim is exported (ONNX Flatten, axis 1)");
        GraphWriter::set_int(next("Flatten", {}), "axis", 1);
      }
    } else {
      NN_CHECK(false, "ONNX export: the module '", where, "' is a ", m->name(),
               ", which has no ONNX counterpart here (Conv2d, Linear, BatchNorm, MaxPool2d, AvgPool2d, "
               "AdaptiveAvgPool2d, ReLU, Sigmoid, Dropout, Identity, Flatten, and chains of them)");
    }
    x = y;
  }
  out = x;
  return current;
}

void add_tensor_type(proto::ValueInfoProto& v, const std::string& name, const Shape& shape, bool dynamic_batch) {
  v.set_name(name);
  proto::TypeProto_Tensor* t = v.mutable_type()->mutable_tensor_type();
  t->set_elem_type(proto::TensorProto::FLOAT);
  for (size_t d = 0; d < shape.size(); ++d) {
    proto::TensorShapeProto_Dimension* dim = t->mutable_shape()->add_dim();
    if (d == 0 && dynamic_batch)
      dim->set_dim_param("batch");
    else
      dim->set_dim_value(shape[d]);
  }
}

proto::ModelProto build_model(const std::vector<ExportMember>& members, const Tensor& example_input,
                              const ExportOptions& options) {
  NN_CHECK(!members.empty(), "ONNX export: no network to export");
  NN_CHECK(example_input.defined() && example_input.dim() >= 2, "ONNX export: the example input must be (N, C, ...)");
  NN_CHECK(!options.input_name.empty() && !options.output_name.empty() && options.input_name != options.output_name,
           "ONNX export: the input and output names must be distinct and non-empty");
  NN_CHECK(options.temperature == 0 || (std::isfinite(options.temperature) && options.temperature > 0),
           "ONNX export: the temperature must be positive, got ", options.temperature);
  NN_CHECK(std::isfinite(options.bias) && (options.bias == 0 || options.temperature > 0),
           "ONNX export: the calibration bias must be finite and needs a temperature, got ", options.bias);

  proto::ModelProto model;
  model.set_ir_version(7);  // the IR of opset 13
  model.set_producer_name("nn");
  model.set_producer_version("0.1.0");
  model.set_model_version(1);
  proto::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kExportOpset);
  proto::GraphProto& graph = *model.mutable_graph();
  graph.set_name(options.graph_name);

  GraphWriter w(graph);
  w.reserve_name(options.input_name);
  w.reserve_name(options.output_name);
  if (options.temperature > 0) w.reserve_name(options.probability_name);

  NoGradGuard no_grad;
  EvalModeGuard eval;
  const Tensor example = example_input.detach().to(Device::cpu()).to(f32).contiguous();
  std::vector<std::string> outputs;
  Tensor traced;
  for (const ExportMember& member : members) {
    NN_CHECK(member.module != nullptr, "ONNX export: a member is null");
    NN_CHECK(member.prefix.empty() || member.prefix.back() == '.', "ONNX export: a member prefix must end in '.', got '",
             member.prefix, "'");
    Tensor out;
    outputs.push_back(write_member(w, member, options.input_name, example, out));
    NN_CHECK(!traced.defined() || traced.shape() == out.shape(), "ONNX export: the members' outputs differ in shape (",
             shape_str(traced.shape()), " and ", shape_str(out.shape()), ")");
    traced = out;
  }

  // The output: the single member's last value, or the members' mean, under options.output_name.
  if (outputs.size() == 1 && outputs[0] != options.input_name && graph.node_size() > 0 &&
      graph.node(graph.node_size() - 1).output(0) == outputs[0]) {
    graph.mutable_node(graph.node_size() - 1)->set_output(0, options.output_name);
  } else {
    w.node(outputs.size() == 1 ? "Identity" : "Mean", outputs, options.output_name,
           outputs.size() == 1 ? "output" : "ensemble_mean");
  }
  add_tensor_type(*graph.add_input(), options.input_name, example.shape(), options.dynamic_batch);
  add_tensor_type(*graph.add_output(), options.output_name, traced.shape(), options.dynamic_batch);
  if (options.temperature > 0) {
    const std::string t = w.initializer(kTemperatureName, full({}, options.temperature));
    const std::string scaled = w.value_name("scaled_output");
    w.node("Div", {options.output_name, t}, scaled, "temperature");
    std::string calibrated = scaled;
    if (options.bias != 0) {
      const std::string b = w.initializer(kCalibrationBiasName, full({}, options.bias));
      calibrated = w.value_name("calibrated_output");
      w.node("Add", {scaled, b}, calibrated, "calibration_bias");
    }
    w.node("Sigmoid", {calibrated}, options.probability_name, "probability");
    add_tensor_type(*graph.add_output(), options.probability_name, traced.shape(), options.dynamic_batch);
  }

  // The members' tensors the graph does not use, and the caller's extra tensors, in one blob.
  std::vector<std::pair<std::string, Tensor>> extra;
  std::set<std::string> extra_names;
  for (const ExportMember& member : members)
    for (const auto& [name, t] : member.module->state_dict()) {
      const std::string full_name = member.prefix + name;
      if (!w.used().count(full_name) && extra_names.insert(full_name).second) extra.emplace_back(full_name, t);
    }
  for (const auto& [name, t] : options.extra_tensors) {
    NN_CHECK(!w.used().count(name) && extra_names.insert(name).second, "ONNX export: the extra tensor '", name,
             "' has the name of another tensor");
    extra.emplace_back(name, t);
  }
  for (const auto& [key, value] : options.metadata) {
    NN_CHECK(key != kExtraTensorsKey, "ONNX export: the metadata key '", key, "' is reserved");
    proto::StringStringEntryProto* e = model.add_metadata_props();
    e->set_key(key);
    e->set_value(value);
  }
  if (!extra.empty()) {
    proto::StringStringEntryProto* e = model.add_metadata_props();
    e->set_key(kExtraTensorsKey);
    e->set_value(base64_encode(io::serialize_safetensors(extra)));
  }

  try {
    ::ONNX_NAMESPACE::checker::check_model(model);
  } catch (const std::exception& e) {
    NN_CHECK(false, "ONNX export: the graph fails ONNX's checker (a bug in nn): ", e.what());
  }
  return model;
}

}  // namespace

std::string export_to_bytes(const std::vector<ExportMember>& members, const Tensor& example_input,
                            const ExportOptions& options) {
  const proto::ModelProto model = build_model(members, example_input, options);
  NN_CHECK(model.ByteSizeLong() < static_cast<size_t>(kMaxModelBytes), "ONNX export: the model is ",
           model.ByteSizeLong(), " bytes, over protobuf's 2 GiB limit");
  std::string bytes;
  NN_CHECK(model.SerializeToString(&bytes), "ONNX export: protobuf could not serialize the model");
  return bytes;
}

void export_ensemble(const std::vector<ExportMember>& members, const Tensor& example_input, const std::string& path,
                     const ExportOptions& options) {
  io::write_file_atomically(path, export_to_bytes(members, example_input, options));
}

void export_model(Module& model, const Tensor& example_input, const std::string& path, const ExportOptions& options) {
  export_ensemble({{"", &model}}, example_input, path, options);
}

}  // namespace nn::onnx
