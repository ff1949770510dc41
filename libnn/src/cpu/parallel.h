// parallel_for over [begin, end) in chunks on the CPU thread pool (OpenMP), serial when the range
// is smaller than `grain` or when already inside a parallel region.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "nn/parallel.h"

namespace nn::cpu {

void ensure_threads_initialised();

template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  int64_t n = end - begin;
  if (n <= 0) return;
  ensure_threads_initialised();
  int threads = get_num_threads();
  if (n <= grain || threads <= 1 || omp_in_parallel()) {
    f(begin, end);
    return;
  }
  int64_t chunks = std::min<int64_t>(threads, (n + grain - 1) / std::max<int64_t>(grain, 1));
  chunks = std::max<int64_t>(chunks, 1);
#pragma omp parallel for num_threads(static_cast<int>(chunks)) schedule(static, 1)
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t b = begin + n * c / chunks;
    int64_t e = begin + n * (c + 1) / chunks;
    if (b < e) f(b, e);
  }
}

}  // namespace nn::cpu
