// Shared by the CUDA benchmark programs (bench/cuda_*_bench.cu): device arrays, seeded random
// fills, an L2 flush between timed runs, CUDA-event timing with a median, and result checks.
// Method (../shared/docs/GPU.md): check results against the library before timing, warm up,
// flush L2 before each timed launch, time with events, report the median.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#define BENCH_CUDA_OK(expr)                                                                      \
  do {                                                                                           \
    cudaError_t bench_status_ = (expr);                                                          \
    if (bench_status_ != cudaSuccess)                                                            \
      throw std::runtime_error(std::string(#expr) + ": " + cudaGetErrorString(bench_status_));   \
  } while (0)

namespace bench {

// A device array of T, freed on destruction.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t n) : n_(n) { BENCH_CUDA_OK(cudaMalloc(&p_, std::max<size_t>(n, 1) * sizeof(T))); }
  ~DeviceArray() {
    if (p_) cudaFree(p_);
  }
  DeviceArray(DeviceArray&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }
  void upload(const std::vector<T>& h) { BENCH_CUDA_OK(cudaMemcpy(p_, h.data(), n_ * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    BENCH_CUDA_OK(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// Uniform values in [lo, hi) from a fixed seed.
inline std::vector<float> random_vector(size_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

inline DeviceArray<float> random_device(size_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  DeviceArray<float> d(n);
  d.upload(random_vector(n, seed, lo, hi));
  return d;
}

// Writes over a buffer twice the L2 size so the next timed launch starts with a cold cache.
class L2Flush {
 public:
  L2Flush() {
    int dev = 0, l2 = 0;
    BENCH_CUDA_OK(cudaGetDevice(&dev));
    BENCH_CUDA_OK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
    bytes_ = static_cast<size_t>(std::max(l2, 1 << 20)) * 2;
    BENCH_CUDA_OK(cudaMalloc(&p_, bytes_));
  }
  ~L2Flush() { cudaFree(p_); }
  void operator()(cudaStream_t s) { BENCH_CUDA_OK(cudaMemsetAsync(p_, 0, bytes_, s)); }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// Milliseconds of one launch of f (which enqueues work on s), timed with events after an L2 flush.
template <typename F>
double time_once_ms(cudaStream_t s, L2Flush& flush, const F& f) {
  cudaEvent_t a, b;
  BENCH_CUDA_OK(cudaEventCreate(&a));
  BENCH_CUDA_OK(cudaEventCreate(&b));
  flush(s);
  BENCH_CUDA_OK(cudaEventRecord(a, s));
  f();
  BENCH_CUDA_OK(cudaEventRecord(b, s));
  BENCH_CUDA_OK(cudaEventSynchronize(b));
  float ms = 0;
  BENCH_CUDA_OK(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms;
}

// Median of `runs` timed launches after `warmup` untimed ones.
template <typename F>
double median_ms(cudaStream_t s, L2Flush& flush, const F& f, int runs = 15, int warmup = 3) {
  for (int i = 0; i < warmup; ++i) f();
  BENCH_CUDA_OK(cudaStreamSynchronize(s));
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) t.push_back(time_once_ms(s, flush, f));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Largest |a-b| / (atol + rtol*|b|) over the arrays: <= 1 means within tolerance.
inline double max_scaled_error(const std::vector<float>& a, const std::vector<float>& b, double atol, double rtol) {
  double worst = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    double e = std::abs(static_cast<double>(a[i]) - b[i]) / (atol + rtol * std::abs(static_cast<double>(b[i])));
    if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
  }
  return worst;
}

}  // namespace bench
