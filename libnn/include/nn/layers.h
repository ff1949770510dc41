// The layers VGG and its classifier heads are built from: Conv2d, Linear, BatchNorm2d, BatchNorm1d,
// MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, ReLU, Sigmoid, Dropout, Flatten, Identity, and the
// Sequential container. Parameter names,
// shapes (conv OIHW, linear (out, in)) and default initialisation follow torchvision/PyTorch:
// weights kaiming_uniform_(a = sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), biases
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Initialisation draws from the Generator passed to the
// constructor (nn::default_generator() when none is given).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"
#include "nn/ops.h"

namespace nn {

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride = 1,
         int64_t padding = 0, bool bias = true, Generator& gen = default_generator());
  Conv2d(int64_t in_channels, int64_t out_channels, std::array<int64_t, 2> kernel_size,
         std::array<int64_t, 2> stride = {1, 1}, std::array<int64_t, 2> padding = {0, 0},
         bool bias = true, Generator& gen = default_generator());

  // x (N, in, H, W) -> (N, out, OH, OW).
  Tensor forward(const Tensor& x) override;
  // relu(forward(x)) in one pass (Sequential uses it for a Conv2d followed by a ReLU).
  Tensor forward_relu(const Tensor& x);
  // max_pool2d(relu(forward(x)), 2) (Sequential uses it for a Conv2d, a ReLU and a 2x2 stride-2
  // MaxPool2d; see Conv2dOptions::max_pool_2x2).
  Tensor forward_relu_max_pool(const Tensor& x);
  // Draws the weight and bias again (the constructor's initialisation).
  void reset_parameters(Generator& gen = default_generator());

  const Tensor& weight() const { return weight_; }  // (out, in, KH, KW)
  const Tensor& bias() const { return bias_; }      // (out), undefined without bias
  int64_t in_channels() const { return in_channels_; }
  int64_t out_channels() const { return out_channels_; }
  std::array<int64_t, 2> kernel_size() const { return kernel_; }
  std::array<int64_t, 2> stride() const { return options_.stride; }
  std::array<int64_t, 2> padding() const { return options_.padding; }

  std::string name() const override { return "Conv2d"; }
  std::string extra_repr() const override;

 private:
  int64_t in_channels_, out_channels_;
  std::array<int64_t, 2> kernel_;
  Conv2dOptions options_;
  Tensor weight_, bias_;
};

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true,
         Generator& gen = default_generator());

  // x (..., in) -> (..., out).
  Tensor forward(const Tensor& x) override;
  void reset_parameters(Generator& gen = default_generator());

  const Tensor& weight() const { return weight_; }  // (out, in)
  const Tensor& bias() const { return bias_; }      // (out), undefined without bias
  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

  std::string name() const override { return "Linear"; }
  std::string extra_repr() const override;

 private:
  int64_t in_features_, out_features_;
  Tensor weight_, bias_;
};

class MaxPool2d : public Module {
 public:
  // stride 0 means "equal to the kernel", as PyTorch's stride=None.
  explicit MaxPool2d(int64_t kernel_size, int64_t stride = 0, int64_t padding = 0,
                     bool ceil_mode = false);
  // Rectangular kernels, strides and paddings (padding at most half the kernel on each axis).
  explicit MaxPool2d(const Pool2dOptions& options);

  Tensor forward(const Tensor& x) override;
  const Pool2dOptions& options() const { return options_; }

  std::string name() const override { return "MaxPool2d"; }
  std::string extra_repr() const override;

 private:
  Pool2dOptions options_;
};

// Average pooling (nn::avg_pool2d): count_include_pad as PyTorch's default unless set otherwise.
class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(const Pool2dOptions& options);

  Tensor forward(const Tensor& x) override;
  const Pool2dOptions& options() const { return options_; }

  std::string name() const override { return "AvgPool2d"; }
  std::string extra_repr() const override;

 private:
  Pool2dOptions options_;
};

class AdaptiveAvgPool2d : public Module {
 public:
  AdaptiveAvgPool2d(int64_t output_h, int64_t output_w);
  explicit AdaptiveAvgPool2d(int64_t output_size) : AdaptiveAvgPool2d(output_size, output_size) {}

  Tensor forward(const Tensor& x) override;
  std::array<int64_t, 2> output_size() const { return output_size_; }

  std::string name() const override { return "AdaptiveAvgPool2d"; }
  std::string extra_repr() const override;

 private:
  std::array<int64_t, 2> output_size_;
};

// Batch normalization over the channels (dim 1), torchvision's names: parameters "weight" (ones)
// and "bias" (zeros) when affine; buffers "running_mean" (zeros), "running_var" (ones) and
// "num_batches_tracked" (int64, counts training forwards) when tracking running statistics.
// Training mode normalizes with the batch's statistics and updates the running ones (momentum,
// unbiased variance); eval mode uses the running ones (nn::batch_norm). Without running
// statistics, eval mode uses the batch's too, as PyTorch does.
class BatchNorm : public Module {
 public:
  Tensor forward(const Tensor& x) override;

  int64_t num_features() const { return num_features_; }
  double eps() const { return eps_; }
  double momentum() const { return momentum_; }
  const Tensor& weight() const { return weight_; }        // (C), undefined when not affine
  const Tensor& bias() const { return bias_; }            // (C), undefined when not affine
  const Tensor& running_mean() const { return running_mean_; }  // (C), undefined when not tracked
  const Tensor& running_var() const { return running_var_; }
  const Tensor& num_batches_tracked() const { return num_batches_tracked_; }
  // Running statistics back to 0 mean, 1 variance, 0 batches; weight 1, bias 0.
  void reset_parameters();

  std::string extra_repr() const override;

 protected:
  BatchNorm(int64_t num_features, double eps, double momentum, bool affine, bool track_running_stats,
            int64_t min_dims, int64_t max_dims);

 private:
  int64_t num_features_;
  double eps_, momentum_;
  int64_t min_dims_, max_dims_;
  Tensor weight_, bias_, running_mean_, running_var_, num_batches_tracked_;
};

// Over (N, C, H, W).
class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t num_features, double eps = 1e-5, double momentum = 0.1, bool affine = true,
                       bool track_running_stats = true)
      : BatchNorm(num_features, eps, momentum, affine, track_running_stats, 4, 4) {}
  std::string name() const override { return "BatchNorm2d"; }
};

// Over (N, C) or (N, C, L).
class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t num_features, double eps = 1e-5, double momentum = 0.1, bool affine = true,
                       bool track_running_stats = true)
      : BatchNorm(num_features, eps, momentum, affine, track_running_stats, 2, 3) {}
  std::string name() const override { return "BatchNorm1d"; }
};

// Returns its input (what a folded BatchNorm becomes, see fold_batch_norms).
class Identity : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x; }
  std::string name() const override { return "Identity"; }
};

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "ReLU"; }
};

class Sigmoid : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "Sigmoid"; }
};

// Zeroes elements with probability p in training mode and scales the rest by 1/(1-p); the
// identity in eval mode. Masks come from the module's own Generator, so a model's dropout stream
// does not shift when other code draws from the default generator (and can be checkpointed).
class Dropout : public Module {
 public:
  // Seeds its generator with a number drawn from nn::default_generator().
  explicit Dropout(double p = 0.5);
  Dropout(double p, uint64_t seed);
  // Seeds its generator with a number drawn from `gen`.
  Dropout(double p, Generator& gen);

  Tensor forward(const Tensor& x) override;
  double p() const { return p_; }
  Generator& generator() { return gen_; }

  std::string name() const override { return "Dropout"; }
  std::string extra_repr() const override;

 private:
  double p_;
  Generator gen_;
};

class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1)
      : start_dim_(start_dim), end_dim_(end_dim) {}

  Tensor forward(const Tensor& x) override;
  int64_t start_dim() const { return start_dim_; }
  int64_t end_dim() const { return end_dim_; }
  std::string name() const override { return "Flatten"; }
  std::string extra_repr() const override;

 private:
  int64_t start_dim_, end_dim_;
};

// Runs its children in order; they are named "0", "1", ... (torchvision's "features.0.weight").
class Sequential : public Module {
 public:
  Sequential() = default;
  Sequential(std::initializer_list<std::shared_ptr<Module>> modules);
  explicit Sequential(const std::vector<std::shared_ptr<Module>>& modules);

  // Appends a module under the next index; returns it with its own type.
  template <typename M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    return register_module(std::to_string(size()), std::move(module));
  }
  Tensor forward(const Tensor& x) override;
  // Runs only the children [begin, end); a Conv2d followed by a ReLU inside the range runs as one
  // fused conv (Conv2d::forward_relu). By name, for any model: nn::forward_to / forward_from.
  Tensor forward_range(const Tensor& x, size_t begin, size_t end);
  // Its children, in order.
  std::vector<Step> steps() override;

  size_t size() const { return submodules().size(); }
  std::shared_ptr<Module> operator[](size_t index) const;
  // The child at `index` as type M; an error when it is another type.
  template <typename M>
  std::shared_ptr<M> at(size_t index) const {
    auto typed = std::dynamic_pointer_cast<M>((*this)[index]);
    NN_CHECK(typed != nullptr, "Sequential::at(", index, "): the module there is a ",
             (*this)[index]->name(), ", not the requested type");
    return typed;
  }
  // Replaces the child at `index` (e.g. the last Linear of a classifier head).
  template <typename M>
  std::shared_ptr<M> set(size_t index, std::shared_ptr<M> module) {
    (*this)[index];  // range check
    return replace_module(std::to_string(index), std::move(module));
  }

  std::string name() const override { return "Sequential"; }
};

// Folds, for inference, every BatchNorm2d that directly follows a Conv2d in a Sequential anywhere
// in `model` into that convolution: with k = gamma / sqrt(running_var + eps),
// w' = w * k (per output channel) and b' = (b - running_mean) * k + beta, the same outputs up to
// float rounding with one pass over the activations fewer. The BatchNorm2d becomes an Identity; a
// convolution without a bias is replaced by one with (same device and dtype). The model must be in
// eval mode (folding uses the running statistics). Returns how many were folded. The state dict
// changes (the batch norms' tensors are gone), so fold after loading, not before saving.
int fold_batch_norms(Module& model);

}  // namespace nn
