// Device memory and streams for CUDA tensors.
//
// Streams: one non-blocking stream per device, created on first use and never destroyed; every nn
// kernel and copy on that device runs on it (cuda_util.cuh: stream_for).
//
// Caching allocator: cudaMalloc/cudaFree synchronise the device and cost tens of microseconds, and
// a training step frees and reallocates the same activation sizes every iteration. Freed blocks
// are kept per device in a size-ordered free list and handed out again. Because all of nn's work
// on a device is ordered on its one stream, a block freed on the host while kernels that use it are
// still queued can be given to the next request at once: that request's kernels are queued after
// them. Sizes round up to 512 B below 1 MiB and to 1/8 of their power of two above (at most 12.5%
// slack); a cached block is reused for a request of up to its size only if it wastes at most 1/8.
// When cudaMalloc fails the cache is released and the call retried once; a second failure is an
// error that says how much was asked for and how much is free. NN_CUDA_CACHING=0 in the
// environment turns caching off (exact sizes, cudaFree at once) for compute-sanitizer runs.
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cuda_util.cuh"
#include "device_memory.h"
#include "nn/cuda.h"

namespace nn {
namespace cuda {
namespace {

constexpr int kMaxDevices = 64;

struct DeviceStreams {
  std::mutex mutex;
  cudaStream_t streams[kMaxDevices] = {};
};

DeviceStreams& device_streams() {
  static DeviceStreams* s = new DeviceStreams;  // never destroyed: used until process exit
  return *s;
}

size_t size_class(size_t nbytes) {
  if (nbytes == 0) nbytes = 1;
  if (nbytes < (size_t{1} << 20)) return (nbytes + 511) / 512 * 512;
  size_t top = size_t{1} << 20;
  while (top * 2 <= nbytes) top *= 2;
  const size_t step = top / 8;
  return (nbytes + step - 1) / step * step;
}

struct DevicePool {
  std::multimap<size_t, void*> free_blocks;   // size -> block
  std::unordered_map<void*, size_t> live;     // block -> size
  MemoryStats stats;
};

struct Allocator {
  std::mutex mutex;
  DevicePool pools[kMaxDevices];
  bool caching = true;
  Allocator() {
    const char* env = std::getenv("NN_CUDA_CACHING");
    if (env && std::strcmp(env, "0") == 0) caching = false;
  }
};

Allocator& allocator() {
  static Allocator* a = new Allocator;  // never destroyed: tensors may be freed at exit
  return *a;
}

// Returns the pool's cached blocks to the driver. Caller holds the allocator mutex.
void release_cached(DevicePool& pool, int index) {
  if (pool.free_blocks.empty()) return;
  cudaSetDevice(index);
  for (auto& kv : pool.free_blocks) cudaFree(kv.second);
  pool.stats.reserved_bytes -= pool.stats.cached_bytes;
  pool.stats.cached_bytes = 0;
  pool.free_blocks.clear();
}

void check_index(int index) {
  const int count = detail::cuda_count_devices();
  NN_CHECK(index >= 0 && index < count && index < kMaxDevices, "cuda:", index,
           " is not a CUDA device on this machine (", count, " found)");
}

}  // namespace

cudaStream_t stream(int index) {
  check_index(index);
  DeviceStreams& ds = device_streams();
  std::lock_guard<std::mutex> lock(ds.mutex);
  if (!ds.streams[index]) {
    int previous = 0;
    NN_CUDA_CHECK(cudaGetDevice(&previous));
    NN_CUDA_CHECK(cudaSetDevice(index));
    NN_CUDA_CHECK(cudaStreamCreateWithFlags(&ds.streams[index], cudaStreamNonBlocking));
    NN_CUDA_CHECK(cudaSetDevice(previous));
  }
  return ds.streams[index];
}

MemoryStats memory_stats(int device) {
  if (detail::cuda_count_devices() == 0) return {};  // as in a build without CUDA
  check_index(device);
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  return a.pools[device].stats;
}

void reset_peak_memory_stats(int device) {
  if (detail::cuda_count_devices() == 0) return;
  check_index(device);
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  a.pools[device].stats.peak_allocated_bytes = a.pools[device].stats.allocated_bytes;
}

void empty_cache() {
  const int count = detail::cuda_count_devices();
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  for (int i = 0; i < count && i < kMaxDevices; ++i) release_cached(a.pools[i], i);
}

void synchronize(int device) {
  if (detail::cuda_count_devices() == 0) return;
  NN_CUDA_CHECK(cudaStreamSynchronize(stream(device)));
}

}  // namespace cuda

namespace detail {

int cuda_count_devices() {
  // Counted once: no driver, an old driver or no device all read as "no device" (CUDA code skips).
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky error
      return 0;
    }
    return n;
  }();
  return count;
}

void* cuda_allocate(size_t nbytes, int index) {
  cuda::check_index(index);
  cuda::Allocator& a = cuda::allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  cuda::DevicePool& pool = a.pools[index];
  const size_t size = a.caching ? cuda::size_class(nbytes) : (nbytes == 0 ? 1 : nbytes);
  pool.stats.allocations++;
  void* p = nullptr;
  if (a.caching) {
    auto it = pool.free_blocks.lower_bound(size);
    if (it != pool.free_blocks.end() && it->first - size <= size / 8) {
      p = it->second;
      const size_t got = it->first;
      pool.free_blocks.erase(it);
      pool.stats.cached_bytes -= got;
      pool.live.emplace(p, got);
      pool.stats.cache_hits++;
      pool.stats.allocated_bytes += got;
      if (pool.stats.allocated_bytes > pool.stats.peak_allocated_bytes)
        pool.stats.peak_allocated_bytes = pool.stats.allocated_bytes;
      return p;
    }
  }
  NN_CUDA_CHECK(cudaSetDevice(index));
  cudaError_t status = cudaMalloc(&p, size);
  if (status == cudaErrorMemoryAllocation && !pool.free_blocks.empty()) {
    cudaGetLastError();
    pool.stats.cache_flushes++;
    cuda::release_cached(pool, index);
    status = cudaMalloc(&p, size);
  }
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    NN_CHECK(false, "CUDA out of memory on cuda:", index, ": asked for ", nbytes, " bytes, ", free_bytes,
             " bytes free of ", total_bytes, " (nn holds ", pool.stats.allocated_bytes, " bytes in tensors)");
  }
  NN_CUDA_CHECK(status);
  pool.stats.driver_allocations++;
  pool.live.emplace(p, size);
  pool.stats.allocated_bytes += size;
  pool.stats.reserved_bytes += size;
  if (pool.stats.allocated_bytes > pool.stats.peak_allocated_bytes)
    pool.stats.peak_allocated_bytes = pool.stats.allocated_bytes;
  return p;
}

void cuda_free(void* ptr, int index) noexcept {
  if (!ptr || index < 0 || index >= cuda::kMaxDevices) return;
  cuda::Allocator& a = cuda::allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  cuda::DevicePool& pool = a.pools[index];
  auto it = pool.live.find(ptr);
  if (it == pool.live.end()) return;  // not ours: nothing to do
  const size_t size = it->second;
  pool.live.erase(it);
  pool.stats.allocated_bytes -= size;
  if (a.caching) {
    pool.free_blocks.emplace(size, ptr);
    pool.stats.cached_bytes += size;
    return;
  }
  pool.stats.reserved_bytes -= size;
  cudaSetDevice(index);
  cudaFree(ptr);  // errors at teardown cannot be reported from a destructor
}

void cuda_memcpy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  const int index = dst_device.is_cuda() ? dst_device.index : src_device.index;
  NN_CUDA_CHECK(cudaSetDevice(index));
  cudaStream_t s = cuda::stream(index);
  if (dst_device.is_cuda() && src_device.is_cuda()) {
    if (dst_device.index == src_device.index) {
      NN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, s));
      return;  // ordered on the stream like a kernel
    }
    // Across devices: both streams drained, then a peer copy.
    NN_CUDA_CHECK(cudaStreamSynchronize(cuda::stream(src_device.index)));
    NN_CUDA_CHECK(cudaStreamSynchronize(s));
    NN_CUDA_CHECK(cudaMemcpyPeer(dst, dst_device.index, src, src_device.index, nbytes));
    return;
  }
  // Host <-> device: queued after the work that produced the data, and waited for, because the
  // host side is pageable memory the caller may read or free right after.
  const cudaMemcpyKind kind = dst_device.is_cpu() ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice;
  NN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, kind, s));
  NN_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace detail
}  // namespace nn
