// The max pool's comparison, shared by pool_cpu.cpp and the convolutions that pool in their output
// pass (conv_winograd_cpu.cpp, conv_few_channels_cpu.cpp), so that all of them give max_pool2d's
// bits: scanning a window in order, b replaces the running maximum a when b > a or b is NaN (the
// first maximum wins ties, a NaN wins over everything, as PyTorch).
#pragma once

#include <cmath>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace nn::cpu {

template <typename T>
inline T max_pool_step(T a, T b) {
  return (b > a || std::isnan(b)) ? b : a;
}

#if defined(__x86_64__) || defined(__i386__)
// max_pool_step on 8 lanes.
__attribute__((target("avx2"))) inline __m256 max_pool_step_avx2(__m256 a, __m256 b) {
  const __m256 take = _mm256_or_ps(_mm256_cmp_ps(b, a, _CMP_GT_OQ), _mm256_cmp_ps(b, b, _CMP_UNORD_Q));
  return _mm256_blendv_ps(a, b, take);
}

// 16 consecutive floats (lo: 0..7, hi: 8..15) split into the even columns 0, 2, .., 14 and the
// odd ones 1, 3, .., 15, each in order: the left and right columns of eight 2-wide windows.
__attribute__((target("avx2"))) inline void split_even_odd_avx2(__m256 lo, __m256 hi, __m256& even, __m256& odd) {
  even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
  odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
}
#endif

}  // namespace nn::cpu
