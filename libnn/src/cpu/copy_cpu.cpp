// fill and strided copy with dtype conversion, on the CPU. Memory-bound: one read and one write
// per element.
#include <cstring>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"
#include "tensor_internal.h"

namespace nn::cpu {
namespace {

// Element types as stored; f16/bf16 travel as uint16_t bits.
struct Half { uint16_t bits; };
struct BFloat { uint16_t bits; };

template <typename T> inline double to_double(T v) { return static_cast<double>(v); }
template <> inline double to_double(Half v) { return half_to_float(v.bits); }
template <> inline double to_double(BFloat v) { return bfloat16_to_float(v.bits); }
template <typename T> inline T from_double(double v) { return static_cast<T>(v); }
template <> inline Half from_double(double v) { return Half{float_to_half(static_cast<float>(v))}; }
template <> inline BFloat from_double(double v) { return BFloat{float_to_bfloat16(static_cast<float>(v))}; }

template <typename F>
void dispatch_any(DType dtype, const F& f) {
  switch (dtype) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    case DType::f16: f(Half{}); return;
    case DType::bf16: f(BFloat{}); return;
    case DType::i64: f(int64_t{}); return;
    case DType::i32: f(int32_t{}); return;
    case DType::u8: f(uint8_t{}); return;
  }
}

template <typename S, typename D>
inline D convert(S v) {
  if constexpr (std::is_same_v<S, D>) return v;
  else if constexpr (std::is_arithmetic_v<S> && std::is_arithmetic_v<D>) return static_cast<D>(v);
  else return from_double<D>(to_double(v));
}

void fill(Tensor& out, double value) {
  dispatch_any(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T v = from_double<T>(value);
    T* base = static_cast<T*>(out.raw_data());
    StridedLoop<1> loop(out.shape(), {&out.strides()});
    loop.for_each_run([&](std::array<int64_t, 1> off, int64_t n, std::array<int64_t, 1> st) {
      T* p = base + off[0];
      for (int64_t i = 0; i < n; ++i) p[i * st[0]] = v;
    });
  });
}

void copy(const Tensor& src, Tensor& dst) {
  NN_ASSERT(src.shape() == dst.shape(), "copy: shapes differ");
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    const char* s = static_cast<const char*>(src.raw_data());
    char* d = static_cast<char*>(dst.raw_data());
    const int64_t bytes = src.numel() * static_cast<int64_t>(dtype_size(src.dtype()));
    if (s == d) return;
    parallel_for(0, bytes, 1 << 20, [&](int64_t b, int64_t e) { std::memmove(d + b, s + b, e - b); });
    return;
  }
  dispatch_any(src.dtype(), [&](auto src_tag) {
    using S = decltype(src_tag);
    dispatch_any(dst.dtype(), [&](auto dst_tag) {
      using D = decltype(dst_tag);
      const S* sb = static_cast<const S*>(src.raw_data());
      D* db = static_cast<D*>(dst.raw_data());
      StridedLoop<2> loop(dst.shape(), {&dst.strides(), &src.strides()});
      loop.for_each_run([&](std::array<int64_t, 2> off, int64_t n, std::array<int64_t, 2> st) {
        D* d = db + off[0];
        const S* s = sb + off[1];
        for (int64_t i = 0; i < n; ++i) d[i * st[0]] = convert<S, D>(s[i * st[1]]);
      });
    });
  });
}

}  // namespace

void register_copy_cpu(KernelTable& t) {
  t.fill = fill;
  t.copy = copy;
}

}  // namespace nn::cpu
