// The kernel table generated from ops.def, its parameter types, and the lookup used by ops.
#pragma once

#include <array>
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

// A 2-D convolution (cross-correlation, no dilation) as the kernels see it, built by from() or
// derived from another one below. Nothing here checks the sizes (ops/conv.cpp does).
struct Conv2dGeometry {
  int64_t n, c, h, w;        // input
  int64_t o, kh, kw;         // weight
  int64_t oh, ow;            // output
  int64_t stride_h, stride_w, pad_h, pad_w;

  // x (N, C, H, W) correlated with a weight (O, C, KH, KW): OH = (H + 2*pad_h - KH) / stride_h + 1,
  // likewise OW.
  static Conv2dGeometry from(const Shape& x, const Shape& weight, std::array<int64_t, 2> stride,
                             std::array<int64_t, 2> padding) {
    const int64_t oh = (x[2] + 2 * padding[0] - weight[2]) / stride[0] + 1;
    const int64_t ow = (x[3] + 2 * padding[1] - weight[3]) / stride[1] + 1;
    return {x[0], x[1], x[2], x[3], weight[0], weight[2], weight[3], oh, ow, stride[0], stride[1], padding[0],
            padding[1]};
  }

  // The backward-input pass read as a convolution from dy to dx, i.e. the transposed convolution:
  // input dy (N, O, OH, OW), output dx (N, C, H, W), the same window, stride and padding. Input
  // pixel (y, x) of dx gathers tap (r, s) from dy[(y + pad_h - r) / stride_h][(x + pad_w - s) /
  // stride_w] where both divisions are exact (zero otherwise).
  Conv2dGeometry transposed() const { return {n, o, oh, ow, c, kh, kw, h, w, stride_h, stride_w, pad_h, pad_w}; }

  // For stride 1: the forward convolution that computes this one's input gradient, dy (N, O, OH, OW)
  // correlated with the weight rotated by 180 degrees and its channels swapped (C, O, KH, KW), with
  // padding KH - 1 - pad_h (likewise w), gives dx (N, C, H, W).
  Conv2dGeometry input_gradient_as_forward() const {
    return {n, o, oh, ow, c, kh, kw, h, w, 1, 1, kh - 1 - pad_h, kw - 1 - pad_w};
  }
};

// A 2-D max or average pooling as the kernels see it, built by from(); ops/pool.cpp checks the
// options.
struct Pool2dGeometry {
  int64_t n, c, h, w, oh, ow;
  int64_t kh, kw, stride_h, stride_w, pad_h, pad_w;
  bool count_include_pad;

  // x (N, C, H, W) pooled by a KH x KW window (stride and padding as given); OH, OW as PyTorch
  // computes them (pooled_size).
  static Pool2dGeometry from(const Shape& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
                             std::array<int64_t, 2> padding, bool ceil_mode, bool count_include_pad) {
    const int64_t oh = pooled_size(x[2], kernel[0], stride[0], padding[0], ceil_mode);
    const int64_t ow = pooled_size(x[3], kernel[1], stride[1], padding[1], ceil_mode);
    return {x[0], x[1], x[2], x[3], oh, ow, kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1],
            count_include_pad};
  }

  // PyTorch's pooling output length along one dim: floor((in + 2*pad - kernel + (ceil_mode ?
  // stride - 1 : 0)) / stride) + 1, minus one when ceil_mode would start the last window past the
  // input and its left padding. Below 1 when the window does not fit.
  static int64_t pooled_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, bool ceil_mode) {
    const int64_t span = in + 2 * pad - kernel + (ceil_mode ? stride - 1 : 0);
    // Floor division: span is negative when the kernel does not fit.
    int64_t out = (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1;
    // The last window must start inside the input or its left padding.
    if (ceil_mode && out > 0 && (out - 1) * stride >= in + pad) --out;
    return out;
  }
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
