// Differentiable operations. Each is declared here once, implemented with its backward in
// libnn/src/ops/<family>.cpp, and runs on a backend kernel looked up in the kernel table
// (libnn/src/ops.def). Layout NCHW, row-major; conv weights OIHW; linear weights (out, in).
#pragma once

#include <array>
#include <utility>
#include <vector>

#include "nn/tensor.h"

namespace nn {

// ---- elementwise (ops/elementwise.cpp): broadcasting binary ops and scalars ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor sub(const Tensor& a, double s);
Tensor sub(double s, const Tensor& a);
Tensor mul(const Tensor& a, double s);
Tensor div(const Tensor& a, double s);
Tensor div(double s, const Tensor& a);
Tensor pow(const Tensor& a, double exponent);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double s);
Tensor operator+(double s, const Tensor& a);
Tensor operator-(const Tensor& a, double s);
Tensor operator-(double s, const Tensor& a);
Tensor operator*(const Tensor& a, double s);
Tensor operator*(double s, const Tensor& a);
Tensor operator/(const Tensor& a, double s);
Tensor operator/(double s, const Tensor& a);
Tensor operator-(const Tensor& a);

// The shape both shapes broadcast to (numpy rules); an error naming both when they do not.
Shape broadcast_shapes(const Shape& a, const Shape& b);
// Sums `t` down to `shape` (the reverse of broadcasting): the gradient of expand().
Tensor sum_to(const Tensor& t, const Shape& shape);

// ---- unary (ops/unary.cpp) ----
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor clamp(const Tensor& x, double min, double max);
Tensor relu(const Tensor& x);  // gradient 0 at 0
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);

// ---- reductions (ops/reduce.cpp): over the given dims (all dims when empty) ----
Tensor sum(const Tensor& x);
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
// Max over dims; ties send the gradient to the first maximum in row-major order.
Tensor max(const Tensor& x);
Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
// Max over one dim with the position (int64) of each maximum.
std::pair<Tensor, Tensor> max_with_indices(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);

// ---- softmax (ops/softmax.cpp): max-subtracted, over one dim ----
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// ---- matmul (ops/matmul.cpp) ----
// 2-D (M,K)x(K,N); batched (...,M,K)x(...,K,N) with broadcast batch dims; 1-D operands as numpy.
Tensor matmul(const Tensor& a, const Tensor& b);
// x (..., in) times weight (out, in) transposed, plus bias (out) when defined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---- convolution (ops/conv.cpp) ----
struct Conv2dOptions {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  bool relu = false;  // relu(conv2d(...)) in the same pass over the output (same values and gradient)
  // max_pool2d(conv2d(...), kernel 2, stride 2) (after the ReLU when relu): output (N, O, OH/2, OW/2).
  // Where nothing needs a gradient, the CPU's Winograd and few-channel kernels pool in their output
  // pass and never write the full-size output; elsewhere (and for autograd) the convolution and
  // the pool run one after the other.
  bool max_pool_2x2 = false;
};
// x (N,C,H,W), weight (O,C,KH,KW), bias (O) or undefined -> (N,O,OH,OW).
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
              const Conv2dOptions& options = {});
// For inference (CPU, off by default): transform each convolution weight for Winograd once and
// keep it, instead of at every call (ncnn does so at load). The transform of a weight is kept
// while its storage lives and its version counter has not moved: nn's in-place writes
// (load_state_dict, copy_, the optimizers) bump it, a write through a raw data pointer does not.
// Costs about 8x the weights' memory (the transform and its packed copy); off frees every transform.
void set_conv_weight_cache(bool on);
bool conv_weight_cache();

// ---- pooling (ops/pool.cpp) ----
struct Pool2dOptions {
  std::array<int64_t, 2> kernel{2, 2};
  std::array<int64_t, 2> stride{0, 0};  // 0: equal to the kernel
  std::array<int64_t, 2> padding{0, 0};
  bool ceil_mode = false;
  bool count_include_pad = true;  // avg_pool2d only, as PyTorch
};
Tensor max_pool2d(const Tensor& x, const Pool2dOptions& options);
// Also returns the argmax of each window as a flat index into the input plane (int64), as PyTorch.
std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x, const Pool2dOptions& options);
Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& options);
Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size);

// ---- batch normalization (ops/batch_norm.cpp) ----
// x (N, C, *): each channel normalized, y = (x - mean) / sqrt(var + eps) * weight + bias
// (weight, bias (C) or undefined: 1 and 0). training: mean and var are the batch's (the biased
// variance, over N and *), and running_mean / running_var (C), when defined, are updated in place:
// r = (1 - momentum) r + momentum * batch (the variance unbiased, times M / (M - 1), M = N * *);
// more than one value per channel is required. Otherwise the running statistics are used (they
// must be defined). Differentiable in x, weight and bias (the running statistics are constants).
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5);

// ---- dropout (ops/dropout.cpp) ----
// In training, zeroes each element with probability p and scales the rest by 1/(1-p), with a mask
// drawn from `gen`; in eval, returns x.
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen);

// ---- shape (ops/shape.cpp) ----
Tensor flatten(const Tensor& x, int64_t start_dim = 1, int64_t end_dim = -1);
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor concat(const std::vector<Tensor>& tensors, int64_t dim = 0);

// ---- losses (ops/loss.cpp) ----
enum class Reduction { none, mean, sum };
struct BceWithLogitsOptions {
  Tensor weight;      // broadcast to the input: per-sample (or per-element) weights
  Tensor pos_weight;  // broadcast over the last dim: weight of positive examples per class
  Reduction reduction = Reduction::mean;
};
// Stable for any logit: max(x,0) - x*t + log(1 + exp(-|x|)), with pos_weight as PyTorch.
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        const BceWithLogitsOptions& options = {});
struct CrossEntropyOptions {
  Tensor weight;  // (C) class weights; the mean divides by the summed weights of the targets
  Reduction reduction = Reduction::mean;
  int64_t ignore_index = -100;
};
// logits (N,C), target (N) int64 class indices.
Tensor cross_entropy(const Tensor& logits, const Tensor& target,
                     const CrossEntropyOptions& options = {});
Tensor nll_loss(const Tensor& log_probs, const Tensor& target,
                const CrossEntropyOptions& options = {});
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean);

}  // namespace nn
