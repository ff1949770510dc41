#include "device_memory.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>

#include "nn/cuda.h"
#include "nn/error.h"

namespace nn {
namespace detail {
namespace {

// Host memory. Large blocks (activations, gradients, workspaces: the same sizes again at every
// training step) are kept in a small cache when freed instead of going back to the OS: glibc
// serves blocks above its mmap threshold (at most 32 MiB) with fresh mmaps, so every step paid page
// faults and page zeroing for all its activations again (5% of a VGG training step in `perf`).
// Each block carries its size class in a 64-byte header. Sizes round up to 1/8 of their power of
// two (at most 12.5% slack); at most kCacheLimit bytes stay cached, and a failed allocation
// releases the cache and retries once.
constexpr size_t kHeader = 64;
constexpr size_t kMinCached = size_t{1} << 18;  // 256 KiB: smaller blocks go straight to malloc
constexpr size_t kCacheLimit = size_t{1} << 30;  // 1 GiB

size_t size_class(size_t nbytes) {
  size_t rounded = (nbytes + 63) / 64 * 64;
  if (rounded < kMinCached) return rounded == 0 ? 64 : rounded;
  size_t top = kMinCached;
  while (top * 2 <= rounded) top *= 2;
  const size_t step = top / 8;
  return (rounded + step - 1) / step * step;
}

struct HostCache {
  std::mutex mutex;
  std::unordered_multimap<size_t, void*> free_blocks;  // size class -> block (header included)
  size_t bytes = 0;
};

HostCache& host_cache() {
  static HostCache* cache = new HostCache;  // never destroyed: tensors may be freed at exit
  return *cache;
}

void* host_allocate(size_t nbytes) {
  const size_t cls = size_class(nbytes);
  if (cls >= kMinCached) {
    HostCache& cache = host_cache();
    std::lock_guard<std::mutex> lock(cache.mutex);
    auto it = cache.free_blocks.find(cls);
    if (it != cache.free_blocks.end()) {
      void* block = it->second;
      cache.free_blocks.erase(it);
      cache.bytes -= cls;
      return static_cast<char*>(block) + kHeader;
    }
  }
  void* block = std::aligned_alloc(64, cls + kHeader);
  if (!block && cls >= kMinCached) {
    // Give the cache back and try once more.
    HostCache& cache = host_cache();
    std::lock_guard<std::mutex> lock(cache.mutex);
    for (auto& kv : cache.free_blocks) std::free(kv.second);
    cache.free_blocks.clear();
    cache.bytes = 0;
    block = std::aligned_alloc(64, cls + kHeader);
  }
  NN_CHECK(block != nullptr, "out of host memory: could not allocate ", nbytes, " bytes");
  *static_cast<size_t*>(block) = cls;
  return static_cast<char*>(block) + kHeader;
}

void host_free(void* ptr) noexcept {
  void* block = static_cast<char*>(ptr) - kHeader;
  const size_t cls = *static_cast<size_t*>(block);
  if (cls >= kMinCached) {
    HostCache& cache = host_cache();
    std::lock_guard<std::mutex> lock(cache.mutex);
    if (cache.bytes + cls <= kCacheLimit) {
      cache.free_blocks.emplace(cls, block);
      cache.bytes += cls;
      return;
    }
  }
  std::free(block);
}

}  // namespace

void* device_allocate(size_t nbytes, Device device) {
  if (device.is_cpu()) return host_allocate(nbytes);
#ifdef NN_WITH_CUDA
  return cuda_allocate(nbytes, device.index);
#else
  NN_CHECK(false, "cannot allocate on ", device.str(), ": nn was built without CUDA (NN_CUDA=OFF or no nvcc)");
#endif
}

void device_free(void* ptr, Device device) noexcept {
  if (!ptr) return;
  if (device.is_cpu()) {
    host_free(ptr);
    return;
  }
#ifdef NN_WITH_CUDA
  cuda_free(ptr, device.index);
#endif
}

void device_memcpy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, nbytes);
    return;
  }
#ifdef NN_WITH_CUDA
  cuda_memcpy(dst, dst_device, src, src_device, nbytes);
#else
  NN_CHECK(false, "cannot copy between ", src_device.str(), " and ", dst_device.str(),
           ": nn was built without CUDA");
#endif
}

}  // namespace detail

int cuda_device_count() {
#ifdef NN_WITH_CUDA
  return detail::cuda_count_devices();
#else
  return 0;
#endif
}

bool cuda_available() { return cuda_device_count() > 0; }

}  // namespace nn

#ifndef NN_WITH_CUDA
// Without the CUDA backend there is no device memory to report or release.
namespace nn::cuda {
MemoryStats memory_stats(int) { return {}; }
void reset_peak_memory_stats(int) {}
void empty_cache() {}
void synchronize(int) {}
}  // namespace nn::cuda
#endif
