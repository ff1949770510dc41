// ONNX export and import (nn/onnx.h): round trips of every supported layer, VGG and an ensemble
// against the original modules' outputs, dynamic batch, and the reader's refusals (unsupported
// ops, branching, bad sizes, external data outside the model's folder). Comparisons against
// onnxruntime, OpenVINO and torch.onnx.export are in tests/onnx_engines.py.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <nn/autograd.h>
#include <nn/error.h>
#include <nn/generator.h>
#include <nn/io/safetensors.h>
#include <nn/models/vgg.h>
#include <nn/onnx.h>
#include <nn/ops.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "error_text.h"
#include "scratch_dir.h"

namespace {

namespace proto = ::ONNX_NAMESPACE;

nn::Tensor random_tensor(const nn::Shape& shape, uint64_t seed, double lo = -1, double hi = 1) {
  nn::Generator gen(seed);
  return nn::uniform(shape, lo, hi, gen);
}

// max |a - b| / max |b|, in double.
double relative_error(const nn::Tensor& a, const nn::Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  const auto x = a.to_vector<double>(), y = b.to_vector<double>();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    diff = std::max(diff, std::abs(x[i] - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return scale > 0 ? diff / scale : diff;
}


// Running statistics away from 0 / 1 so that BatchNorm's eval mode is exercised.
void randomize_batch_norms(nn::Module& m, uint64_t seed) {
  for (auto& [name, sub] : m.named_modules()) {
    auto* bn = dynamic_cast<nn::BatchNorm*>(sub);
    if (!bn) continue;
    const int64_t c = bn->num_features();
    nn::NoGradGuard no_grad;
    bn->weight().detach().copy_(random_tensor({c}, seed++, 0.5, 1.5));
    bn->bias().detach().copy_(random_tensor({c}, seed++, -0.3, 0.3));
    bn->running_mean().detach().copy_(random_tensor({c}, seed++, -0.2, 0.2));
    bn->running_var().detach().copy_(random_tensor({c}, seed++, 0.5, 2.0));
    bn->num_batches_tracked().detach().fill_(17);
  }
}

nn::Tensor run(nn::Module& m, const nn::Tensor& x) {
  nn::NoGradGuard no_grad;
  nn::EvalModeGuard eval;
  return m.forward(x);
}

// Every layer of the subset in one chain, with rectangular kernels, strides and padding.
std::shared_ptr<nn::Sequential> every_layer(nn::Generator& gen) {
  auto s = std::make_shared<nn::Sequential>();
  s->push_back(std::make_shared<nn::Conv2d>(3, 6, std::array<int64_t, 2>{3, 3}, std::array<int64_t, 2>{1, 1},
                                            std::array<int64_t, 2>{1, 1}, true, gen));
  s->push_back(std::make_shared<nn::BatchNorm2d>(6));
  s->push_back(std::make_shared<nn::ReLU>());
  s->push_back(std::make_shared<nn::MaxPool2d>(3, 2, 1, true));
  s->push_back(std::make_shared<nn::Conv2d>(6, 5, std::array<int64_t, 2>{3, 2}, std::array<int64_t, 2>{2, 1},
                                            std::array<int64_t, 2>{1, 0}, false, gen));
  nn::Pool2dOptions avg;
  avg.kernel = {3, 1};
  avg.stride = {1, 1};
  avg.padding = {1, 0};
  avg.count_include_pad = false;
  s->push_back(std::make_shared<nn::AvgPool2d>(avg));
  s->push_back(std::make_shared<nn::AdaptiveAvgPool2d>(2, 3));
  s->push_back(std::make_shared<nn::Flatten>());
  s->push_back(std::make_shared<nn::Linear>(30, 7, true, gen));
  s->push_back(std::make_shared<nn::BatchNorm1d>(7));
  s->push_back(std::make_shared<nn::Dropout>(0.5, gen));
  s->push_back(std::make_shared<nn::Sigmoid>());
  s->push_back(std::make_shared<nn::Identity>());
  s->push_back(std::make_shared<nn::Linear>(7, 3, false, gen));
  randomize_batch_norms(*s, 50);
  return s;
}

TEST(Onnx, EveryLayerRoundTripsWithTheSameOutputsAndNames) {
  ScratchDir dir("onnx");
  nn::Generator gen(1);
  auto model = every_layer(gen);
  // 15x13: the max pool's ceil mode matters (8x7), the adaptive pool sees 4x6 (2x2 windows).
  const nn::Tensor x = random_tensor({2, 3, 15, 13}, 2);
  const std::string path = dir.file("every.onnx");
  nn::onnx::export_model(*model, x, path);
  const nn::onnx::ImportedModel imported = nn::onnx::import_model(path);

  ASSERT_EQ(imported.members.size(), 1u);
  EXPECT_FALSE(imported.averaged);
  EXPECT_EQ(imported.temperature, 0);
  EXPECT_EQ(imported.opset, nn::onnx::kExportOpset);
  EXPECT_EQ(imported.input_shape, (std::vector<int64_t>{-1, 3, 15, 13}));
  // Dropout and Identity vanish; the adaptive pool becomes an AvgPool2d.
  std::vector<std::string> types;
  for (size_t i = 0; i < imported.members[0]->size(); ++i) types.push_back((*imported.members[0])[i]->name());
  EXPECT_EQ(types, (std::vector<std::string>{"Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Conv2d", "AvgPool2d",
                                             "AvgPool2d", "Flatten", "Linear", "BatchNorm1d", "Sigmoid", "Linear"}));
  const nn::Tensor expected = run(*model, x), got = imported.forward(x);
  EXPECT_LT(relative_error(got, expected), 1e-6);
  EXPECT_GT(expected.to_vector<double>()[0] != 0, 0);

  // Every tensor under its original name and value (num_batches_tracked from the metadata blob).
  const nn::StateDict original = model->state_dict();
  ASSERT_EQ(imported.state.size(), original.size());
  for (const auto& [name, t] : original) {
    auto it = std::find_if(imported.state.begin(), imported.state.end(), [&](const auto& e) { return e.first == name; });
    ASSERT_NE(it, imported.state.end()) << name;
    EXPECT_EQ(it->second.dtype(), t.dtype()) << name;
    EXPECT_EQ(relative_error(it->second.to(nn::f64), t.to(nn::f64)), 0) << name;
  }
}

TEST(Onnx, ExportedBatchDimensionIsDynamic) {
  ScratchDir dir("onnx");
  nn::Generator gen(3);
  auto model = every_layer(gen);
  const std::string path = dir.file("m.onnx");
  nn::onnx::export_model(*model, random_tensor({1, 3, 15, 13}, 4), path);
  const nn::Tensor x5 = random_tensor({5, 3, 15, 13}, 5);
  EXPECT_LT(relative_error(nn::onnx::import_model(path).forward(x5), run(*model, x5)), 1e-6);
}

TEST(Onnx, VggWithBatchNormRoundTripsUnderTorchvisionNames) {
  ScratchDir dir("onnx");
  nn::Generator gen(6);
  nn::models::VGGOptions o;
  o.depth = 11;
  o.batch_norm = true;
  o.width_multiplier = 0.125;
  o.input_size = 64;
  o.num_classes = 3;
  o.hidden_features = 32;
  nn::models::VGG vgg(o, gen);
  randomize_batch_norms(vgg, 70);
  vgg.eval();
  const nn::Tensor x = random_tensor({2, 3, 64, 64}, 7);
  const std::string path = dir.file("vgg.onnx");
  nn::onnx::export_model(vgg, x, path);
  nn::onnx::ImportedModel imported = nn::onnx::import_model(path);
  EXPECT_LT(relative_error(imported.forward(x), run(vgg, x)), 1e-5);

  // The imported tensors rebuild the same VGG by name.
  nn::models::VGG rebuilt(nn::models::infer_vgg_options(imported.state), gen);
  rebuilt.load_state_dict(imported.state);
  EXPECT_EQ(rebuilt.options().depth, 11);
  EXPECT_TRUE(rebuilt.options().batch_norm);
  EXPECT_LT(relative_error(run(rebuilt, x), run(vgg, x)), 1e-6);
}

TEST(Onnx, EnsembleAveragesMembersAndCarriesTemperatureMetadataAndExtraTensors) {
  ScratchDir dir("onnx");
  nn::Generator gen(8);
  auto a = every_layer(gen), b = every_layer(gen);
  nn::onnx::ExportOptions options;
  options.temperature = 1.7;
  options.output_name = "logit";
  options.metadata = {{"threshold", "0.36"}, {"preprocessing", "torchvision"}};
  options.extra_tensors = {{"ood.member0.means", random_tensor({2, 4}, 9)}};
  const nn::Tensor x = random_tensor({3, 3, 15, 13}, 10);
  const std::string path = dir.file("ensemble.onnx");
  nn::onnx::export_ensemble({{"member0.", a.get()}, {"member1.", b.get()}}, x, path, options);
  const nn::onnx::ImportedModel imported = nn::onnx::import_model(path);

  ASSERT_EQ(imported.members.size(), 2u);
  EXPECT_TRUE(imported.averaged);
  EXPECT_NEAR(imported.temperature, 1.7, 1e-6);
  EXPECT_EQ(imported.output_name, "logit");
  EXPECT_EQ(imported.probability_name, "probability");
  EXPECT_EQ(imported.metadata.at("threshold"), "0.36");
  EXPECT_EQ(imported.metadata.count("nn.extra_tensors"), 0u);
  const nn::Tensor mean = nn::mul(nn::add(run(*a, x), run(*b, x)), 0.5);
  EXPECT_LT(relative_error(imported.forward(x), mean), 1e-6);
  EXPECT_LT(relative_error(imported.probability(x), nn::sigmoid(nn::mul(mean, 1 / 1.7))), 1e-6);
  size_t names = 0;
  for (const auto& [name, t] : imported.state) {
    names += name.rfind("member0.", 0) == 0 || name.rfind("member1.", 0) == 0;
    if (name == "ood.member0.means") {
      EXPECT_EQ(relative_error(t, options.extra_tensors[0].second), 0);
    }
  }
  EXPECT_EQ(names, a->state_dict().size() * 2);
  EXPECT_EQ(imported.state.size(), names + 1);
}

TEST(Onnx, CalibrationBiasIsAnAddBetweenTheTemperatureAndTheSigmoid) {
  ScratchDir dir("onnx");
  nn::Generator gen(12);
  auto a = every_layer(gen), b = every_layer(gen);
  nn::onnx::ExportOptions options;
  options.temperature = 0.8;
  options.bias = -1.25;
  options.output_name = "logit";
  const nn::Tensor x = random_tensor({2, 3, 15, 13}, 13);
  const std::string path = dir.file("calibrated.onnx");
  nn::onnx::export_ensemble({{"member0.", a.get()}, {"member1.", b.get()}}, x, path, options);
  const nn::onnx::ImportedModel imported = nn::onnx::import_model(path);
  EXPECT_NEAR(imported.temperature, 0.8, 1e-6);
  EXPECT_NEAR(imported.bias, -1.25, 1e-6);
  const nn::Tensor mean = nn::mul(nn::add(run(*a, x), run(*b, x)), 0.5);
  EXPECT_LT(relative_error(imported.probability(x), nn::sigmoid(nn::add(nn::mul(mean, 1 / 0.8), -1.25))), 1e-6);
  // A bias without a temperature, or not finite, is refused.
  options.temperature = 0;
  EXPECT_THROW(nn::onnx::export_ensemble({{"member0.", a.get()}}, x, dir.file("bad.onnx"), options), nn::Error);
  options.temperature = 1;
  options.bias = NAN;
  EXPECT_THROW(nn::onnx::export_ensemble({{"member0.", a.get()}}, x, dir.file("bad.onnx"), options), nn::Error);
}

class Custom : public nn::Module {
 public:
  nn::Tensor forward(const nn::Tensor& x) override { return x; }
  std::string name() const override { return "Custom"; }
};

TEST(Onnx, ExportRefusesWhatHasNoOnnxCounterpartByName) {
  ScratchDir dir("onnx");
  nn::Sequential s{std::make_shared<nn::ReLU>(), std::make_shared<Custom>()};
  const std::string message = error_of([&] { nn::onnx::export_model(s, random_tensor({1, 3, 4, 4}, 1), dir.file("x.onnx")); });
  EXPECT_NE(message.find("'1' is a Custom"), std::string::npos) << message;
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.onnx")));

  nn::Sequential pool{std::make_shared<nn::AdaptiveAvgPool2d>(3)};
  const std::string adaptive = error_of([&] { nn::onnx::export_model(pool, random_tensor({1, 2, 5, 5}, 1), dir.file("x.onnx")); });
  EXPECT_NE(adaptive.find("not multiples"), std::string::npos) << adaptive;
}

// ---- the reader's refusals, on graphs built here ----

// input (1, 2, 4, 4) -> Conv 2->2 3x3 pad 1 -> Relu -> output.
proto::ModelProto small_model() {
  proto::ModelProto m;
  m.set_ir_version(7);
  m.add_opset_import()->set_version(13);
  proto::GraphProto* g = m.mutable_graph();
  auto* in = g->add_input();
  in->set_name("x");
  auto* tt = in->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(proto::TensorProto::FLOAT);
  for (int64_t d : {1, 2, 4, 4}) tt->mutable_shape()->add_dim()->set_dim_value(d);
  auto* w = g->add_initializer();
  w->set_name("conv.weight");
  w->set_data_type(proto::TensorProto::FLOAT);
  for (int64_t d : {2, 2, 3, 3}) w->add_dims(d);
  for (int i = 0; i < 36; ++i) w->add_float_data(0.01f * static_cast<float>(i % 7 - 3));
  auto* conv = g->add_node();
  conv->set_op_type("Conv");
  conv->set_name("conv");
  conv->add_input("x");
  conv->add_input("conv.weight");
  conv->add_output("c");
  auto* pads = conv->add_attribute();
  pads->set_name("pads");
  pads->set_type(proto::AttributeProto::INTS);
  for (int i = 0; i < 4; ++i) pads->add_ints(1);
  auto* relu = g->add_node();
  relu->set_op_type("Relu");
  relu->set_name("relu");
  relu->add_input("c");
  relu->add_output("y");
  g->add_output()->set_name("y");
  return m;
}

std::string import_error(const proto::ModelProto& m) {
  return error_of([&] { nn::onnx::import_from_bytes(m.SerializeAsString(), "test.onnx"); });
}

TEST(Onnx, ImportRunsAHandBuiltGraph) {
  const nn::onnx::ImportedModel imported = nn::onnx::import_from_bytes(small_model().SerializeAsString());
  const nn::Tensor x = random_tensor({1, 2, 4, 4}, 11);
  nn::Tensor w = nn::empty({2, 2, 3, 3});
  for (int i = 0; i < 36; ++i) w.data<float>()[i] = 0.01f * static_cast<float>(i % 7 - 3);
  const nn::Tensor expected = nn::relu(nn::conv2d(x, w, nn::Tensor(), {{1, 1}, {1, 1}}));
  EXPECT_LT(relative_error(imported.forward(x), expected), 1e-6);
  EXPECT_EQ(imported.state.size(), 1u);
  EXPECT_EQ(imported.state[0].first, "conv.weight");
}

TEST(Onnx, ImportRefusesUnsupportedOpsNamingTheNode) {
  proto::ModelProto m = small_model();
  m.mutable_graph()->mutable_node(1)->set_op_type("Softmax");
  const std::string message = import_error(m);
  EXPECT_NE(message.find("node 'relu' (Softmax)"), std::string::npos) << message;
  EXPECT_NE(message.find("not supported"), std::string::npos) << message;
}

TEST(Onnx, ImportRefusesBadGraphsWithClearErrors) {
  {  // a value feeding two nodes
    proto::ModelProto m = small_model();
    auto* extra = m.mutable_graph()->add_node();
    extra->set_op_type("Relu");
    extra->set_name("second");
    extra->add_input("c");
    extra->add_output("z");
    EXPECT_NE(import_error(m).find("feeds more than one node"), std::string::npos) << import_error(m);
  }
  {  // nodes out of order
    proto::ModelProto m = small_model();
    m.mutable_graph()->mutable_node()->SwapElements(0, 1);
    EXPECT_NE(import_error(m).find("topological order"), std::string::npos) << import_error(m);
  }
  {  // raw data of the wrong size
    proto::ModelProto m = small_model();
    auto* w = m.mutable_graph()->mutable_initializer(0);
    w->clear_float_data();
    w->set_raw_data(std::string(35 * 4, '\0'));
    EXPECT_NE(import_error(m).find("140 bytes of raw data for 36 float32 values"), std::string::npos) << import_error(m);
  }
  {  // channels that do not match
    proto::ModelProto m = small_model();
    m.mutable_graph()->mutable_input(0)->mutable_type()->mutable_tensor_type()->mutable_shape()->mutable_dim(1)->set_dim_value(3);
    EXPECT_NE(import_error(m).find("expects 2 input channels, the input has 3"), std::string::npos) << import_error(m);
  }
  {  // absurd dimensions: refused before anything is allocated
    proto::ModelProto m = small_model();
    auto* w = m.mutable_graph()->mutable_initializer(0);
    w->clear_dims();
    for (int64_t d : {int64_t{1} << 20, int64_t{1} << 20, int64_t{3}, int64_t{3}}) w->add_dims(d);
    EXPECT_NE(import_error(m).find("elements"), std::string::npos) << import_error(m);
  }
  {  // a large declared shape with a few values (fuzz_onnx's first finding): refused before allocating
    proto::ModelProto m = small_model();
    auto* w = m.mutable_graph()->mutable_initializer(0);
    w->clear_dims();
    for (int64_t d : {int64_t{1} << 14, int64_t{1} << 14}) w->add_dims(d);
    EXPECT_NE(import_error(m).find("36 float32 values for a tensor of 268435456"), std::string::npos) << import_error(m);
  }
  {  // an unsupported opset
    proto::ModelProto m = small_model();
    m.mutable_opset_import(0)->set_version(3);
    EXPECT_NE(import_error(m).find("opset 3 is not supported"), std::string::npos) << import_error(m);
  }
  {  // asymmetric padding
    proto::ModelProto m = small_model();
    m.mutable_graph()->mutable_node(0)->mutable_attribute(0)->set_ints(3, 0);
    EXPECT_NE(import_error(m).find("asymmetric padding"), std::string::npos) << import_error(m);
  }
  EXPECT_NE(error_of([] { nn::onnx::import_from_bytes("this is not a protobuf at all", "junk.onnx"); }).find("junk.onnx: not an ONNX model"),
            std::string::npos);
  EXPECT_NE(error_of([] { nn::onnx::import_from_bytes(small_model().SerializeAsString().substr(0, 40), "cut.onnx"); }).find("cut.onnx"),
            std::string::npos);
}

// The weight moved to external data at `location`, relative to the model.
proto::ModelProto with_external_weight(const std::string& location, int64_t offset, int64_t length) {
  proto::ModelProto m = small_model();
  auto* w = m.mutable_graph()->mutable_initializer(0);
  w->clear_float_data();
  w->set_data_location(proto::TensorProto::EXTERNAL);
  auto add = [&](const std::string& k, const std::string& v) {
    auto* e = w->add_external_data();
    e->set_key(k);
    e->set_value(v);
  };
  add("location", location);
  add("offset", std::to_string(offset));
  if (length >= 0) add("length", std::to_string(length));
  return m;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string weight_bytes() {
  std::string bytes(36 * 4, '\0');
  for (int i = 0; i < 36; ++i) {
    const float v = 0.01f * static_cast<float>(i % 7 - 3);
    std::memcpy(bytes.data() + 4 * i, &v, 4);
  }
  return bytes;
}

TEST(Onnx, ExternalDataIsReadOnlyFromInsideTheModelsFolder) {
  ScratchDir dir("onnx");
  std::filesystem::create_directories(dir.path() / "model" / "weights");
  write_bytes(dir.file("model/weights/w.bin"), std::string(8, 'x') + weight_bytes());
  write_bytes(dir.file("secret.bin"), std::string(200, 'x'));
  const std::string model = dir.file("model/m.onnx");
  auto import_with = [&](const proto::ModelProto& m) {
    write_bytes(model, m.SerializeAsString());
    return error_of([&] { nn::onnx::import_model(model); });
  };
  // Inside the folder, at an offset: read, same outputs as inline.
  write_bytes(model, with_external_weight("weights/w.bin", 8, 144).SerializeAsString());
  const nn::Tensor x = random_tensor({1, 2, 4, 4}, 12);
  EXPECT_LT(relative_error(nn::onnx::import_model(model).forward(x),
                           nn::onnx::import_from_bytes(small_model().SerializeAsString()).forward(x)),
            1e-7);

  EXPECT_NE(import_with(with_external_weight("../secret.bin", 0, 144)).find("leaves the model's folder"), std::string::npos);
  EXPECT_NE(import_with(with_external_weight(dir.file("secret.bin"), 0, 144)).find("not a relative path"), std::string::npos);
  std::filesystem::create_symlink(dir.file("secret.bin"), dir.file("model/link.bin"));
  EXPECT_NE(import_with(with_external_weight("link.bin", 0, 144)).find("leaves the model's folder"), std::string::npos);
  EXPECT_NE(import_with(with_external_weight("weights/w.bin", 100, -1)).find("holds 152 bytes"), std::string::npos);
  EXPECT_NE(import_with(with_external_weight("weights/w.bin", 0, 100)).find("length 100"), std::string::npos);
  EXPECT_NE(import_with(with_external_weight("weights/none.bin", 0, 144)).find("cannot open"), std::string::npos);
  EXPECT_NE(import_with(with_external_weight("weights", 0, 144)).find("not a regular file"), std::string::npos);
  // From memory, external data is refused outright.
  EXPECT_NE(error_of([] { nn::onnx::import_from_bytes(with_external_weight("w.bin", 0, 144).SerializeAsString()); })
                .find("refused for a model read from memory"),
            std::string::npos);
}

}  // namespace
