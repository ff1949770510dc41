// Raw launchers of the CUDA convolution kernels (conv_cuda.cu) on device pointers: f32, dense
// NCHW activations and OIHW weights, cross-correlation as PyTorch (Conv2dGeometry: no dilation,
// no groups). The kernel table entries call these; the benchmark and the cuDNN peer test call them
// directly. Everything is enqueued on `stream`; nothing synchronises.
//
// Two algorithms behind one API: 3x3 stride-1 convolutions with padding <= 2 and >= 16 channels
// each side (winograd_applicable, conv_winograd_cuda.cuh) run as non-fused Winograd F(4x4, 3x3),
// all three passes; everything else as implicit GEMM (conv_cuda.cu).
//
// Every pass may need scratch memory on the device, passed in by the caller (so a benchmark can
// hold it across runs and the table entries take it from the caching allocator):
//   Winograd (any pass)  the transformed weights, inputs and products: up to ~1 GiB (the batch is
//                        processed in chunks of images beyond that)
//   backward input       (implicit GEMM) the weights transposed to (C, O, KH, KW)
//   backward weight      (implicit GEMM) the split-K partial sums of dW, when the reduction is split
// conv2d_*_workspace_bytes says how much (0: pass nullptr); it depends on the geometry and on the
// number of SMs of the current device, so ask on the device that runs the launch. The workspace
// must be 16-byte aligned (cudaMalloc's and the caching allocator's are).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernel_table.h"

namespace nn::cuda {

// y (N,O,OH,OW) = conv(x (N,C,H,W), w (O,C,KH,KW)) + bias (O; nullptr: none), then max(., 0) when
// relu. y is written, not accumulated.
size_t conv2d_forward_workspace_bytes(const Conv2dGeometry& g);
void conv2d_forward_f32(const float* x, const float* w, const float* bias, float* y, const Conv2dGeometry& g,
                        bool relu, void* workspace, cudaStream_t stream);

// dx (N,C,H,W) = the gradient of the input for dy (N,O,OH,OW); written, not accumulated.
size_t conv2d_backward_input_workspace_bytes(const Conv2dGeometry& g);
void conv2d_backward_input_f32(const float* dy, const float* w, float* dx, const Conv2dGeometry& g, void* workspace,
                               cudaStream_t stream);

// dw (O,C,KH,KW) = the gradient of the weights for dy and x; written, not accumulated.
// Deterministic: the split-K partials are summed in a fixed order.
size_t conv2d_backward_weight_workspace_bytes(const Conv2dGeometry& g);
void conv2d_backward_weight_f32(const float* dy, const float* x, float* dw, const Conv2dGeometry& g, void* workspace,
                                cudaStream_t stream);

}  // namespace nn::cuda
