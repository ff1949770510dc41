// The kernel table generated from ops.def, its parameter types, and the lookup used by ops.
#pragma once

#include <cstdint>

#include "nn/tensor.h"

namespace nn {

enum class UnaryOp : uint8_t {
  neg, exp, log, sqrt, abs, sign, relu, sigmoid, tanh,
  step,          // 1 where x > 0 else 0
  add_scalar,    // x + alpha
  mul_scalar,    // x * alpha
  rsub_scalar,   // alpha - x
  rdiv_scalar,   // alpha / x
  pow_scalar,    // x ^ alpha
  clamp,         // min(max(x, alpha), beta)
  clamp_mask,    // 1 where alpha <= x <= beta else 0
};

enum class BinaryOp : uint8_t {
  add, sub, mul, div, pow, maximum, minimum,
  relu_backward,     // (grad, y): y > 0 ? grad : 0
  sigmoid_backward,  // (grad, y): grad * y * (1 - y)
  tanh_backward,     // (grad, y): grad * (1 - y^2)
  max_backward_a,    // (a, b): 1 where a >= b (the gradient of maximum to a), else 0
  min_backward_a,    // (a, b): 1 where a <= b, else 0
};

struct Conv2dGeometry {
  int64_t n, c, h, w;        // input
  int64_t o, kh, kw;         // weight
  int64_t oh, ow;            // output
  int64_t stride_h, stride_w, pad_h, pad_w;
};

struct Pool2dGeometry {
  int64_t n, c, h, w, oh, ow;
  int64_t kh, kw, stride_h, stride_w, pad_h, pad_w;
  bool count_include_pad;
};

struct SgdStepParams {
  double lr, momentum, dampening, weight_decay;
  bool nesterov;
  bool first_step;  // momentum buffer starts as the gradient
};

struct AdamStepParams {
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled_weight_decay;  // AdamW
  int64_t step;                 // 1-based, after increment
};

struct KernelTable {
#define NN_KERNEL(name, params) void(*name) params = nullptr;
#include "ops.def"
#undef NN_KERNEL
};

// The table of a device type; filled once by its backend.
KernelTable& kernel_table(DeviceType type);

[[noreturn]] void missing_kernel(const char* name, Device device);

template <typename Fn>
Fn lookup_kernel(Fn KernelTable::*entry, const char* name, Device device) {
  Fn fn = kernel_table(device.type).*entry;
  if (!fn) missing_kernel(name, device);
  return fn;
}

// NN_DISPATCH(conv2d_forward, device)(args...) calls the kernel of that device or throws.
#define NN_DISPATCH(name, device) ::nn::lookup_kernel(&::nn::KernelTable::name, #name, (device))

void register_cpu_kernels(KernelTable& table);
#ifdef NN_WITH_CUDA
void register_cuda_kernels(KernelTable& table);
#endif

}  // namespace nn
