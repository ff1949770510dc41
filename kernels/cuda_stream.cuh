// RAII for CUDA streams and events (the benchmarks time with Event), over the per-device stream
// that all of nn's kernels run on (stream() in cuda_util.cuh).
#pragma once

#include <cuda_runtime.h>

#include "cuda_check.cuh"

namespace nn::cuda {

// An owned non-blocking stream on the current device.
class Stream {
 public:
  Stream() { NN_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~Stream() {
    if (s_) cudaStreamDestroy(s_);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }
  void synchronize() const { NN_CUDA_CHECK(cudaStreamSynchronize(s_)); }

 private:
  cudaStream_t s_ = nullptr;
};

// An owned event with timing enabled.
class Event {
 public:
  Event() { NN_CUDA_CHECK(cudaEventCreate(&e_)); }
  ~Event() {
    if (e_) cudaEventDestroy(e_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(cudaStream_t s) { NN_CUDA_CHECK(cudaEventRecord(e_, s)); }
  void synchronize() const { NN_CUDA_CHECK(cudaEventSynchronize(e_)); }
  // Milliseconds from `start` to this event (both recorded and complete).
  float elapsed_ms_since(const Event& start) const {
    float ms = 0;
    NN_CUDA_CHECK(cudaEventElapsedTime(&ms, start.e_, e_));
    return ms;
  }
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

}  // namespace nn::cuda
