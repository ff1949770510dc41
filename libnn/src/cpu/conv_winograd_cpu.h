// Winograd F(4x4, 3x3) convolution on the CPU, float32, NCHW: 3x3 stride-1 convolutions with
// padding 0..2, any N, C, O, H, W. About 4x fewer multiplies than the direct convolution on large
// images (36 products per 4x4 output tile instead of 144); see conv_winograd_cpu.cpp for the
// algorithm, layout, blocking and costs, and bench/README.md ("Winograd on the CPU") for the
// measurements behind the rules below.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "cpu/gemm_cpu.h"
#include "kernel_table.h"

namespace nn::cpu {

// Whether the Winograd path applies and pays off for this convolution: a 3x3 stride-1 kernel with
// padding 0..2 on each side, at least kWinogradMinChannels input and output channels, an output
// whose 4x4 tiles are mostly inside it (>= 2x fewer multiplies than direct: 7x7 and 3x3 yes, 5x5
// and 2x2 no), and, when the transformed weights exceed 4 MiB (C*O > ~29000, e.g. 256x128), at
// least kWinogradMinOutputsBigWeights output positions over the batch to amortise transforming them,
// unless `weights_transformed` (the forward pass with the inference weight cache on: the transform
// is made once and kept, so nothing is left to amortise; VGG16's 14x14 layers at batch 1 then take
// Winograd, streaming the cached 38 MB transform instead of 4x the multiplies of im2col + GEMM).
// The backward-input pass of such a convolution qualifies as well (the same test applies: it is a
// 3x3 stride-1 convolution of dy with padding 2 - pad, with C and O swapped).
bool winograd_applicable(const Conv2dGeometry& g, bool weights_transformed = false);

// Whether the Winograd backward-weight pass applies and pays off: the same rule as
// winograd_applicable (against the im2col + GEMM pass it wins on the shapes that rule accepts and
// loses on few channels, tiny images and big weights at batch 1, which it rejects).
bool winograd_backward_weight_applicable(const Conv2dGeometry& g);

// A forward weight's transform, made once for a weight that does not change between calls
// (inference; see nn::set_conv_weight_cache): U[36][C][O], and the 36 packed point matrices the
// first call that reuses them across blocks packs (then kept: 2x U's memory in all).
struct WinogradForwardWeights {
  int64_t o = 0, c = 0;
  std::vector<float> u;
  std::once_flag packed;
  std::vector<PackedA> packs;  // [36], all O rows: for calls with several blocks per thread
  // For calls with few tiles (split over output channels): per chunk count, [chunk * 36 + point].
  std::mutex chunk_mutex;
  std::map<int64_t, std::shared_ptr<const std::vector<PackedA>>> chunk_packs;
};
// Transforms w (O, C, 3, 3), multithreaded.
std::shared_ptr<WinogradForwardWeights> winograd_forward_weights(const float* w, int64_t O, int64_t C);

// y (N,O,OH,OW) = relu?(conv(x (N,C,H,W), w (O,C,3,3)) + bias (O, nullable)). y is overwritten.
// Requires kh == kw == 3, stride 1, 0 <= pad <= 2, OH = H + 2*pad_h - 2 >= 1 (likewise OW).
// Multithreaded over the pool (serial when called inside a parallel region). With `transformed`
// (w's transform from winograd_forward_weights), w is not read and not transformed again.
// With max_pool_2x2, y is (N, O, OH / 2, OW / 2): the 2x2 stride-2 max pool (floor mode) of that
// output, bit for bit max_pool2d's, made in the output transform (the full output is never written).
void winograd_conv2d_forward(const float* x, const float* w, const float* bias, bool relu, float* y,
                             const Conv2dGeometry& g, WinogradForwardWeights* transformed = nullptr,
                             bool max_pool_2x2 = false);

// dx (N,C,H,W) = the gradient of the same convolution with respect to its input, given dy
// (N,O,OH,OW): a full correlation of dy with w rotated by 180 degrees, O and C swapped, padding
// 2 - pad. dx is overwritten. Same requirements and threading as the forward pass.
void winograd_conv2d_backward_input(const float* dy, const float* w, float* dx, const Conv2dGeometry& g);

// dw (O,C,3,3) = the gradient of the same convolution with respect to its weight, given dy
// (N,O,OH,OW) and x (N,C,H,W): dw[o][c][i][j] = sum_{n,oh,ow} dy[n][o][oh][ow] x[n][c][oh+i-pad][ow+j-pad].
// dw is overwritten. Same requirements and threading as the forward pass; each thread sums into a
// private 36*O*C-float accumulator (38 MB per thread at 512 -> 512 channels).
void winograd_conv2d_backward_weight(const float* dy, const float* x, float* dw, const Conv2dGeometry& g);

// Tests and benchmarks: run the portable transforms even where AVX2/FMA is available (the default
// picks the AVX2 ones at run time when the CPU has them). Not thread-safe against running convs.
void winograd_use_portable_kernels(bool portable);

// The minimum channel count (C and O) winograd_applicable asks for; VGG's first layer (3 -> 64)
// stays on the direct path, which is faster there (the measurements: bench/README.md).
constexpr int64_t kWinogradMinChannels = 16;
constexpr int64_t kWinogradMinOutputsBigWeights = 256;

}  // namespace nn::cpu
