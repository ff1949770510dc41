// Our CUDA convolution launchers (kernels/conv_cuda.cuh) against cuDNN on the same device buffers:
// forward (cudnnConvolutionForward, then bias and ReLU on the host for the fused variant),
// backward data and backward filter; cross-correlation, FP32, CUDNN_FMA_MATH (no TF32), with
// cuDNN's always-available algorithms (implicit GEMM forward, ALGO_1 backward), so the test does
// not depend on what cudnnFind picks. Shapes: small 3x3s (implicit GEMM below 16 channels,
// Winograd F(4x4, 3x3) from 16 on, with odd sizes and every padding), stride 2 without padding,
// 1x1, 5x5 with stride 2 and VGG16 layers (256 -> 256 at 56x56, 512 -> 512 at 14x14) at batch 2,
// which take the Winograd path. Compared element by element within
// 1e-4 of max(|cuDNN|, RMS of cuDNN). Everything runs on a stream of the test's own; workspaces
// come from cudaMalloc. Skips without a device.
#include <cuda_runtime.h>
#include <cudnn.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "conv_cuda.cuh"

namespace {

#define CUDA_OK(expr)                                                                      \
  do {                                                                                     \
    cudaError_t status_ = (expr);                                                          \
    ASSERT_EQ(status_, cudaSuccess) << #expr << ": " << cudaGetErrorString(status_);       \
  } while (0)

#define CUDNN_OK(expr)                                                                     \
  do {                                                                                     \
    cudnnStatus_t status_ = (expr);                                                        \
    ASSERT_EQ(status_, CUDNN_STATUS_SUCCESS) << #expr << ": " << cudnnGetErrorString(status_); \
  } while (0)

bool device_present() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

// A device buffer of floats, freed on destruction.
struct Buffer {
  float* p = nullptr;
  size_t n = 0;
  explicit Buffer(size_t count) : n(count) {
    if (cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(float)) != cudaSuccess) p = nullptr;
  }
  Buffer(const std::vector<float>& host) : Buffer(host.size()) {
    if (p) cudaMemcpy(p, host.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  }
  ~Buffer() { cudaFree(p); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  std::vector<float> download() const {
    std::vector<float> h(n);
    cudaMemcpy(h.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost);
    return h;
  }
};

std::vector<float> random_values(size_t n, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

void expect_close(const std::vector<float>& ours, const std::vector<float>& reference, const std::string& what) {
  ASSERT_EQ(ours.size(), reference.size());
  double sum_sq = 0;
  for (float v : reference) sum_sq += static_cast<double>(v) * v;
  const double rms = reference.empty() ? 0.0 : std::sqrt(sum_sq / reference.size());
  int reported = 0;
  for (size_t i = 0; i < reference.size(); ++i) {
    const double tolerance = 1e-4 * std::max({static_cast<double>(std::abs(reference[i])), rms, 1e-6});
    if (!(std::abs(static_cast<double>(ours[i]) - reference[i]) <= tolerance)) {
      ADD_FAILURE() << what << "[" << i << "] = " << ours[i] << ", cuDNN " << reference[i] << " (tolerance "
                    << tolerance << ")";
      if (++reported == 5) return;
    }
  }
}

nn::Conv2dGeometry geometry(int64_t n, int64_t c, int64_t h, int64_t w, int64_t o, int64_t kh, int64_t kw,
                            int64_t stride, int64_t pad) {
  return nn::Conv2dGeometry::from({n, c, h, w}, {o, c, kh, kw}, {stride, stride}, {pad, pad});
}

void compare_with_cudnn(const nn::Conv2dGeometry& g, uint64_t seed) {
  SCOPED_TRACE("x (" + std::to_string(g.n) + "," + std::to_string(g.c) + "," + std::to_string(g.h) + "," +
               std::to_string(g.w) + ") w (" + std::to_string(g.o) + "," + std::to_string(g.kh) + "x" +
               std::to_string(g.kw) + ") stride " + std::to_string(g.stride_h) + " pad " + std::to_string(g.pad_h));
  const size_t x_count = g.n * g.c * g.h * g.w, w_count = g.o * g.c * g.kh * g.kw, y_count = g.n * g.o * g.oh * g.ow;
  const std::vector<float> x_host = random_values(x_count, seed), w_host = random_values(w_count, seed + 1);
  const std::vector<float> b_host = random_values(g.o, seed + 2), dy_host = random_values(y_count, seed + 3);
  Buffer x(x_host), w(w_host), bias(b_host), dy(dy_host);
  Buffer y_ours(y_count), y_fused(y_count), y_ref(y_count), dx_ours(x_count), dx_ref(x_count), dw_ours(w_count),
      dw_ref(w_count);
  ASSERT_TRUE(x.p && w.p && bias.p && dy.p && y_ours.p && y_fused.p && y_ref.p && dx_ours.p && dx_ref.p &&
              dw_ours.p && dw_ref.p);

  cudaStream_t stream;
  CUDA_OK(cudaStreamCreate(&stream));
  cudnnHandle_t handle;
  CUDNN_OK(cudnnCreate(&handle));
  CUDNN_OK(cudnnSetStream(handle, stream));
  cudnnTensorDescriptor_t x_desc, y_desc;
  cudnnFilterDescriptor_t w_desc;
  cudnnConvolutionDescriptor_t conv;
  CUDNN_OK(cudnnCreateTensorDescriptor(&x_desc));
  CUDNN_OK(cudnnCreateTensorDescriptor(&y_desc));
  CUDNN_OK(cudnnCreateFilterDescriptor(&w_desc));
  CUDNN_OK(cudnnCreateConvolutionDescriptor(&conv));
  CUDNN_OK(cudnnSetTensor4dDescriptor(x_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g.n, g.c, g.h, g.w));
  CUDNN_OK(cudnnSetTensor4dDescriptor(y_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g.n, g.o, g.oh, g.ow));
  CUDNN_OK(cudnnSetFilter4dDescriptor(w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, g.o, g.c, g.kh, g.kw));
  CUDNN_OK(cudnnSetConvolution2dDescriptor(conv, g.pad_h, g.pad_w, g.stride_h, g.stride_w, 1, 1,
                                           CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  CUDNN_OK(cudnnSetConvolutionMathType(conv, CUDNN_FMA_MATH));

  const auto fwd_algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  const auto bwd_data_algo = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
  const auto bwd_filter_algo = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
  size_t fwd_bytes = 0, data_bytes = 0, filter_bytes = 0;
  CUDNN_OK(cudnnGetConvolutionForwardWorkspaceSize(handle, x_desc, w_desc, conv, y_desc, fwd_algo, &fwd_bytes));
  CUDNN_OK(cudnnGetConvolutionBackwardDataWorkspaceSize(handle, w_desc, y_desc, conv, x_desc, bwd_data_algo,
                                                        &data_bytes));
  CUDNN_OK(cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, x_desc, y_desc, conv, w_desc, bwd_filter_algo,
                                                          &filter_bytes));
  const size_t cudnn_bytes = std::max({fwd_bytes, data_bytes, filter_bytes, size_t{4}});
  const size_t ours_bytes = std::max({nn::cuda::conv2d_forward_workspace_bytes(g),
                                      nn::cuda::conv2d_backward_input_workspace_bytes(g),
                                      nn::cuda::conv2d_backward_weight_workspace_bytes(g), size_t{4}});
  Buffer cudnn_workspace((cudnn_bytes + 3) / 4), ours_workspace((ours_bytes + 3) / 4);
  ASSERT_TRUE(cudnn_workspace.p && ours_workspace.p);

  const float one = 1.f, zero = 0.f;
  CUDNN_OK(cudnnConvolutionForward(handle, &one, x_desc, x.p, w_desc, w.p, conv, fwd_algo, cudnn_workspace.p,
                                   cudnn_bytes, &zero, y_desc, y_ref.p));
  CUDNN_OK(cudnnConvolutionBackwardData(handle, &one, w_desc, w.p, y_desc, dy.p, conv, bwd_data_algo,
                                        cudnn_workspace.p, cudnn_bytes, &zero, x_desc, dx_ref.p));
  CUDNN_OK(cudnnConvolutionBackwardFilter(handle, &one, x_desc, x.p, y_desc, dy.p, conv, bwd_filter_algo,
                                          cudnn_workspace.p, cudnn_bytes, &zero, w_desc, dw_ref.p));
  // Ours: plain forward, forward with bias and ReLU, both backward passes. The outputs start as
  // NaN so that anything left unwritten shows.
  CUDA_OK(cudaMemsetAsync(y_ours.p, 0xff, y_count * sizeof(float), stream));
  CUDA_OK(cudaMemsetAsync(y_fused.p, 0xff, y_count * sizeof(float), stream));
  CUDA_OK(cudaMemsetAsync(dx_ours.p, 0xff, x_count * sizeof(float), stream));
  CUDA_OK(cudaMemsetAsync(dw_ours.p, 0xff, w_count * sizeof(float), stream));
  nn::cuda::conv2d_forward_f32(x.p, w.p, nullptr, y_ours.p, g, false, ours_workspace.p, stream);
  nn::cuda::conv2d_forward_f32(x.p, w.p, bias.p, y_fused.p, g, true, ours_workspace.p, stream);
  nn::cuda::conv2d_backward_input_f32(dy.p, w.p, dx_ours.p, g, ours_workspace.p, stream);
  nn::cuda::conv2d_backward_weight_f32(dy.p, x.p, dw_ours.p, g, ours_workspace.p, stream);
  CUDA_OK(cudaStreamSynchronize(stream));

  const std::vector<float> y_expected = y_ref.download();
  std::vector<float> fused_expected = y_expected;
  const int64_t plane = g.oh * g.ow;
  for (size_t i = 0; i < fused_expected.size(); ++i)
    fused_expected[i] = std::max(fused_expected[i] + b_host[(i / plane) % g.o], 0.f);
  expect_close(y_ours.download(), y_expected, "forward");
  expect_close(y_fused.download(), fused_expected, "forward + bias + relu");
  expect_close(dx_ours.download(), dx_ref.download(), "backward data");
  expect_close(dw_ours.download(), dw_ref.download(), "backward filter");

  cudnnDestroyConvolutionDescriptor(conv);
  cudnnDestroyFilterDescriptor(w_desc);
  cudnnDestroyTensorDescriptor(y_desc);
  cudnnDestroyTensorDescriptor(x_desc);
  cudnnDestroy(handle);
  cudaStreamDestroy(stream);
}

#define REQUIRE_DEVICE() \
  if (!device_present()) GTEST_SKIP() << "no CUDA device"

TEST(CudaConvVsCudnn, Small3x3Padding1) {
  REQUIRE_DEVICE();
  compare_with_cudnn(geometry(2, 3, 17, 19, 5, 3, 3, 1, 1), 1);
  compare_with_cudnn(geometry(3, 17, 9, 9, 33, 3, 3, 1, 1), 2);  // Winograd
  compare_with_cudnn(geometry(3, 15, 9, 9, 33, 3, 3, 1, 1), 3);  // implicit GEMM
}

TEST(CudaConvVsCudnn, WinogradOddSizesAllPaddings) {
  REQUIRE_DEVICE();
  compare_with_cudnn(geometry(3, 16, 13, 17, 17, 3, 3, 1, 0), 40);
  compare_with_cudnn(geometry(1, 17, 7, 5, 64, 3, 3, 1, 1), 41);
  compare_with_cudnn(geometry(2, 64, 11, 9, 16, 3, 3, 1, 2), 42);
}

TEST(CudaConvVsCudnn, Stride2NoPadding) {
  REQUIRE_DEVICE();
  compare_with_cudnn(geometry(3, 17, 15, 13, 33, 3, 3, 2, 0), 10);
  compare_with_cudnn(geometry(2, 5, 12, 11, 7, 5, 5, 2, 2), 11);
}

TEST(CudaConvVsCudnn, OneByOne) {
  REQUIRE_DEVICE();
  compare_with_cudnn(geometry(2, 129, 7, 9, 65, 1, 1, 1, 0), 20);
}

TEST(CudaConvVsCudnn, Vgg16Layer256x56Batch2) {
  REQUIRE_DEVICE();
  compare_with_cudnn(geometry(2, 256, 56, 56, 256, 3, 3, 1, 1), 30);
}

TEST(CudaConvVsCudnn, Vgg16Layer512x14Batch2) {
  REQUIRE_DEVICE();
  compare_with_cudnn(geometry(2, 512, 14, 14, 512, 3, 3, 1, 1), 31);
}

}  // namespace
