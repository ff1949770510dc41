// Element types. f32 and f64 compute on the CPU (f64 serves references and gradient checks);
// f16/bf16 are storage types for now (weights load and convert); i64/i32/u8 hold indices, labels
// and masks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>

namespace nn {

enum class DType : uint8_t { f32, f64, f16, bf16, i64, i32, u8 };

inline constexpr DType f32 = DType::f32;
inline constexpr DType f64 = DType::f64;
inline constexpr DType f16 = DType::f16;
inline constexpr DType bf16 = DType::bf16;
inline constexpr DType i64 = DType::i64;
inline constexpr DType i32 = DType::i32;
inline constexpr DType u8 = DType::u8;

size_t dtype_size(DType t);
const char* dtype_name(DType t);
bool is_floating(DType t);
inline std::ostream& operator<<(std::ostream& out, DType t) { return out << dtype_name(t); }

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };

// IEEE half and bfloat16 <-> float conversions (round to nearest even).
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);
float bfloat16_to_float(uint16_t b);
uint16_t float_to_bfloat16(float f);

}  // namespace nn
