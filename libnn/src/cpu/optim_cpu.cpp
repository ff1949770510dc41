#include "cpu/cpu_kernels.h"

namespace nn::cpu {

void register_optim_cpu(KernelTable& t) { (void)t; }

}  // namespace nn::cpu
