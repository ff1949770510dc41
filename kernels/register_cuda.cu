// The CUDA column of the kernel table (libnn/src/ops.def): every kernel has a CUDA version, one
// file per op family with the CPU side's names (copy_cuda.cu <-> cpu/copy_cpu.cpp, ...).
// tests/test_cuda.cpp checks that no entry is left empty.
#include "kernel_table.h"

namespace nn {
namespace cuda {
void register_copy_cuda(KernelTable& t);
void register_random_cuda(KernelTable& t);
void register_elementwise_cuda(KernelTable& t);
void register_reduce_cuda(KernelTable& t);
void register_matmul_cuda(KernelTable& t);
void register_conv_cuda(KernelTable& t);
void register_pool_cuda(KernelTable& t);
void register_batch_norm_cuda(KernelTable& t);
void register_softmax_cuda(KernelTable& t);
void register_loss_cuda(KernelTable& t);
void register_optim_cuda(KernelTable& t);
}  // namespace cuda

void register_cuda_kernels(KernelTable& t) {
  cuda::register_copy_cuda(t);
  cuda::register_random_cuda(t);
  cuda::register_elementwise_cuda(t);
  cuda::register_reduce_cuda(t);
  cuda::register_matmul_cuda(t);
  cuda::register_conv_cuda(t);
  cuda::register_pool_cuda(t);
  cuda::register_batch_norm_cuda(t);
  cuda::register_softmax_cuda(t);
  cuda::register_loss_cuda(t);
  cuda::register_optim_cuda(t);
}

}  // namespace nn
