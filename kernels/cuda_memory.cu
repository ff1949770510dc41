// Device memory for CUDA tensors: allocation with an out-of-memory message that says how much was
// asked for and how much is free, frees, and copies between host and device. (The caching
// allocator belongs to the CUDA backend issue; this is the plain cudaMalloc path.)
#include <cuda_runtime.h>

#include "cuda_check.cuh"
#include "device_memory.h"

namespace nn::detail {

int cuda_count_devices() {
  int n = 0;
  // No driver, an old driver or no device all read as "no device": CUDA code then skips.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error
    return 0;
  }
  return n;
}

void* cuda_allocate(size_t nbytes, int index) {
  NN_CHECK(index >= 0 && index < cuda_count_devices(), "cuda:", index, " is not a CUDA device on this machine (",
           cuda_count_devices(), " found)");
  NN_CUDA_CHECK(cudaSetDevice(index));
  void* p = nullptr;
  cudaError_t status = cudaMalloc(&p, nbytes == 0 ? 1 : nbytes);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    NN_CHECK(false, "CUDA out of memory on cuda:", index, ": asked for ", nbytes, " bytes, ", free_bytes,
             " bytes free of ", total_bytes);
  }
  NN_CUDA_CHECK(status);
  return p;
}

void cuda_free(void* ptr, int index) noexcept {
  cudaSetDevice(index);
  cudaFree(ptr);  // errors at teardown cannot be reported from a destructor
}

void cuda_memcpy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  cudaMemcpyKind kind = dst_device.is_cpu() ? cudaMemcpyDeviceToHost
                        : src_device.is_cpu() ? cudaMemcpyHostToDevice
                                              : cudaMemcpyDeviceToDevice;
  NN_CUDA_CHECK(cudaSetDevice(dst_device.is_cuda() ? dst_device.index : src_device.index));
  NN_CUDA_CHECK(cudaMemcpy(dst, src, nbytes, kind));
}

}  // namespace nn::detail
