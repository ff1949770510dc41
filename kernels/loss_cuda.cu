// Loss kernels on CUDA (semantics: loss_cpu.cpp), all one thread per element in a grid-stride loop.
// BCE with logits, fused per element in the overflow-free form
//   loss = w * ((1 - t) * x + (1 + (pw - 1) * t) * softplus(-x)),  softplus(-x) = log1p(exp(-|x|)) + max(-x, 0)
//   dx   = dloss * w * ((1 - t) - (1 + (pw - 1) * t) * sigmoid(-x))
// (weight / pos_weight optional: null pointers). NLL forward gathers -w[t] * logp[i, t] per sample;
// NLL backward writes every element of dlogp once (-w[t] * dloss[i] at the target, 0 elsewhere),
// so no separate zeroing pass. All memory-bound.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "cuda_util.cuh"

namespace nn::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__device__ inline T stable_sigmoid(T v) {
  if (v >= T(0)) return T(1) / (T(1) + std::exp(-v));
  const T e = std::exp(v);
  return e / (T(1) + e);
}

template <typename T>
const T* optional_data(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr;
}

// ---- BCE with logits ----

template <typename T>
__global__ void bce_with_logits_forward_kernel(const T* x, const T* target, const T* weight, const T* pos_weight,
                                               T* loss, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    const T v = x[i], t = target[i];
    const T softplus_neg = std::log1p(std::exp(-std::abs(v))) + (v < T(0) ? -v : T(0));
    const T log_weight = pos_weight ? T(1) + (pos_weight[i] - T(1)) * t : T(1);
    const T l = (T(1) - t) * v + log_weight * softplus_neg;
    loss[i] = weight ? weight[i] * l : l;
  }
}

template <typename T>
__global__ void bce_with_logits_backward_kernel(const T* dloss, const T* x, const T* target, const T* weight,
                                                const T* pos_weight, T* dx, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    const T v = x[i], t = target[i];
    const T sig_neg = stable_sigmoid(-v);
    const T log_weight = pos_weight ? T(1) + (pos_weight[i] - T(1)) * t : T(1);
    const T d = (T(1) - t) - log_weight * sig_neg;
    dx[i] = dloss[i] * (weight ? weight[i] * d : d);
  }
}

void bce_with_logits_forward(const Tensor& x, const Tensor& target, const Tensor& weight, const Tensor& pos_weight,
                             Tensor& loss) {
  const int64_t n = x.numel();
  if (n == 0) return;
  cudaStream_t s = stream_for(loss);
  dispatch_float(x.dtype(), "bce_with_logits_forward", [&](auto tag) {
    using T = decltype(tag);
    bce_with_logits_forward_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, s>>>(
        static_cast<const T*>(x.raw_data()), static_cast<const T*>(target.raw_data()), optional_data<T>(weight),
        optional_data<T>(pos_weight), static_cast<T*>(loss.raw_data()), n);
    NN_CUDA_CHECK_LAUNCH();
  });
}

void bce_with_logits_backward(const Tensor& dloss, const Tensor& x, const Tensor& target, const Tensor& weight,
                              const Tensor& pos_weight, Tensor& dx) {
  const int64_t n = x.numel();
  if (n == 0) return;
  cudaStream_t s = stream_for(dx);
  dispatch_float(x.dtype(), "bce_with_logits_backward", [&](auto tag) {
    using T = decltype(tag);
    bce_with_logits_backward_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, s>>>(
        static_cast<const T*>(dloss.raw_data()), static_cast<const T*>(x.raw_data()),
        static_cast<const T*>(target.raw_data()), optional_data<T>(weight), optional_data<T>(pos_weight),
        static_cast<T*>(dx.raw_data()), n);
    NN_CUDA_CHECK_LAUNCH();
  });
}

// ---- negative log-likelihood ----

// One thread per sample. A target outside [0, C) that is not ignore_index (the op validates
// targets, so never expected) gives a NaN loss rather than an out-of-bounds read.
template <typename T>
__global__ void nll_forward_kernel(const T* logp, const int64_t* target, const T* weight, int64_t ignore_index,
                                   T* loss, T* sample_weight, int64_t n, int64_t c) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    const int64_t t = target[i];
    if (t == ignore_index) {
      loss[i] = T(0);
      sample_weight[i] = T(0);
    } else if (t < 0 || t >= c) {
      loss[i] = std::numeric_limits<T>::quiet_NaN();
      sample_weight[i] = T(0);
    } else {
      const T w = weight ? weight[t] : T(1);
      loss[i] = -w * logp[i * c + t];
      sample_weight[i] = w;
    }
  }
}

// One thread per element of dlogp (N, C).
template <typename T>
__global__ void nll_backward_kernel(const T* dloss, const int64_t* target, const T* weight, int64_t ignore_index,
                                    T* dlogp, int64_t n, int64_t c) {
  const int64_t total = n * c;
  for (int64_t e = thread_index(); e < total; e += thread_count()) {
    const int64_t i = e / c, j = e - i * c;
    const int64_t t = target[i];
    T d = T(0);
    if (j == t && t != ignore_index) d = -(weight ? weight[t] : T(1)) * dloss[i];
    dlogp[e] = d;
  }
}

void nll_forward(const Tensor& logp, const Tensor& target, const Tensor& weight, int64_t ignore_index, Tensor& loss,
                 Tensor& sample_weight) {
  NN_CHECK(logp.dim() == 2 && logp.is_contiguous(), "nll_forward: logp must be dense (N, C)");
  NN_CHECK(target.dtype() == DType::i64, "nll_forward: target must be int64");
  const int64_t n = logp.shape()[0], c = logp.shape()[1];
  if (n == 0) return;
  cudaStream_t s = stream_for(loss);
  dispatch_float(logp.dtype(), "nll_forward", [&](auto tag) {
    using T = decltype(tag);
    nll_forward_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, s>>>(
        static_cast<const T*>(logp.raw_data()), static_cast<const int64_t*>(target.raw_data()),
        optional_data<T>(weight), ignore_index, static_cast<T*>(loss.raw_data()),
        static_cast<T*>(sample_weight.raw_data()), n, c);
    NN_CUDA_CHECK_LAUNCH();
  });
}

void nll_backward(const Tensor& dloss, const Tensor& target, const Tensor& weight, int64_t ignore_index,
                  Tensor& dlogp) {
  NN_CHECK(dlogp.dim() == 2 && dlogp.is_contiguous(), "nll_backward: dlogp must be dense (N, C)");
  NN_CHECK(target.dtype() == DType::i64, "nll_backward: target must be int64");
  const int64_t n = dlogp.shape()[0], c = dlogp.shape()[1];
  if (n * c == 0) return;
  cudaStream_t s = stream_for(dlogp);
  dispatch_float(dlogp.dtype(), "nll_backward", [&](auto tag) {
    using T = decltype(tag);
    nll_backward_kernel<T><<<blocks_for(n * c, kThreads), kThreads, 0, s>>>(
        static_cast<const T*>(dloss.raw_data()), static_cast<const int64_t*>(target.raw_data()),
        optional_data<T>(weight), ignore_index, static_cast<T*>(dlogp.raw_data()), n, c);
    NN_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

void register_loss_cuda(KernelTable& t) {
  t.bce_with_logits_forward = bce_with_logits_forward;
  t.bce_with_logits_backward = bce_with_logits_backward;
  t.nll_forward = nll_forward;
  t.nll_backward = nll_backward;
}

}  // namespace nn::cuda
