// Winograd F(4x4, 3x3) convolution on CUDA: the kernels and launchers of the non-fused path whose
// algorithm, data layouts, workspace and per-thread code are described in conv_winograd_cuda.cuh.
// Per pass (P tiles of 4x4 outputs per chunk of images, L = P rounded up to 4, or per segment):
//   forward / backward data  filter transform (one thread per (o, c)), input transform (one thread per
//                            (channel, tile)), 36 SGEMMs O x L x C, output transform (one thread per
//                            (o, tile)) with bias and ReLU
//   backward weight          input transform of x, output-gradient transform of dy (one thread per
//                            (o, tile)), 36 * S SGEMMs O x C x L (dM V^T), the S segment partials
//                            summed in order (one thread per (point, o, c); deterministic), final
//                            G^T . G per (o, c)
// Thread mapping of the transforms: blockIdx.x * 256 + threadIdx.x is the tile (column), the
// fastest index of V, M and dM, so each of a thread's 36 stores (or loads) of one point is coalesced
// across the warp; blockIdx.y walks the channels (a grid-stride loop past 65535). The 6x6 input
// patches of neighbouring tiles overlap by 2 columns; those re-reads hit L1. Bandwidth per pass, with
// VGG's 256 -> 256 layer at 56x56, batch 64 as the example: V and M are 460 MB each, written once and
// read once (about 0.45 ms at 4 TB/s), x and y are 205 MB each; the 36 GEMMs are 59 GFLOP.
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "conv_winograd_cuda.cuh"
#include "cuda_util.cuh"
#include "gemm_cuda.cuh"

namespace nn::cuda {
namespace {

using namespace winograd;

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) winograd_filter_transform_kernel(const FilterTransformArgs a,
                                                                              int64_t count) {
  for (int64_t i = thread_index(); i < count; i += thread_count())
    filter_transform_element(a, i);
}

__global__ void __launch_bounds__(kThreads) winograd_input_transform_kernel(const InputTransformArgs a,
                                                                             int64_t channels, int64_t columns) {
  const int64_t p = thread_index();
  if (p >= columns) return;
  for (int64_t c = blockIdx.y; c < channels; c += gridDim.y) input_transform_element(a, c, p);
}

__global__ void __launch_bounds__(kThreads) winograd_output_transform_kernel(const OutputTransformArgs a,
                                                                              int64_t channels, int64_t columns) {
  const int64_t p = thread_index();
  if (p >= columns) return;
  for (int64_t o = blockIdx.y; o < channels; o += gridDim.y) output_transform_element(a, o, p);
}

__global__ void __launch_bounds__(kThreads) winograd_output_grad_transform_kernel(const OutputGradTransformArgs a,
                                                                                   int64_t channels,
                                                                                   int64_t columns) {
  const int64_t p = thread_index();
  if (p >= columns) return;
  for (int64_t o = blockIdx.y; o < channels; o += gridDim.y) output_grad_transform_element(a, o, p);
}

__global__ void __launch_bounds__(kThreads) winograd_segment_sum_kernel(const WeightGradFinishArgs a, int64_t count) {
  for (int64_t j = thread_index(); j < count; j += thread_count())
    segment_sum_element(a, j);
}

__global__ void __launch_bounds__(kThreads) winograd_weight_grad_finish_kernel(const WeightGradFinishArgs a,
                                                                                int64_t count) {
  for (int64_t i = thread_index(); i < count; i += thread_count())
    weight_grad_finish_element(a, i);
}

// Grid of a (channel, column) transform: columns along x, channels along y (looped past 65535).
dim3 transform_grid(int64_t channels, int64_t columns) {
  const int64_t blocks_x = ceil_div(columns, kThreads);
  NN_CHECK(columns < INT_MAX && blocks_x <= INT_MAX, "conv2d Winograd on CUDA: ", columns, " tiles in one chunk");
  return dim3(static_cast<unsigned>(blocks_x), static_cast<unsigned>(std::min<int64_t>(channels, 65535)));
}

// The drivers' executor: each step is one launch on `stream`.
struct GpuExec {
  cudaStream_t stream;

  void filter_transform(const FilterTransformArgs& a, int64_t count) {
    winograd_filter_transform_kernel<<<blocks_for(count, kThreads), kThreads, 0, stream>>>(a, count);
    NN_CUDA_CHECK_LAUNCH();
  }
  void input_transform(const InputTransformArgs& a, int64_t channels, int64_t columns) {
    winograd_input_transform_kernel<<<transform_grid(channels, columns), kThreads, 0, stream>>>(a, channels, columns);
    NN_CUDA_CHECK_LAUNCH();
  }
  void output_transform(const OutputTransformArgs& a, int64_t channels, int64_t columns) {
    winograd_output_transform_kernel<<<transform_grid(channels, columns), kThreads, 0, stream>>>(a, channels, columns);
    NN_CUDA_CHECK_LAUNCH();
  }
  void output_grad_transform(const OutputGradTransformArgs& a, int64_t channels, int64_t columns) {
    winograd_output_grad_transform_kernel<<<transform_grid(channels, columns), kThreads, 0, stream>>>(a, channels,
                                                                                                     columns);
    NN_CUDA_CHECK_LAUNCH();
  }
  void segment_sum(const WeightGradFinishArgs& a, int64_t count) {
    winograd_segment_sum_kernel<<<blocks_for(count, kThreads), kThreads, 0, stream>>>(a, count);
    NN_CUDA_CHECK_LAUNCH();
  }
  void weight_grad_finish(const WeightGradFinishArgs& a, int64_t count) {
    winograd_weight_grad_finish_kernel<<<blocks_for(count, kThreads), kThreads, 0, stream>>>(a, count);
    NN_CUDA_CHECK_LAUNCH();
  }
  void gemm(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, int64_t stride_a,
            const float* b, int64_t ldb, int64_t stride_b, float beta, float* c, int64_t ldc, int64_t stride_c,
            int64_t batch) {
    sgemm(stream, false, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc, stride_c, batch);
  }
};

void check_workspace(void* workspace, size_t bytes, const char* pass) {
  NN_CHECK(workspace != nullptr, "conv2d Winograd ", pass, " on CUDA: needs ", bytes, " bytes of workspace");
  NN_CHECK(aligned16(workspace), "conv2d Winograd ", pass, " on CUDA: the workspace must be 16-byte aligned");
}

void check_geometry(const Conv2dGeometry& g) {
  NN_CHECK(winograd_applicable(g), "conv2d Winograd on CUDA: not a 3x3 stride-1 convolution with padding <= 2 and "
                                   ">= 16 channels");
}

void run_forward_like(const ForwardProblem& pr, const float* in, const float* w, bool rotate, const float* bias,
                      bool relu, float* out, void* workspace, const char* pass, cudaStream_t stream) {
  const ForwardPlan plan = plan_forward(pr, kMaxWorkspaceBytes);
  check_workspace(workspace, plan.bytes(), pass);
  GpuExec ex{stream};
  run_forward(ex, pr, plan, in, w, rotate, bias, relu, out, aligned16(out), static_cast<float*>(workspace));
}

}  // namespace

bool winograd_applicable(const Conv2dGeometry& g) {
  if (g.kh != 3 || g.kw != 3 || g.stride_h != 1 || g.stride_w != 1) return false;
  if (g.pad_h < 0 || g.pad_h > 2 || g.pad_w < 0 || g.pad_w > 2) return false;
  if (g.c < 16 || g.o < 16 || g.n < 1 || g.oh < 1 || g.ow < 1) return false;
  // The input has the padded size of the output plus 2 (stride 1): guards against a geometry whose
  // oh, ow do not match h, w.
  if (g.oh != g.h + 2 * g.pad_h - 2 || g.ow != g.w + 2 * g.pad_w - 2) return false;
  const int64_t tiles = ceil_div(g.oh, 4) * ceil_div(g.ow, 4);
  return g.oh * g.ow >= 8 * tiles;
}

size_t winograd_forward_workspace_bytes(const Conv2dGeometry& g) {
  return plan_forward(forward_problem(g), kMaxWorkspaceBytes).bytes();
}

void winograd_forward_f32(const float* x, const float* w, const float* bias, float* y, const Conv2dGeometry& g,
                          bool relu, void* workspace, cudaStream_t stream) {
  check_geometry(g);
  run_forward_like(forward_problem(g), x, w, false, bias, relu, y, workspace, "forward", stream);
}

size_t winograd_backward_input_workspace_bytes(const Conv2dGeometry& g) {
  return plan_forward(forward_problem(g.input_gradient_as_forward()), kMaxWorkspaceBytes).bytes();
}

void winograd_backward_input_f32(const float* dy, const float* w, float* dx, const Conv2dGeometry& g,
                                 void* workspace, cudaStream_t stream) {
  check_geometry(g);
  run_forward_like(forward_problem(g.input_gradient_as_forward()), dy, w, true, nullptr, false, dx, workspace,
                   "backward input", stream);
}

size_t winograd_backward_weight_workspace_bytes(const Conv2dGeometry& g) {
  return plan_weight_grad(g, multiprocessor_count(), kMaxWorkspaceBytes).bytes();
}

void winograd_backward_weight_f32(const float* dy, const float* x, float* dw, const Conv2dGeometry& g,
                                  void* workspace, cudaStream_t stream) {
  check_geometry(g);
  const WeightGradPlan plan = plan_weight_grad(g, multiprocessor_count(), kMaxWorkspaceBytes);
  check_workspace(workspace, plan.bytes(), "backward weight");
  GpuExec ex{stream};
  run_weight_grad(ex, g, plan, dy, x, dw, static_cast<float*>(workspace));
}

}  // namespace nn::cuda
