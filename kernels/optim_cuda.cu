// Fused optimizer steps on CUDA (formulas: optim_cpu.cpp): one kernel per parameter tensor, one
// thread per element in a grid-stride loop, reading the gradient and updating the parameter and
// its state in place with every term (weight decay, momentum/nesterov, Adam moments and bias
// correction) fused. Scalars are prepared on the host exactly as the CPU does (bias corrections in
// double, rounded once). Options are block-uniform runtime flags, so no divergence. All operands
// dense, same shape and dtype. Memory-bound: SGD with momentum streams 4 arrays, Adam 7.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "cuda_util.cuh"

namespace nn::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
struct SgdScalars {
  T lr, momentum, keep, wd;  // keep = 1 - dampening
  bool decay, first, nesterov;
};

// d = g + wd*w; with a buffer: buf = first ? d : momentum*buf + keep*d, d = nesterov ? d + momentum*buf : buf;
// w -= lr*d. buf is null when momentum == 0.
template <typename T>
__global__ void sgd_step_kernel(T* w, const T* g, T* buf, int64_t n, SgdScalars<T> p) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    const T wi = w[i];
    T d = p.decay ? g[i] + p.wd * wi : g[i];
    if (buf) {
      const T v = p.first ? d : p.momentum * buf[i] + p.keep * d;
      buf[i] = v;
      d = p.nesterov ? d + p.momentum * v : v;
    }
    w[i] = wi - p.lr * d;
  }
}

template <typename T>
struct AdamScalars {
  T step_size, bc2_sqrt, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, wd, decay_factor;
  bool decay, decoupled;
};

// Adam (L2: g += wd*w) or AdamW (w *= 1 - lr*wd first); m, v moments; bias-corrected update
// w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
template <typename T>
__global__ void adam_step_kernel(T* w, const T* g, T* m, T* v, int64_t n, AdamScalars<T> p) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    T wi = w[i];
    T gi = g[i];
    if (p.decay) {
      if (p.decoupled) wi *= p.decay_factor;
      else gi += p.wd * wi;
    }
    const T mi = p.beta1 * m[i] + p.one_minus_beta1 * gi;
    const T vi = p.beta2 * v[i] + p.one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] = wi - p.step_size * mi / (std::sqrt(vi) / p.bc2_sqrt + p.eps);
  }
}

void sgd_step(Tensor& param, const Tensor& grad, Tensor& momentum_buffer, const SgdStepParams& p) {
  NN_CHECK(grad.numel() == param.numel(), "sgd_step: grad and param sizes differ");
  NN_CHECK(!momentum_buffer.defined() || momentum_buffer.numel() == param.numel(),
           "sgd_step: momentum buffer and param sizes differ");
  NN_CHECK(param.is_contiguous() && grad.is_contiguous() &&
               (!momentum_buffer.defined() || momentum_buffer.is_contiguous()),
           "sgd_step: CUDA operands must be dense");
  const int64_t n = param.numel();
  if (n == 0) return;
  cudaStream_t s = stream_for(param);
  dispatch_float(param.dtype(), "sgd_step", [&](auto tag) {
    using T = decltype(tag);
    SgdScalars<T> sc;
    sc.lr = static_cast<T>(p.lr);
    sc.momentum = static_cast<T>(p.momentum);
    sc.keep = static_cast<T>(1.0 - p.dampening);
    sc.wd = static_cast<T>(p.weight_decay);
    // weight decay 0 must not turn an inf weight into NaN through inf*0; the first step must not
    // read the uninitialised buffer.
    sc.decay = p.weight_decay != 0.0;
    sc.first = p.first_step;
    sc.nesterov = p.nesterov;
    T* buf = momentum_buffer.defined() ? static_cast<T*>(momentum_buffer.raw_data()) : nullptr;
    sgd_step_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, s>>>(
        static_cast<T*>(param.raw_data()), static_cast<const T*>(grad.raw_data()), buf, n, sc);
    NN_CUDA_CHECK_LAUNCH();
  });
}

void adam_step(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, const AdamStepParams& p) {
  NN_CHECK(grad.numel() == param.numel() && exp_avg.numel() == param.numel() && exp_avg_sq.numel() == param.numel(),
           "adam_step: operand sizes differ");
  NN_CHECK(p.step >= 1, "adam_step: step is 1-based");
  NN_CHECK(param.is_contiguous() && grad.is_contiguous() && exp_avg.is_contiguous() && exp_avg_sq.is_contiguous(),
           "adam_step: CUDA operands must be dense");
  const int64_t n = param.numel();
  if (n == 0) return;
  cudaStream_t s = stream_for(param);
  dispatch_float(param.dtype(), "adam_step", [&](auto tag) {
    using T = decltype(tag);
    const double bc1 = 1.0 - std::pow(p.beta1, static_cast<double>(p.step));
    const double bc2 = 1.0 - std::pow(p.beta2, static_cast<double>(p.step));
    AdamScalars<T> sc;
    sc.step_size = static_cast<T>(p.lr / bc1);
    sc.bc2_sqrt = static_cast<T>(std::sqrt(bc2));
    sc.beta1 = static_cast<T>(p.beta1);
    sc.beta2 = static_cast<T>(p.beta2);
    sc.one_minus_beta1 = static_cast<T>(1.0 - p.beta1);
    sc.one_minus_beta2 = static_cast<T>(1.0 - p.beta2);
    sc.eps = static_cast<T>(p.eps);
    sc.wd = static_cast<T>(p.weight_decay);
    sc.decay_factor = static_cast<T>(1.0 - p.lr * p.weight_decay);
    sc.decay = p.weight_decay != 0.0;
    sc.decoupled = p.decoupled_weight_decay;
    adam_step_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, s>>>(
        static_cast<T*>(param.raw_data()), static_cast<const T*>(grad.raw_data()),
        static_cast<T*>(exp_avg.raw_data()), static_cast<T*>(exp_avg_sq.raw_data()), n, sc);
    NN_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

void register_optim_cuda(KernelTable& t) {
  t.sgd_step = sgd_step;
  t.adam_step = adam_step;
}

}  // namespace nn::cuda
