// Raw memory on any device. CPU memory is 64-byte aligned; CUDA memory comes from the CUDA
// backend (kernels/cuda_memory.cu) and is an error naming the build when CUDA is not compiled in.
#pragma once

#include <cstddef>

#include "nn/device.h"

namespace nn::detail {

void* device_allocate(size_t nbytes, Device device);
void device_free(void* ptr, Device device) noexcept;
// Copies nbytes between any two devices (synchronous).
void device_memcpy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);

#ifdef NN_WITH_CUDA
void* cuda_allocate(size_t nbytes, int index);
void cuda_free(void* ptr, int index) noexcept;
void cuda_memcpy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);
int cuda_count_devices();
#endif

}  // namespace nn::detail
