// Each CPU op family registers its kernels into the table (libnn/src/ops.def).
#pragma once

#include "kernel_table.h"

namespace nn::cpu {

void register_copy_cpu(KernelTable& t);
void register_random_cpu(KernelTable& t);
void register_elementwise_cpu(KernelTable& t);
void register_reduce_cpu(KernelTable& t);
void register_matmul_cpu(KernelTable& t);
void register_conv_cpu(KernelTable& t);
void register_pool_cpu(KernelTable& t);
void register_batch_norm_cpu(KernelTable& t);
void register_softmax_cpu(KernelTable& t);
void register_loss_cpu(KernelTable& t);
void register_optim_cpu(KernelTable& t);

}  // namespace nn::cpu
