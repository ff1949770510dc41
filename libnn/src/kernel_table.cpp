#include "kernel_table.h"

#include "cpu/cpu_kernels.h"

namespace nn {

void register_cpu_kernels(KernelTable& t) {
  cpu::register_copy_cpu(t);
  cpu::register_random_cpu(t);
  cpu::register_elementwise_cpu(t);
  cpu::register_reduce_cpu(t);
  cpu::register_matmul_cpu(t);
  cpu::register_conv_cpu(t);
  cpu::register_pool_cpu(t);
  cpu::register_batch_norm_cpu(t);
  cpu::register_softmax_cpu(t);
  cpu::register_loss_cpu(t);
  cpu::register_optim_cpu(t);
}

KernelTable& kernel_table(DeviceType type) {
  static KernelTable cpu_table = [] {
    KernelTable t;
    register_cpu_kernels(t);
    return t;
  }();
  static KernelTable cuda_table = [] {
    KernelTable t;
#ifdef NN_WITH_CUDA
    register_cuda_kernels(t);
#endif
    return t;
  }();
  return type == DeviceType::cpu ? cpu_table : cuda_table;
}

void missing_kernel(const char* name, Device device) {
#ifdef NN_WITH_CUDA
  const char* build = "";
#else
  const char* build = device.is_cuda() ? " (nn was built without CUDA)" : "";
#endif
  NN_CHECK(false, "op kernel '", name, "' has no implementation for device ", device.str(), build);
}

}  // namespace nn
