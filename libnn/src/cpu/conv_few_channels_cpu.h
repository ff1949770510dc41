// The forward convolution on the CPU (f32) for layers with very few input channels (C <= 4, 3x3,
// stride 1: VGG's first layer), direct, with bias, ReLU and the 2x2 max pool in the same pass; see
// conv_few_channels_cpu.cpp. The CUDA side's counterpart for the backward passes is
// kernels/conv_few_channels_cuda.cu.
#pragma once

#include "kernel_table.h"

namespace nn::cpu {

// The most input channels the direct kernel takes: beyond that im2col + GEMM (depth C*9) is as
// fast, and Winograd takes over from 16.
constexpr int64_t kFewChannelsMax = 4;

// Whether conv_few_channels_forward handles the convolution: 1 <= C <= kFewChannelsMax, a 3x3
// kernel, stride 1, padding 0..2, a non-empty output.
bool few_channels_applicable(const Conv2dGeometry& g);

// y = relu?(conv(x (N,C,H,W), w (O,C,3,3)) + bias (O, nullable)), (N,O,OH,OW); with max_pool_2x2,
// y is its 2x2 stride-2 max pool (floor mode), (N,O,OH/2,OW/2), bit for bit max_pool2d's. y is
// overwritten. Multithreaded (serial inside a parallel region). Requires few_channels_applicable.
void conv_few_channels_forward(const float* x, const float* w, const float* bias, bool relu, float* y,
                               const Conv2dGeometry& g, bool max_pool_2x2);

// Tests: run the portable loops even where AVX2/FMA is available. Not thread-safe against running
// convolutions.
void few_channels_use_portable_kernel(bool portable);

}  // namespace nn::cpu
