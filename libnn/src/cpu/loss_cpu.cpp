// Loss kernels on the CPU. BCE with logits per element, in the overflow-free form
//   loss = w * ((1 - t) * x + (1 + (pw - 1) * t) * softplus(-x)),  softplus(-x) = log1p(exp(-|x|)) + max(-x, 0)
//   dloss/dx = w * ((1 - t) - (1 + (pw - 1) * t) * sigmoid(-x))
// and the negative log-likelihood gather/scatter of cross-entropy. All memory-bound.
#include <cmath>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"

namespace nn::cpu {
namespace {

template <typename T>
const T* optional_data(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

void bce_with_logits_forward(const Tensor& x, const Tensor& target, const Tensor& weight, const Tensor& pos_weight,
                             Tensor& loss) {
  dispatch_float(x.dtype(), "bce_with_logits_forward", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    const T* tp = target.data<T>();
    const T* wp = optional_data<T>(weight);
    const T* pp = optional_data<T>(pos_weight);
    T* lp = loss.data<T>();
    parallel_for(0, x.numel(), 16384, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const T v = xp[i], t = tp[i];
        const T softplus_neg = std::log1p(std::exp(-std::abs(v))) + (v < 0 ? -v : T(0));
        const T log_weight = pp ? T(1) + (pp[i] - T(1)) * t : T(1);
        T l = (T(1) - t) * v + log_weight * softplus_neg;
        lp[i] = wp ? wp[i] * l : l;
      }
    });
  });
}

void bce_with_logits_backward(const Tensor& dloss, const Tensor& x, const Tensor& target, const Tensor& weight,
                              const Tensor& pos_weight, Tensor& dx) {
  dispatch_float(x.dtype(), "bce_with_logits_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* gp = dloss.data<T>();
    const T* xp = x.data<T>();
    const T* tp = target.data<T>();
    const T* wp = optional_data<T>(weight);
    const T* pp = optional_data<T>(pos_weight);
    T* dp = dx.data<T>();
    parallel_for(0, x.numel(), 16384, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const T v = xp[i], t = tp[i];
        const T sig_neg = stable_sigmoid(-v);
        const T log_weight = pp ? T(1) + (pp[i] - T(1)) * t : T(1);
        T d = (T(1) - t) - log_weight * sig_neg;
        dp[i] = gp[i] * (wp ? wp[i] * d : d);
      }
    });
  });
}

void nll_forward(const Tensor& logp, const Tensor& target, const Tensor& weight, int64_t ignore_index, Tensor& loss,
                 Tensor& sample_weight) {
  dispatch_float(logp.dtype(), "nll_forward", [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = logp.shape()[0], c = logp.shape()[1];
    const T* lp = logp.data<T>();
    const int64_t* tp = target.data<int64_t>();
    const T* wp = optional_data<T>(weight);
    T* out = loss.data<T>();
    T* sw = sample_weight.data<T>();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = tp[i];
      if (t == ignore_index) {
        out[i] = 0;
        sw[i] = 0;
        continue;
      }
      NN_ASSERT(t >= 0 && t < c, "nll_forward: target ", t, " was not validated by the op");
      const T w = wp ? wp[t] : T(1);
      out[i] = -w * lp[i * c + t];
      sw[i] = w;
    }
  });
}

void nll_backward(const Tensor& dloss, const Tensor& target, const Tensor& weight, int64_t ignore_index, Tensor& dlogp) {
  dispatch_float(dlogp.dtype(), "nll_backward", [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = dlogp.shape()[0], c = dlogp.shape()[1];
    const T* gp = dloss.data<T>();
    const int64_t* tp = target.data<int64_t>();
    const T* wp = optional_data<T>(weight);
    T* dp = dlogp.data<T>();
    std::fill(dp, dp + n * c, T(0));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = tp[i];
      if (t == ignore_index || t < 0 || t >= c) continue;
      dp[i * c + t] = -(wp ? wp[t] : T(1)) * gp[i];
    }
  });
}

}  // namespace

void register_loss_cpu(KernelTable& t) {
  t.bce_with_logits_forward = bce_with_logits_forward;
  t.bce_with_logits_backward = bce_with_logits_backward;
  t.nll_forward = nll_forward;
  t.nll_backward = nll_backward;
}

}  // namespace nn::cpu
