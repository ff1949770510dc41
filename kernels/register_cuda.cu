// The CUDA column of the kernel table (libnn/src/ops.def). Kernels missing here are reported by
// name when a CUDA tensor reaches them.
#include "kernel_table.h"

namespace nn {
namespace cuda {
void register_copy_cuda(KernelTable& t);
}

void register_cuda_kernels(KernelTable& t) { cuda::register_copy_cuda(t); }

}  // namespace nn
