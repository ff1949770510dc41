// The standard layers: argument checks, default initialisation (PyTorch's), forward through the
// ops in nn/ops.h, and the one-line descriptions printed by Module::to_string().
#include "nn/layers.h"
#include "nn/named_layers.h"

#include <cmath>
#include <sstream>

#include "nn/autograd.h"
#include "nn/init.h"

namespace nn {

namespace {

std::string pair_str(std::array<int64_t, 2> v) {
  return "(" + std::to_string(v[0]) + ", " + std::to_string(v[1]) + ")";
}

// Kernel positive, stride positive (0 becomes the kernel, as PyTorch's stride=None), padding in
// [0, kernel/2] on each axis.
void check_pool_options(Pool2dOptions& o, const char* layer) {
  for (int a = 0; a < 2; ++a) {
    NN_CHECK(o.kernel[a] > 0, layer, ": kernel_size must be positive, got ", pair_str(o.kernel));
    NN_CHECK(o.stride[a] >= 0, layer, ": stride must be >= 0 (0: equal to the kernel), got ", pair_str(o.stride));
    NN_CHECK(o.padding[a] >= 0 && 2 * o.padding[a] <= o.kernel[a], layer,
             ": padding must be in [0, kernel_size/2], got ", pair_str(o.padding), " for kernel ", pair_str(o.kernel));
    if (o.stride[a] == 0) o.stride[a] = o.kernel[a];
  }
}

// PyTorch's layer default: weight kaiming_uniform_(a = sqrt(5)) which is U(-1/sqrt(fan_in), ..),
// and the bias uniform over the same bound.
void init_weight_and_bias(const Tensor& weight, const Tensor& bias, Generator& gen) {
  init::kaiming_uniform_(weight, std::sqrt(5.0), init::FanMode::fan_in, init::Nonlinearity::leaky_relu, gen);
  if (bias.defined()) {
    int64_t fan_in = init::calculate_fan_in_and_fan_out(weight).first;
    double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    init::uniform_(bias, -bound, bound, gen);
  }
}

// A 64-bit seed drawn from `gen` (one Philox block), so a module's own generator is reproducible
// from the default generator's seed.
uint64_t draw_seed(Generator& gen) {
  uint32_t w[4];
  philox4x32(gen.seed(), gen.reserve(1), 0, w);
  return (static_cast<uint64_t>(w[0]) << 32) | w[1];
}

}  // namespace

// ---- Conv2d ----

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride,
               int64_t padding, bool bias, Generator& gen)
    : Conv2d(in_channels, out_channels, {kernel_size, kernel_size}, {stride, stride}, {padding, padding},
             bias, gen) {}

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, std::array<int64_t, 2> kernel_size,
               std::array<int64_t, 2> stride, std::array<int64_t, 2> padding, bool bias, Generator& gen)
    : in_channels_(in_channels), out_channels_(out_channels), kernel_(kernel_size) {
  NN_CHECK(in_channels > 0 && out_channels > 0, "Conv2d: channels must be positive, got in=", in_channels,
           " out=", out_channels);
  NN_CHECK(kernel_size[0] > 0 && kernel_size[1] > 0, "Conv2d: kernel_size must be positive, got ",
           pair_str(kernel_size));
  NN_CHECK(stride[0] > 0 && stride[1] > 0, "Conv2d: stride must be positive, got ", pair_str(stride));
  NN_CHECK(padding[0] >= 0 && padding[1] >= 0, "Conv2d: padding must be >= 0, got ", pair_str(padding));
  options_.stride = stride;
  options_.padding = padding;
  weight_ = register_parameter("weight", empty({out_channels, in_channels, kernel_size[0], kernel_size[1]}));
  if (bias) bias_ = register_parameter("bias", empty({out_channels}));
  reset_parameters(gen);
}

void Conv2d::reset_parameters(Generator& gen) { init_weight_and_bias(weight_, bias_, gen); }

Tensor Conv2d::forward(const Tensor& x) { return conv2d(x, weight_, bias_, options_); }

Tensor Conv2d::forward_relu(const Tensor& x) {
  Conv2dOptions fused = options_;
  fused.relu = true;
  return conv2d(x, weight_, bias_, fused);
}

Tensor Conv2d::forward_relu_max_pool(const Tensor& x) {
  Conv2dOptions fused = options_;
  fused.relu = true;
  fused.max_pool_2x2 = true;
  return conv2d(x, weight_, bias_, fused);
}

std::string Conv2d::extra_repr() const {
  std::string s = std::to_string(in_channels_) + ", " + std::to_string(out_channels_) +
                  ", kernel_size=" + pair_str(kernel_) + ", stride=" + pair_str(options_.stride);
  if (options_.padding[0] != 0 || options_.padding[1] != 0) s += ", padding=" + pair_str(options_.padding);
  if (!bias_.defined()) s += ", bias=False";
  return s;
}

// ---- Linear ----

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen)
    : in_features_(in_features), out_features_(out_features) {
  NN_CHECK(in_features > 0 && out_features > 0, "Linear: features must be positive, got in=", in_features,
           " out=", out_features);
  weight_ = register_parameter("weight", empty({out_features, in_features}));
  if (bias) bias_ = register_parameter("bias", empty({out_features}));
  reset_parameters(gen);
}

void Linear::reset_parameters(Generator& gen) { init_weight_and_bias(weight_, bias_, gen); }

Tensor Linear::forward(const Tensor& x) { return linear(x, weight_, bias_); }

std::string Linear::extra_repr() const {
  return "in_features=" + std::to_string(in_features_) + ", out_features=" + std::to_string(out_features_) +
         ", bias=" + (bias_.defined() ? "True" : "False");
}

// ---- MaxPool2d ----

MaxPool2d::MaxPool2d(int64_t kernel_size, int64_t stride, int64_t padding, bool ceil_mode) {
  NN_CHECK(kernel_size > 0, "MaxPool2d: kernel_size must be positive, got ", kernel_size);
  NN_CHECK(stride >= 0, "MaxPool2d: stride must be >= 0 (0: equal to the kernel), got ", stride);
  NN_CHECK(padding >= 0 && 2 * padding <= kernel_size, "MaxPool2d: padding must be in [0, kernel_size/2], got ",
           padding);
  if (stride == 0) stride = kernel_size;
  options_.kernel = {kernel_size, kernel_size};
  options_.stride = {stride, stride};
  options_.padding = {padding, padding};
  options_.ceil_mode = ceil_mode;
}

MaxPool2d::MaxPool2d(const Pool2dOptions& options) : options_(options) {
  check_pool_options(options_, "MaxPool2d");
}

Tensor MaxPool2d::forward(const Tensor& x) { return max_pool2d(x, options_); }

std::string MaxPool2d::extra_repr() const {
  return "kernel_size=" + std::to_string(options_.kernel[0]) + ", stride=" + std::to_string(options_.stride[0]) +
         ", padding=" + std::to_string(options_.padding[0]) +
         ", ceil_mode=" + (options_.ceil_mode ? "True" : "False");
}

// ---- AvgPool2d ----

AvgPool2d::AvgPool2d(const Pool2dOptions& options) : options_(options) { check_pool_options(options_, "AvgPool2d"); }

Tensor AvgPool2d::forward(const Tensor& x) { return avg_pool2d(x, options_); }

std::string AvgPool2d::extra_repr() const {
  return "kernel_size=" + pair_str(options_.kernel) + ", stride=" + pair_str(options_.stride) +
         ", padding=" + pair_str(options_.padding) + ", ceil_mode=" + (options_.ceil_mode ? "True" : "False") +
         ", count_include_pad=" + (options_.count_include_pad ? "True" : "False");
}

// ---- AdaptiveAvgPool2d ----

AdaptiveAvgPool2d::AdaptiveAvgPool2d(int64_t output_h, int64_t output_w) : output_size_{output_h, output_w} {
  NN_CHECK(output_h > 0 && output_w > 0, "AdaptiveAvgPool2d: output size must be positive, got ",
           pair_str(output_size_));
}

Tensor AdaptiveAvgPool2d::forward(const Tensor& x) { return adaptive_avg_pool2d(x, output_size_); }

std::string AdaptiveAvgPool2d::extra_repr() const { return "output_size=" + pair_str(output_size_); }

// ---- BatchNorm ----

BatchNorm::BatchNorm(int64_t num_features, double eps, double momentum, bool affine, bool track_running_stats,
                     int64_t min_dims, int64_t max_dims)
    : num_features_(num_features), eps_(eps), momentum_(momentum), min_dims_(min_dims), max_dims_(max_dims) {
  NN_CHECK(num_features > 0, "BatchNorm: num_features must be positive, got ", num_features);
  NN_CHECK(std::isfinite(eps) && eps > 0, "BatchNorm: eps must be positive, got ", eps);
  NN_CHECK(momentum >= 0 && momentum <= 1, "BatchNorm: momentum must be in [0, 1], got ", momentum);
  if (affine) {
    weight_ = register_parameter("weight", empty({num_features}));
    bias_ = register_parameter("bias", empty({num_features}));
  }
  if (track_running_stats) {
    running_mean_ = register_buffer("running_mean", empty({num_features}));
    running_var_ = register_buffer("running_var", empty({num_features}));
    num_batches_tracked_ = register_buffer("num_batches_tracked", zeros({}, DType::i64));
  }
  reset_parameters();
}

void BatchNorm::reset_parameters() {
  NoGradGuard no_grad;
  if (weight_.defined()) weight_.fill_(1.0);
  if (bias_.defined()) bias_.fill_(0.0);
  if (running_mean_.defined()) {
    running_mean_.fill_(0.0);
    running_var_.fill_(1.0);
    num_batches_tracked_.fill_(0.0);
  }
}

Tensor BatchNorm::forward(const Tensor& x) {
  NN_CHECK(x.defined() && x.dim() >= min_dims_ && x.dim() <= max_dims_, name(), ": expected an input of ",
           min_dims_ == max_dims_ ? std::to_string(min_dims_) : std::to_string(min_dims_) + " or " + std::to_string(max_dims_),
           " dims (N, C", min_dims_ == 4 ? ", H, W" : max_dims_ == 3 ? "[, L]" : "", "), got ",
           x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor"));
  NN_CHECK(x.size(1) == num_features_, name(), ": expected ", num_features_, " channels, got ", x.size(1),
           " (input ", shape_str(x.shape()), ")");
  const bool batch_stats = is_training() || !running_mean_.defined();
  if (is_training() && num_batches_tracked_.defined()) {
    NoGradGuard no_grad;
    num_batches_tracked_.copy_(add(num_batches_tracked_.to(DType::f64), 1.0));
  }
  return batch_norm(x, running_mean_, running_var_, weight_, bias_, batch_stats, momentum_, eps_);
}

std::string BatchNorm::extra_repr() const {
  std::ostringstream s;
  s << num_features_ << ", eps=" << eps_ << ", momentum=" << momentum_
    << ", affine=" << (weight_.defined() ? "True" : "False")
    << ", track_running_stats=" << (running_mean_.defined() ? "True" : "False");
  return s.str();
}

// ---- ReLU ----

Tensor ReLU::forward(const Tensor& x) { return relu(x); }

Tensor Sigmoid::forward(const Tensor& x) { return sigmoid(x); }

// ---- Dropout ----

Dropout::Dropout(double p) : Dropout(p, draw_seed(default_generator())) {}

Dropout::Dropout(double p, Generator& gen) : Dropout(p, draw_seed(gen)) {}

Dropout::Dropout(double p, uint64_t seed) : p_(p), gen_(seed) {
  NN_CHECK(p >= 0.0 && p <= 1.0, "Dropout: p must be in [0, 1], got ", p);
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p_, is_training(), gen_); }

std::string Dropout::extra_repr() const {
  std::ostringstream s;
  s << "p=" << p_;
  return s.str();
}

// ---- Flatten ----

Tensor Flatten::forward(const Tensor& x) { return flatten(x, start_dim_, end_dim_); }

std::string Flatten::extra_repr() const {
  return "start_dim=" + std::to_string(start_dim_) + ", end_dim=" + std::to_string(end_dim_);
}

// ---- Sequential ----

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> modules) {
  for (const auto& m : modules) push_back(m);
}

Sequential::Sequential(const std::vector<std::shared_ptr<Module>>& modules) {
  for (const auto& m : modules) push_back(m);
}

// A Conv2d directly followed by a ReLU runs as one conv2d with the ReLU fused into its output pass
// (Conv2d::forward_relu): the same values and gradients, one pass over the activation fewer; with
// a 2x2 max pool after the ReLU, that too (Conv2d::forward_relu_max_pool: the same bits).
Tensor Sequential::forward(const Tensor& x) { return detail::run_steps(*this, x); }

Tensor Sequential::forward_range(const Tensor& x, size_t begin, size_t end) {
  NN_CHECK(begin <= end && end <= size(), "Sequential::forward_range: [", begin, ", ", end, ") is not a range of its ",
           size(), " modules");
  if (begin == end) return x;
  return detail::run_range(*this, x, begin == 0 ? "" : submodules()[begin - 1].first,
                           end == size() ? "" : submodules()[end - 1].first);
}

std::vector<Step> Sequential::steps() {
  std::vector<Step> out;
  for (const auto& [name, module] : submodules()) out.push_back({name, module, nullptr});
  return out;
}

int fold_batch_norms(Module& model) {
  NN_CHECK(!model.is_training(), "fold_batch_norms: the model must be in eval mode (model.eval()): folding uses the "
           "running statistics");
  int folded = 0;
  NoGradGuard no_grad;
  // The Sequentials first: folding replaces their children (leaves), which must not be visited
  // through a list taken before.
  std::vector<std::pair<std::string, Sequential*>> chains;
  for (auto& [path, module] : model.named_modules())
    if (auto* seq = dynamic_cast<Sequential*>(module)) chains.emplace_back(path, seq);
  for (auto& [path, seq] : chains) {
    for (size_t i = 0; i + 1 < seq->size(); ++i) {
      auto conv = std::dynamic_pointer_cast<Conv2d>((*seq)[i]);
      auto bn = std::dynamic_pointer_cast<BatchNorm2d>((*seq)[i + 1]);
      if (!conv || !bn || !bn->running_mean().defined()) continue;
      NN_CHECK(bn->num_features() == conv->out_channels(), "fold_batch_norms: ", path.empty() ? "" : path + ".",
               i + 1, " normalizes ", bn->num_features(), " channels after a convolution with ", conv->out_channels());
      const Tensor& w = conv->weight();
      Tensor k = div(1.0, sqrt(add(bn->running_var(), bn->eps())));
      if (bn->weight().defined()) k = mul(k, bn->weight());
      Tensor bias = conv->bias().defined() ? conv->bias() : zeros({conv->out_channels()}, w.dtype(), w.device());
      Tensor new_bias = mul(sub(bias, bn->running_mean()), k);
      if (bn->bias().defined()) new_bias = add(new_bias, bn->bias());
      Tensor new_weight = mul(w, k.reshape({conv->out_channels(), 1, 1, 1}));
      auto fused = std::make_shared<Conv2d>(conv->in_channels(), conv->out_channels(), conv->kernel_size(),
                                            conv->stride(), conv->padding(), true);
      fused->to(w.device());
      fused->to(w.dtype());
      Tensor fused_weight = fused->weight(), fused_bias = fused->bias();  // aliases of the parameters
      fused_weight.copy_(new_weight);
      fused_bias.copy_(new_bias);
      fused->eval();
      seq->set(i, fused);
      seq->set(i + 1, std::make_shared<Identity>());
      ++folded;
    }
  }
  return folded;
}

std::shared_ptr<Module> Sequential::operator[](size_t index) const {
  NN_CHECK(index < size(), "Sequential: index ", index, " out of range for ", size(), " modules");
  return submodules()[index].second;
}

}  // namespace nn
