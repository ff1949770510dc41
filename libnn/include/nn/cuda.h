// The CUDA runtime as users see it: the caching allocator's statistics and cache release, and
// waiting for the device. Every nn kernel and copy on a device is ordered on one stream per device,
// so tensors freed on the host are reused by later work in that order without waiting.
// Without a device (or in a build without CUDA) these report zeros and do nothing.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nn::cuda {

struct MemoryStats {
  size_t allocated_bytes = 0;       // held by live tensors now (rounded to size classes)
  size_t cached_bytes = 0;          // freed blocks kept for reuse
  size_t reserved_bytes = 0;        // allocated + cached: what the driver has given nn
  size_t peak_allocated_bytes = 0;  // since the start or reset_peak_memory_stats()
  uint64_t allocations = 0;         // requests served
  uint64_t cache_hits = 0;          // requests served from the cache
  uint64_t driver_allocations = 0;  // cudaMalloc calls
  uint64_t cache_flushes = 0;       // times a failed cudaMalloc released the cache and retried
};

MemoryStats memory_stats(int device = 0);
void reset_peak_memory_stats(int device = 0);
// Returns every cached (free) block on every device to the driver.
void empty_cache();
// Waits until all of nn's queued work on `device` has finished.
void synchronize(int device = 0);

}  // namespace nn::cuda
