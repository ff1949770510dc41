// Convolution backward passes on CUDA (f32) for layers with very few input channels, such as
// VGG16's first layer (C = 3 -> O = 64, 3x3): there the implicit GEMM of conv_cuda.cu has one
// tiny matrix dimension (M = C for backward input, N = C*KH*KW for backward weight) and wastes
// most of its block tile. These kernels are shaped for that case instead (design in
// conv_few_channels_cuda.cu). Same conventions as conv_cuda.cuh: dense NCHW activations, OIHW
// weights, cross-correlation as PyTorch, outputs written (not accumulated), everything enqueued
// on `stream`, deterministic results.
//
// Call a launcher only where its *_applicable rule holds (the launchers check it again).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernel_table.h"

namespace nn::cuda {

// Backward input: stride 1, square kernel 1x1 .. 5x5, any padding, 1 <= C <= 4, and the weights
// fit in 48 KiB of shared memory (O * K * roundup4(K * C) floats: O <= 341 for 3x3 with C = 3).
bool few_channels_backward_input_applicable(const Conv2dGeometry& g);

// dx (N,C,H,W) = the gradient of the input for dy (N,O,OH,OW) and w (O,C,K,K); written.
void conv2d_backward_input_few_channels_f32(const float* dy, const float* w, float* dx, const Conv2dGeometry& g,
                                            cudaStream_t stream);

// Backward weight: square kernel, C <= 4 and C * K * K <= 32 (C <= 3 for 3x3), any O, stride and
// padding.
bool few_channels_backward_weight_applicable(const Conv2dGeometry& g);

// Scratch the launcher below needs (per-task partial sums of dW, at most a few MiB; 0 when the
// result is all zeros and no scratch is used). Independent of the device, as are the results.
size_t conv2d_backward_weight_few_channels_workspace_bytes(const Conv2dGeometry& g);

// dw (O,C,K,K) = the gradient of the weights for dy (N,O,OH,OW) and x (N,C,H,W); written.
// `workspace` holds conv2d_backward_weight_few_channels_workspace_bytes(g) bytes.
void conv2d_backward_weight_few_channels_f32(const float* dy, const float* x, float* dw, const Conv2dGeometry& g,
                                             void* workspace, cudaStream_t stream);

}  // namespace nn::cuda
