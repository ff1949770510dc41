// Elementwise unary and broadcasting binary kernels on the CPU. Inputs arrive already expanded to
// the output's shape (stride 0 on broadcast dims); dense operands take a vectorisable flat loop,
// the rest a coalesced strided loop. Memory-bound: 1-3 memory streams per element.
#include <cmath>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"

namespace nn::cpu {
namespace {

template <typename T, typename F>
void unary_loop(const Tensor& x, Tensor& out, const F& f) {
  const T* xb = static_cast<const T*>(x.raw_data());
  T* ob = static_cast<T*>(out.raw_data());
  if (x.is_contiguous() && out.is_contiguous()) {
    parallel_for(0, out.numel(), 32768, [&](int64_t b, int64_t e) {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) ob[i] = f(xb[i]);
    });
    return;
  }
  StridedLoop<2> loop(out.shape(), {&out.strides(), &x.strides()});
  loop.for_each_run([&](std::array<int64_t, 2> off, int64_t n, std::array<int64_t, 2> st) {
    T* o = ob + off[0];
    const T* a = xb + off[1];
    for (int64_t i = 0; i < n; ++i) o[i * st[0]] = f(a[i * st[1]]);
  });
}

template <typename T, typename F>
void binary_loop(const Tensor& a, const Tensor& b, Tensor& out, const F& f) {
  const T* ab = static_cast<const T*>(a.raw_data());
  const T* bb = static_cast<const T*>(b.raw_data());
  T* ob = static_cast<T*>(out.raw_data());
  if (a.is_contiguous() && b.is_contiguous() && out.is_contiguous()) {
    parallel_for(0, out.numel(), 32768, [&](int64_t s, int64_t e) {
#pragma omp simd
      for (int64_t i = s; i < e; ++i) ob[i] = f(ab[i], bb[i]);
    });
    return;
  }
  StridedLoop<3> loop(out.shape(), {&out.strides(), &a.strides(), &b.strides()});
  loop.for_each_run([&](std::array<int64_t, 3> off, int64_t n, std::array<int64_t, 3> st) {
    T* o = ob + off[0];
    const T* x = ab + off[1];
    const T* y = bb + off[2];
    if (st[0] == 1 && st[1] == 1 && st[2] == 0) {  // row plus broadcast scalar: the common case
      const T yv = *y;
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], yv);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = f(x[i * st[1]], y[i * st[2]]);
    }
  });
}

void unary(UnaryOp op, const Tensor& x, Tensor& out, double alpha, double beta) {
  dispatch_float(out.dtype(), "unary", [&](auto tag) {
    using T = decltype(tag);
    const T a = static_cast<T>(alpha), b = static_cast<T>(beta);
    switch (op) {
      case UnaryOp::neg: return unary_loop<T>(x, out, [](T v) { return -v; });
      case UnaryOp::exp: return unary_loop<T>(x, out, [](T v) { return std::exp(v); });
      case UnaryOp::log: return unary_loop<T>(x, out, [](T v) { return std::log(v); });
      case UnaryOp::sqrt: return unary_loop<T>(x, out, [](T v) { return std::sqrt(v); });
      case UnaryOp::abs: return unary_loop<T>(x, out, [](T v) { return std::abs(v); });
      case UnaryOp::sign: return unary_loop<T>(x, out, [](T v) { return T((v > 0) - (v < 0)); });
      case UnaryOp::relu: return unary_loop<T>(x, out, [](T v) { return v > 0 ? v : T(0); });
      case UnaryOp::sigmoid: return unary_loop<T>(x, out, [](T v) { return stable_sigmoid(v); });
      case UnaryOp::tanh: return unary_loop<T>(x, out, [](T v) { return std::tanh(v); });
      case UnaryOp::step: return unary_loop<T>(x, out, [](T v) { return v > 0 ? T(1) : T(0); });
      case UnaryOp::add_scalar: return unary_loop<T>(x, out, [a](T v) { return v + a; });
      case UnaryOp::mul_scalar: return unary_loop<T>(x, out, [a](T v) { return v * a; });
      case UnaryOp::rsub_scalar: return unary_loop<T>(x, out, [a](T v) { return a - v; });
      case UnaryOp::rdiv_scalar: return unary_loop<T>(x, out, [a](T v) { return a / v; });
      case UnaryOp::pow_scalar:
        if (alpha == 2.0) return unary_loop<T>(x, out, [](T v) { return v * v; });
        return unary_loop<T>(x, out, [a](T v) { return std::pow(v, a); });
      case UnaryOp::clamp:
        return unary_loop<T>(x, out, [a, b](T v) { return v < a ? a : (v > b ? b : v); });
      case UnaryOp::clamp_mask:
        return unary_loop<T>(x, out, [a, b](T v) { return (v >= a && v <= b) ? T(1) : T(0); });
    }
    NN_ASSERT(false, "unknown unary op");
  });
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  dispatch_float(out.dtype(), "binary", [&](auto tag) {
    using T = decltype(tag);
    switch (op) {
      case BinaryOp::add: return binary_loop<T>(a, b, out, [](T x, T y) { return x + y; });
      case BinaryOp::sub: return binary_loop<T>(a, b, out, [](T x, T y) { return x - y; });
      case BinaryOp::mul: return binary_loop<T>(a, b, out, [](T x, T y) { return x * y; });
      case BinaryOp::div: return binary_loop<T>(a, b, out, [](T x, T y) { return x / y; });
      case BinaryOp::pow: return binary_loop<T>(a, b, out, [](T x, T y) { return std::pow(x, y); });
      case BinaryOp::maximum: return binary_loop<T>(a, b, out, [](T x, T y) { return x >= y ? x : y; });
      case BinaryOp::minimum: return binary_loop<T>(a, b, out, [](T x, T y) { return x <= y ? x : y; });
      case BinaryOp::relu_backward:
        return binary_loop<T>(a, b, out, [](T g, T y) { return y > 0 ? g : T(0); });
      case BinaryOp::sigmoid_backward:
        return binary_loop<T>(a, b, out, [](T g, T y) { return g * y * (T(1) - y); });
      case BinaryOp::tanh_backward:
        return binary_loop<T>(a, b, out, [](T g, T y) { return g * (T(1) - y * y); });
      case BinaryOp::max_backward_a:
        return binary_loop<T>(a, b, out, [](T x, T y) { return x >= y ? T(1) : T(0); });
      case BinaryOp::min_backward_a:
        return binary_loop<T>(a, b, out, [](T x, T y) { return x <= y ? T(1) : T(0); });
    }
    NN_ASSERT(false, "unknown binary op");
  });
}

}  // namespace

void register_elementwise_cpu(KernelTable& t) {
  t.unary = unary;
  t.binary = binary;
}

}  // namespace nn::cpu
