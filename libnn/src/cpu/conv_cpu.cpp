#include "cpu/cpu_kernels.h"

namespace nn::cpu {

void register_conv_cpu(KernelTable& t) { (void)t; }

}  // namespace nn::cpu
