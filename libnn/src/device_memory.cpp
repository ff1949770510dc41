#include "device_memory.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "nn/error.h"

namespace nn {
namespace detail {

void* device_allocate(size_t nbytes, Device device) {
  if (device.is_cpu()) {
    size_t rounded = (nbytes + 63) / 64 * 64;
    if (rounded == 0) rounded = 64;
    void* p = std::aligned_alloc(64, rounded);
    NN_CHECK(p != nullptr, "out of host memory: could not allocate ", nbytes, " bytes");
    return p;
  }
#ifdef NN_WITH_CUDA
  return cuda_allocate(nbytes, device.index);
#else
  NN_CHECK(false, "cannot allocate on ", device.str(), ": nn was built without CUDA (NN_CUDA=OFF or no nvcc)");
#endif
}

void device_free(void* ptr, Device device) noexcept {
  if (!ptr) return;
  if (device.is_cpu()) {
    std::free(ptr);
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
