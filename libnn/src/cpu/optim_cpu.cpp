// Optimizer update kernels on the CPU: one fused pass per parameter that reads the gradient and
// updates the parameter and its state in place. All operands dense, same shape and dtype (the
// optimizer checks). Memory-bound: SGD with momentum streams 4 arrays (p, g, buf read+write),
// Adam 7 (p, g, m, v, read and write), about 5 and 15 FLOPs per element.
#include <cmath>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"

namespace nn::cpu {
namespace {

constexpr int64_t kGrain = 16384;

void sgd_step(Tensor& param, const Tensor& grad, Tensor& momentum_buffer, const SgdStepParams& p) {
  NN_ASSERT(grad.numel() == param.numel(), "sgd_step: grad and param sizes differ");
  NN_ASSERT(!momentum_buffer.defined() || momentum_buffer.numel() == param.numel(),
            "sgd_step: momentum buffer and param sizes differ");
  dispatch_float(param.dtype(), "sgd_step", [&](auto tag) {
    using T = decltype(tag);
    T* w = param.data<T>();
    const T* g = grad.data<T>();
    T* buf = momentum_buffer.defined() ? momentum_buffer.data<T>() : nullptr;
    const T lr = static_cast<T>(p.lr), momentum = static_cast<T>(p.momentum);
    const T keep = static_cast<T>(1.0 - p.dampening), wd = static_cast<T>(p.weight_decay);
    // Branch on the options outside the loop: weight decay of 0 must not turn an inf weight into
    // NaN through inf*0, and the first step must not read the uninitialised buffer.
    const bool decay = p.weight_decay != 0.0, first = p.first_step, nesterov = p.nesterov;
    parallel_for(0, param.numel(), kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        T d = decay ? g[i] + wd * w[i] : g[i];
        if (buf) {
          T v = first ? d : momentum * buf[i] + keep * d;
          buf[i] = v;
          d = nesterov ? d + momentum * v : v;
        }
        w[i] -= lr * d;
      }
    });
  });
}

void adam_step(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq,
               const AdamStepParams& p) {
  NN_ASSERT(grad.numel() == param.numel() && exp_avg.numel() == param.numel() &&
                exp_avg_sq.numel() == param.numel(),
            "adam_step: operand sizes differ");
  NN_ASSERT(p.step >= 1, "adam_step: step is 1-based");
  dispatch_float(param.dtype(), "adam_step", [&](auto tag) {
    using T = decltype(tag);
    T* w = param.data<T>();
    const T* g = grad.data<T>();
    T* m = exp_avg.data<T>();
    T* v = exp_avg_sq.data<T>();
    // Scalars in double, rounded once: the bias corrections 1 - beta^t lose everything in f32 for
    // beta2 = 0.999 at small t otherwise.
    const double bc1 = 1.0 - std::pow(p.beta1, static_cast<double>(p.step));
    const double bc2 = 1.0 - std::pow(p.beta2, static_cast<double>(p.step));
    const T step_size = static_cast<T>(p.lr / bc1);
    const T bc2_sqrt = static_cast<T>(std::sqrt(bc2));
    const T beta1 = static_cast<T>(p.beta1), beta2 = static_cast<T>(p.beta2);
    const T one_minus_beta1 = static_cast<T>(1.0 - p.beta1), one_minus_beta2 = static_cast<T>(1.0 - p.beta2);
    const T eps = static_cast<T>(p.eps), wd = static_cast<T>(p.weight_decay);
    const T decay_factor = static_cast<T>(1.0 - p.lr * p.weight_decay);
    const bool decay = p.weight_decay != 0.0, decoupled = p.decoupled_weight_decay;
    parallel_for(0, param.numel(), kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        T gi = g[i];
        if (decay) {
          if (decoupled) w[i] *= decay_factor;
          else gi += wd * w[i];
        }
        T mi = beta1 * m[i] + one_minus_beta1 * gi;
        T vi = beta2 * v[i] + one_minus_beta2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] -= step_size * mi / (std::sqrt(vi) / bc2_sqrt + eps);
      }
    });
  });
}

}  // namespace

void register_optim_cpu(KernelTable& t) {
  t.sgd_step = sgd_step;
  t.adam_step = adam_step;
}

}  // namespace nn::cpu
