// Seeded random numbers. A Generator is counter-based (Philox4x32-10): the n-th random number of
// a stream depends only on (seed, n), so CPU threads and CUDA threads can produce the same numbers
// in any order, and the whole state is two integers (saved with checkpoints).
#pragma once

#include <array>
#include <cstdint>

#if defined(__CUDACC__)
#define NN_HOST_DEVICE __host__ __device__
#else
#define NN_HOST_DEVICE
#endif

namespace nn {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  // Number of 4x32-bit blocks already handed out.
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed; offset_ = offset; }
  void manual_seed(uint64_t seed) { seed_ = seed; offset_ = 0; }
  // Reserves `blocks` Philox blocks (4 uint32 each) and returns the first block's counter.
  uint64_t reserve(uint64_t blocks) { uint64_t o = offset_; offset_ += blocks; return o; }

 private:
  uint64_t seed_ = 0;
  uint64_t offset_ = 0;
};

// The process-wide generator used when none is given (module initialisation).
Generator& default_generator();
void manual_seed(uint64_t seed);

// Philox4x32-10 (Salmon et al., SC'11): 4 random uint32 from a 64-bit key and a 128-bit counter.
NN_HOST_DEVICE inline void philox4x32(uint64_t key, uint64_t counter_lo, uint64_t counter_hi,
                                      uint32_t out[4]) {
  uint32_t c0 = static_cast<uint32_t>(counter_lo), c1 = static_cast<uint32_t>(counter_lo >> 32);
  uint32_t c2 = static_cast<uint32_t>(counter_hi), c3 = static_cast<uint32_t>(counter_hi >> 32);
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

// Uniform in [0, 1) with 24 (float) or 53 (double) random bits.
NN_HOST_DEVICE inline float uint_to_unit_float(uint32_t x) { return (x >> 8) * (1.0f / 16777216.0f); }
NN_HOST_DEVICE inline double uints_to_unit_double(uint32_t a, uint32_t b) {
  uint64_t bits = (static_cast<uint64_t>(a) << 21) ^ (b >> 11);  // 53 bits
  return (bits & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

}  // namespace nn
