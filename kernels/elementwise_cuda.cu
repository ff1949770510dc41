// Elementwise unary and broadcasting binary kernels on CUDA (semantics: elementwise_cpu.cpp).
// Inputs arrive already expanded to out's shape (stride 0 on broadcast dims, any strides); out is
// dense and may alias an input of the same layout (each thread reads element i before writing it).
// The op is a template parameter, so each (op, dtype) pair is its own branch-free kernel.
//  - Every operand dense: a grid-stride loop over 16-byte vectors (float4 / double2) when every
//    pointer is 16-byte aligned, the last numel % vector_width elements scalar; a scalar dense loop
//    when some pointer is not aligned (a view with a storage offset).
//  - Otherwise: dims are coalesced on the host (size-1 dims dropped, dims contiguous for every
//    operand merged), then one thread per output element finds its input offsets with one
//    div/mod chain shared by the inputs (32-bit index arithmetic when numel < 2^31).
// Memory-bound: 2-3 streams per element.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "cuda_util.cuh"

namespace nn::cuda {
namespace {

constexpr int kThreads = 256;
// pow_scalar with alpha == 2 is x*x on the CPU (not pow): its own op id here.
constexpr int kSquare = 1000;

// ---- the ops ----

template <typename T>
__device__ inline T stable_sigmoid(T v) {
  if (v >= T(0)) return T(1) / (T(1) + std::exp(-v));
  const T e = std::exp(v);
  return e / (T(1) + e);
}

template <int op, typename T>
__device__ inline T apply_unary(T v, T a, T b) {
  if constexpr (op == static_cast<int>(UnaryOp::neg)) return -v;
  else if constexpr (op == static_cast<int>(UnaryOp::exp)) return std::exp(v);
  else if constexpr (op == static_cast<int>(UnaryOp::log)) return std::log(v);
  else if constexpr (op == static_cast<int>(UnaryOp::sqrt)) return std::sqrt(v);
  else if constexpr (op == static_cast<int>(UnaryOp::abs)) return std::abs(v);
  else if constexpr (op == static_cast<int>(UnaryOp::sign)) return T((v > T(0)) - (v < T(0)));
  else if constexpr (op == static_cast<int>(UnaryOp::relu)) return v > T(0) ? v : T(0);
  else if constexpr (op == static_cast<int>(UnaryOp::sigmoid)) return stable_sigmoid(v);
  else if constexpr (op == static_cast<int>(UnaryOp::tanh)) return std::tanh(v);
  else if constexpr (op == static_cast<int>(UnaryOp::step)) return v > T(0) ? T(1) : T(0);
  else if constexpr (op == static_cast<int>(UnaryOp::add_scalar)) return v + a;
  else if constexpr (op == static_cast<int>(UnaryOp::mul_scalar)) return v * a;
  else if constexpr (op == static_cast<int>(UnaryOp::rsub_scalar)) return a - v;
  else if constexpr (op == static_cast<int>(UnaryOp::rdiv_scalar)) return a / v;
  else if constexpr (op == static_cast<int>(UnaryOp::pow_scalar)) return std::pow(v, a);
  else if constexpr (op == kSquare) return v * v;
  else if constexpr (op == static_cast<int>(UnaryOp::clamp)) return v < a ? a : (v > b ? b : v);
  else if constexpr (op == static_cast<int>(UnaryOp::clamp_mask)) return (v >= a && v <= b) ? T(1) : T(0);
  else static_assert(op < 0, "unhandled unary op");
}

template <int op, typename T>
__device__ inline T apply_binary(T x, T y) {
  if constexpr (op == static_cast<int>(BinaryOp::add)) return x + y;
  else if constexpr (op == static_cast<int>(BinaryOp::sub)) return x - y;
  else if constexpr (op == static_cast<int>(BinaryOp::mul)) return x * y;
  else if constexpr (op == static_cast<int>(BinaryOp::div)) return x / y;
  else if constexpr (op == static_cast<int>(BinaryOp::pow)) return std::pow(x, y);
  else if constexpr (op == static_cast<int>(BinaryOp::maximum)) return x >= y ? x : y;
  else if constexpr (op == static_cast<int>(BinaryOp::minimum)) return x <= y ? x : y;
  else if constexpr (op == static_cast<int>(BinaryOp::relu_backward)) return y > T(0) ? x : T(0);
  else if constexpr (op == static_cast<int>(BinaryOp::sigmoid_backward)) return x * y * (T(1) - y);
  else if constexpr (op == static_cast<int>(BinaryOp::tanh_backward)) return x * (T(1) - y * y);
  else if constexpr (op == static_cast<int>(BinaryOp::max_backward_a)) return x >= y ? T(1) : T(0);
  else if constexpr (op == static_cast<int>(BinaryOp::min_backward_a)) return x <= y ? T(1) : T(0);
  else static_assert(op < 0, "unhandled binary op");
}

// ---- dense operands ----

// 16 bytes of T, loaded and stored as one vector instruction.
template <typename T>
struct alignas(16) Vec16 {
  static constexpr int kWidth = 16 / sizeof(T);
  T v[kWidth];
};

template <int op, typename T>
__global__ void unary_dense_vec_kernel(const T* x, T* out, int64_t n, T a, T b) {
  using V = Vec16<T>;
  const int64_t nvec = n / V::kWidth;
  const V* xv = reinterpret_cast<const V*>(x);
  V* ov = reinterpret_cast<V*>(out);
  for (int64_t i = thread_index(); i < nvec; i += thread_count()) {
    V r = xv[i];
#pragma unroll
    for (int k = 0; k < V::kWidth; ++k) r.v[k] = apply_unary<op, T>(r.v[k], a, b);
    ov[i] = r;
  }
  const int64_t tail = nvec * V::kWidth + thread_index();  // fewer than kWidth elements left
  if (tail < n) out[tail] = apply_unary<op, T>(x[tail], a, b);
}

template <int op, typename T>
__global__ void unary_dense_kernel(const T* x, T* out, int64_t n, T a, T b) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) out[i] = apply_unary<op, T>(x[i], a, b);
}

template <int op, typename T>
__global__ void binary_dense_vec_kernel(const T* a, const T* b, T* out, int64_t n) {
  using V = Vec16<T>;
  const int64_t nvec = n / V::kWidth;
  const V* av = reinterpret_cast<const V*>(a);
  const V* bv = reinterpret_cast<const V*>(b);
  V* ov = reinterpret_cast<V*>(out);
  for (int64_t i = thread_index(); i < nvec; i += thread_count()) {
    const V x = av[i], y = bv[i];
    V r;
#pragma unroll
    for (int k = 0; k < V::kWidth; ++k) r.v[k] = apply_binary<op, T>(x.v[k], y.v[k]);
    ov[i] = r;
  }
  const int64_t tail = nvec * V::kWidth + thread_index();
  if (tail < n) out[tail] = apply_binary<op, T>(a[tail], b[tail]);
}

template <int op, typename T>
__global__ void binary_dense_kernel(const T* a, const T* b, T* out, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) out[i] = apply_binary<op, T>(a[i], b[i]);
}

// ---- strided inputs, dense output ----

// out's shape (coalesced) with the strides of up to two inputs.
struct BroadcastIndex {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t stride[2][kMaxDims];
};

// Drops size-1 dims and merges dim d into d-1 where every input (and the dense output) is
// contiguous across them, so typical broadcasts become 1-2 dims.
BroadcastIndex coalesce(const Tensor& out, const Tensor* const inputs[], int count) {
  NN_CHECK(out.dim() <= kMaxDims, "CUDA kernels support at most ", kMaxDims, " dimensions, got ", out.dim());
  BroadcastIndex ix{};
  ix.ndim = 0;
  for (int64_t d = 0; d < out.dim(); ++d) {
    const int64_t size = out.shape()[d];
    if (size == 1) continue;
    bool merge = ix.ndim > 0;
    for (int k = 0; k < count && merge; ++k)
      merge = ix.stride[k][ix.ndim - 1] == inputs[k]->strides()[d] * size;
    if (merge) {
      ix.shape[ix.ndim - 1] *= size;
      for (int k = 0; k < count; ++k) ix.stride[k][ix.ndim - 1] = inputs[k]->strides()[d];
    } else {
      ix.shape[ix.ndim] = size;
      for (int k = 0; k < count; ++k) ix.stride[k][ix.ndim] = inputs[k]->strides()[d];
      ++ix.ndim;
    }
  }
  if (ix.ndim == 0) {  // a single element
    ix.ndim = 1;
    ix.shape[0] = 1;
    for (int k = 0; k < 2; ++k) ix.stride[k][0] = 0;
  }
  return ix;
}

// Offsets of the row-major linear index in inputs 0..kInputs-1; Index is uint32_t when numel fits.
template <int kInputs, typename Index>
__device__ inline void broadcast_offsets(const BroadcastIndex& ix, Index linear, int64_t off[kInputs]) {
#pragma unroll
  for (int k = 0; k < kInputs; ++k) off[k] = 0;
  for (int d = ix.ndim - 1; d >= 0; --d) {
    const Index size = static_cast<Index>(ix.shape[d]);
    const Index i = linear % size;
    linear /= size;
#pragma unroll
    for (int k = 0; k < kInputs; ++k) off[k] += static_cast<int64_t>(i) * ix.stride[k][d];
  }
}

template <int op, typename T, typename Index>
__global__ void unary_strided_kernel(const T* x, BroadcastIndex ix, T* out, int64_t n, T a, T b) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    int64_t off[1];
    broadcast_offsets<1, Index>(ix, static_cast<Index>(i), off);
    out[i] = apply_unary<op, T>(x[off[0]], a, b);
  }
}

template <int op, typename T, typename Index>
__global__ void binary_strided_kernel(const T* a, const T* b, BroadcastIndex ix, T* out, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    int64_t off[2];
    broadcast_offsets<2, Index>(ix, static_cast<Index>(i), off);
    out[i] = apply_binary<op, T>(a[off[0]], b[off[1]]);
  }
}

// ---- launch ----

template <int op, typename T>
void launch_unary(const Tensor& x, Tensor& out, T a, T b, cudaStream_t s) {
  const int64_t n = out.numel();
  const T* xp = static_cast<const T*>(x.raw_data());
  T* op_ = static_cast<T*>(out.raw_data());
  if (x.is_contiguous()) {
    if (aligned16(xp) && aligned16(op_)) {
      unary_dense_vec_kernel<op, T><<<blocks_for(n / Vec16<T>::kWidth + 1, kThreads), kThreads, 0, s>>>(xp, op_, n, a, b);
    } else {
      unary_dense_kernel<op, T><<<blocks_for(n, kThreads), kThreads, 0, s>>>(xp, op_, n, a, b);
    }
    NN_CUDA_CHECK_LAUNCH();
    return;
  }
  const Tensor* inputs[1] = {&x};
  const BroadcastIndex ix = coalesce(out, inputs, 1);
  if (n <= INT32_MAX)
    unary_strided_kernel<op, T, uint32_t><<<blocks_for(n, kThreads), kThreads, 0, s>>>(xp, ix, op_, n, a, b);
  else
    unary_strided_kernel<op, T, uint64_t><<<blocks_for(n, kThreads), kThreads, 0, s>>>(xp, ix, op_, n, a, b);
  NN_CUDA_CHECK_LAUNCH();
}

template <int op, typename T>
void launch_binary(const Tensor& a, const Tensor& b, Tensor& out, cudaStream_t s) {
  const int64_t n = out.numel();
  const T* ap = static_cast<const T*>(a.raw_data());
  const T* bp = static_cast<const T*>(b.raw_data());
  T* op_ = static_cast<T*>(out.raw_data());
  if (a.is_contiguous() && b.is_contiguous()) {
    if (aligned16(ap) && aligned16(bp) && aligned16(op_)) {
      binary_dense_vec_kernel<op, T><<<blocks_for(n / Vec16<T>::kWidth + 1, kThreads), kThreads, 0, s>>>(ap, bp, op_, n);
    } else {
      binary_dense_kernel<op, T><<<blocks_for(n, kThreads), kThreads, 0, s>>>(ap, bp, op_, n);
    }
    NN_CUDA_CHECK_LAUNCH();
    return;
  }
  const Tensor* inputs[2] = {&a, &b};
  const BroadcastIndex ix = coalesce(out, inputs, 2);
  if (n <= INT32_MAX)
    binary_strided_kernel<op, T, uint32_t><<<blocks_for(n, kThreads), kThreads, 0, s>>>(ap, bp, ix, op_, n);
  else
    binary_strided_kernel<op, T, uint64_t><<<blocks_for(n, kThreads), kThreads, 0, s>>>(ap, bp, ix, op_, n);
  NN_CUDA_CHECK_LAUNCH();
}

void unary(UnaryOp op, const Tensor& x, Tensor& out, double alpha, double beta) {
  NN_CHECK(out.is_contiguous(), "unary: CUDA output must be dense");
  NN_CHECK(x.shape() == out.shape(), "unary: input and output shapes differ");
  if (out.numel() == 0) return;
  cudaStream_t s = stream_for(out);
  dispatch_float(out.dtype(), "unary", [&](auto tag) {
    using T = decltype(tag);
    const T a = static_cast<T>(alpha), b = static_cast<T>(beta);
    switch (op) {
#define NN_UNARY_CASE(name) \
  case UnaryOp::name: return launch_unary<static_cast<int>(UnaryOp::name), T>(x, out, a, b, s);
      NN_UNARY_CASE(neg)
      NN_UNARY_CASE(exp)
      NN_UNARY_CASE(log)
      NN_UNARY_CASE(sqrt)
      NN_UNARY_CASE(abs)
      NN_UNARY_CASE(sign)
      NN_UNARY_CASE(relu)
      NN_UNARY_CASE(sigmoid)
      NN_UNARY_CASE(tanh)
      NN_UNARY_CASE(step)
      NN_UNARY_CASE(add_scalar)
      NN_UNARY_CASE(mul_scalar)
      NN_UNARY_CASE(rsub_scalar)
      NN_UNARY_CASE(rdiv_scalar)
      NN_UNARY_CASE(clamp)
      NN_UNARY_CASE(clamp_mask)
#undef NN_UNARY_CASE
      case UnaryOp::pow_scalar:
        if (alpha == 2.0) return launch_unary<kSquare, T>(x, out, a, b, s);
        return launch_unary<static_cast<int>(UnaryOp::pow_scalar), T>(x, out, a, b, s);
    }
    NN_CHECK(false, "unary: unknown op ", static_cast<int>(op));
  });
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  NN_CHECK(out.is_contiguous(), "binary: CUDA output must be dense");
  NN_CHECK(a.shape() == out.shape() && b.shape() == out.shape(), "binary: inputs must be broadcast to out's shape");
  if (out.numel() == 0) return;
  cudaStream_t s = stream_for(out);
  dispatch_float(out.dtype(), "binary", [&](auto tag) {
    using T = decltype(tag);
    switch (op) {
#define NN_BINARY_CASE(name) \
  case BinaryOp::name: return launch_binary<static_cast<int>(BinaryOp::name), T>(a, b, out, s);
      NN_BINARY_CASE(add)
      NN_BINARY_CASE(sub)
      NN_BINARY_CASE(mul)
      NN_BINARY_CASE(div)
      NN_BINARY_CASE(pow)
      NN_BINARY_CASE(maximum)
      NN_BINARY_CASE(minimum)
      NN_BINARY_CASE(relu_backward)
      NN_BINARY_CASE(sigmoid_backward)
      NN_BINARY_CASE(tanh_backward)
      NN_BINARY_CASE(max_backward_a)
      NN_BINARY_CASE(min_backward_a)
#undef NN_BINARY_CASE
    }
    NN_CHECK(false, "binary: unknown op ", static_cast<int>(op));
  });
}

}  // namespace

void register_elementwise_cuda(KernelTable& t) {
  t.unary = unary;
  t.binary = binary;
}

}  // namespace nn::cuda
