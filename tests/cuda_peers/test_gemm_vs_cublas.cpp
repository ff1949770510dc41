// Our raw FP32 GEMM launcher (nn::cuda::sgemm, kernels/gemm_cuda.cuh) against cublasSgemm (default
// math mode: FP32, no TF32) on the same device buffers: all four transpose cases, odd shapes,
// alpha/beta (and beta = 0 over NaN), padded leading dimensions and misaligned base pointers (the
// scalar path), batches with a broadcast operand and a batch beyond one grid's 65535 slices, and
// the split-K shapes of the VGG16 classifier. Padding columns of C must stay untouched. Tolerance
// |ours - cublas| <= 1e-5 * sqrt(K) * max|cublas| + 1e-5 (inputs uniform in [-1, 1]).
//
// cuBLAS is column-major: the row-major C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T,
// so cuBLAS gets (B, A) with (n, m) swapped and the same transpose flags.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gemm_cuda.cuh"

namespace {

bool has_device() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define REQUIRE_DEVICE() \
  if (!has_device()) GTEST_SKIP() << "no CUDA device"

#define CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr
#define CUBLAS_OK(expr) ASSERT_EQ((expr), CUBLAS_STATUS_SUCCESS) << #expr

struct Case {
  int64_t m, n, k;
  bool trans_a = false, trans_b = false;
  int64_t batch = 1;
  bool broadcast_a = false, broadcast_b = false;  // batch stride 0
  float alpha = 1.f, beta = 0.f;
  int64_t pad = 0;     // extra elements in every leading dimension
  int64_t offset = 0;  // elements before each operand's first element (1: not 16-byte aligned)

  std::string str() const {
    return "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
           " ta=" + std::to_string(trans_a) + " tb=" + std::to_string(trans_b) + " batch=" + std::to_string(batch) +
           (broadcast_a ? " broadcast a" : "") + (broadcast_b ? " broadcast b" : "") +
           " alpha=" + std::to_string(alpha) + " beta=" + std::to_string(beta) + " pad=" + std::to_string(pad) +
           " offset=" + std::to_string(offset);
  }
};

std::vector<float> uniform(size_t n, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

class DeviceBuffer {
 public:
  explicit DeviceBuffer(const std::vector<float>& host) : n_(host.size()) {
    if (cudaMalloc(&p_, std::max<size_t>(n_, 1) * sizeof(float)) != cudaSuccess) p_ = nullptr;
    if (p_) cudaMemcpy(p_, host.data(), n_ * sizeof(float), cudaMemcpyHostToDevice);
  }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  float* get() const { return p_; }
  std::vector<float> download() const {
    std::vector<float> h(n_);
    cudaMemcpy(h.data(), p_, n_ * sizeof(float), cudaMemcpyDeviceToHost);
    return h;
  }

 private:
  float* p_ = nullptr;
  size_t n_ = 0;
};

class CudaGemmVsCublas : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!has_device()) return;
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), cudaSuccess);
    ASSERT_EQ(cublasCreate(&handle_), CUBLAS_STATUS_SUCCESS);
    ASSERT_EQ(cublasSetStream(handle_, stream_), CUBLAS_STATUS_SUCCESS);
    ASSERT_EQ(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH), CUBLAS_STATUS_SUCCESS);
  }
  void TearDown() override {
    if (handle_) cublasDestroy(handle_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  void check(const Case& c, uint64_t seed) {
    const int64_t a_rows = c.trans_a ? c.k : c.m, a_cols = c.trans_a ? c.m : c.k;
    const int64_t b_rows = c.trans_b ? c.n : c.k, b_cols = c.trans_b ? c.k : c.n;
    const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.n + c.pad;
    const int64_t stride_a = c.broadcast_a ? 0 : a_rows * lda;
    const int64_t stride_b = c.broadcast_b ? 0 : b_rows * ldb;
    const int64_t stride_c = c.m * ldc;
    const int64_t batches_a = c.broadcast_a ? 1 : c.batch, batches_b = c.broadcast_b ? 1 : c.batch;
    const std::vector<float> a = uniform(static_cast<size_t>(c.offset + batches_a * a_rows * lda), seed);
    const std::vector<float> b = uniform(static_cast<size_t>(c.offset + batches_b * b_rows * ldb), seed + 1);
    // C: random where beta uses it; NaN where beta == 0 must ignore it. Padding columns hold 7.
    std::vector<float> c0 = c.beta != 0.f ? uniform(static_cast<size_t>(c.offset + c.batch * stride_c), seed + 2)
                                          : std::vector<float>(static_cast<size_t>(c.offset + c.batch * stride_c),
                                                               std::numeric_limits<float>::quiet_NaN());
    for (int64_t i = 0; i < c.batch * c.m; ++i)
      for (int64_t j = c.n; j < ldc; ++j) c0[static_cast<size_t>(c.offset + i * ldc + j)] = 7.f;

    DeviceBuffer da(a), db(b), ours(c0), ref(c0);
    ASSERT_TRUE(da.get() && db.get() && ours.get() && ref.get()) << "cudaMalloc failed";
    const float* pa = da.get() + c.offset;
    const float* pb = db.get() + c.offset;
    nn::cuda::sgemm(stream_, c.trans_a, c.trans_b, c.m, c.n, c.k, c.alpha, pa, lda, stride_a, pb, ldb, stride_b,
                    c.beta, ours.get() + c.offset, ldc, stride_c, c.batch);
    const cublasOperation_t op_a = c.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = c.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    for (int64_t i = 0; i < c.batch; ++i) {
      CUBLAS_OK(cublasSgemm(handle_, op_b, op_a, static_cast<int>(c.n), static_cast<int>(c.m), static_cast<int>(c.k),
                            &c.alpha, pb + i * stride_b, static_cast<int>(ldb), pa + i * stride_a,
                            static_cast<int>(lda), &c.beta, ref.get() + c.offset + i * stride_c,
                            static_cast<int>(ldc)));
    }
    CUDA_OK(cudaStreamSynchronize(stream_));
    CUDA_OK(cudaGetLastError());
    const std::vector<float> got = ours.download(), want = ref.download();

    double max_ref = 0;
    for (int64_t i = 0; i < c.batch * c.m; ++i)
      for (int64_t j = 0; j < c.n; ++j)
        max_ref = std::max(max_ref, std::abs(static_cast<double>(want[static_cast<size_t>(c.offset + i * ldc + j)])));
    const double tol = 1e-5 * std::sqrt(static_cast<double>(std::max<int64_t>(c.k, 1))) * max_ref + 1e-5;
    for (int64_t i = 0; i < c.batch * c.m; ++i) {
      for (int64_t j = 0; j < ldc; ++j) {
        const size_t at = static_cast<size_t>(c.offset + i * ldc + j);
        if (j >= c.n) {
          ASSERT_EQ(got[at], 7.f) << c.str() << ": wrote padding column " << j << " of row " << i;
          continue;
        }
        ASSERT_LE(std::abs(static_cast<double>(got[at]) - want[at]), tol)
            << c.str() << ": (row " << i % c.m << ", col " << j << ") of batch " << i / c.m << " is " << got[at]
            << ", cuBLAS " << want[at];
      }
    }
  }

  cudaStream_t stream_ = nullptr;
  cublasHandle_t handle_ = nullptr;
};

int sm_count() {
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  return sms;
}

TEST_F(CudaGemmVsCublas, AllTransposesOddShapes) {
  REQUIRE_DEVICE();
  struct Shape {
    int64_t m, n, k;
  };
  const Shape shapes[] = {{1, 1, 1}, {3, 17, 129}, {129, 129, 129}, {130, 257, 67},
                          {1000, 3, 17}, {64, 64, 8}, {512, 384, 256}, {1, 1000, 1000}};
  uint64_t seed = 1;
  for (const Shape& s : shapes)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        Case c{s.m, s.n, s.k, ta, tb};
        check(c, seed += 3);
      }
}

TEST_F(CudaGemmVsCublas, AlphaBetaAndNanIgnoredWhenBetaIsZero) {
  REQUIRE_DEVICE();
  uint64_t seed = 100;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Case c{77, 91, 300, ta, tb};
      c.alpha = 0.5f;
      c.beta = -1.5f;
      check(c, seed += 3);
      c.beta = 0.f;  // C starts as NaN
      c.alpha = 2.f;
      check(c, seed += 3);
      Case large{300, 260, 40, ta, tb};  // 128x128 tiles
      large.beta = 1.f;
      check(large, seed += 3);
    }
}

TEST_F(CudaGemmVsCublas, PaddedAndMisalignedOperands) {
  REQUIRE_DEVICE();
  uint64_t seed = 200;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Case padded{65, 70, 33, ta, tb};
      padded.pad = 4;  // 16-byte aligned rows with room between them
      check(padded, seed += 3);
      padded.pad = 3;  // odd leading dimensions: scalar path
      padded.beta = 0.25f;
      check(padded, seed += 3);
      Case shifted{131, 200, 96, ta, tb};
      shifted.offset = 1;  // leading dimensions multiples of 4, base pointers not 16-byte aligned
      check(shifted, seed += 3);
    }
}

TEST_F(CudaGemmVsCublas, BatchedAndBroadcast) {
  REQUIRE_DEVICE();
  uint64_t seed = 300;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Case c{33, 47, 65, ta, tb};
      c.batch = 5;
      check(c, seed += 3);
      c.broadcast_b = true;
      check(c, seed += 3);
      c.broadcast_b = false;
      c.broadcast_a = true;
      c.beta = 0.5f;
      check(c, seed += 3);
    }
  // More batches than one grid holds (gridDim.z <= 65535): two launches.
  Case many{3, 5, 7};
  many.batch = 70000;
  many.broadcast_b = true;
  check(many, seed += 3);
}

TEST_F(CudaGemmVsCublas, SplitKShapes) {
  REQUIRE_DEVICE();
  const int sms = sm_count();
  struct Shape {
    int64_t m, n, k;
    bool ta, tb;
    int64_t batch;
    float alpha, beta;
  };
  const Shape shapes[] = {
      {64, 1000, 4096, false, true, 1, 1.f, 0.f},     // VGG16 fc8 forward
      {64, 4096, 4096, false, true, 1, 1.f, 0.f},     // fc7 forward
      {64, 512, 25088, false, true, 1, 1.f, 1.f},     // fc6 forward, fewer outputs, with bias (beta 1)
      {64, 25088, 512, false, false, 1, 1.f, 0.f},    // fc6 input gradient, shorter K
      {8, 8, 100000, false, false, 1, 1.f, 0.f},      // tiny output, very long K
      {100, 37, 5000, true, false, 1, 2.f, 0.5f},     // alpha/beta applied by the reduction
      {16, 20, 3001, true, true, 3, -1.f, 0.f},       // batched, K not a multiple of 8
      {61, 67, 2049, false, false, 1, 1.f, 0.f},      // odd M, N and K
  };
  uint64_t seed = 400;
  int split_cases = 0;
  for (const Shape& s : shapes) {
    const nn::cuda::SgemmPlan plan = nn::cuda::plan_sgemm(s.m, s.n, s.k, s.batch, sms);
    if (plan.splits > 1) ++split_cases;
    Case c{s.m, s.n, s.k, s.ta, s.tb};
    c.batch = s.batch;
    c.alpha = s.alpha;
    c.beta = s.beta;
    check(c, seed += 3);
    c.offset = 1;  // unaligned: scalar loads and scalar partial stores when n % 4 != 0
    check(c, seed += 3);
  }
  EXPECT_GE(split_cases, 5) << "these shapes are meant to run split-K on a " << sms << "-SM device";
}

TEST_F(CudaGemmVsCublas, SquareLarge) {
  REQUIRE_DEVICE();
  Case c{1024, 1024, 1024};
  check(c, 500);
  Case t{1024, 768, 1024, true, true};
  check(t, 501);
}

// The plan alone (no device needed): what the benchmark's shapes run as on a 132-SM H100.
TEST(CudaGemmPlan, TilesAndSplitKForVggAndSquareShapes) {
  const nn::cuda::SgemmPlan square = nn::cuda::plan_sgemm(4096, 4096, 4096, 1, 132);
  EXPECT_TRUE(square.large_tiles);
  EXPECT_EQ(square.splits, 1);
  const nn::cuda::SgemmPlan fc6 = nn::cuda::plan_sgemm(64, 4096, 25088, 1, 132);
  EXPECT_FALSE(fc6.large_tiles);
  EXPECT_GT(fc6.splits, 1);
  EXPECT_EQ(fc6.k_per_split % 8, 0);
  EXPECT_GE(fc6.k_per_split * fc6.splits, 25088);
  EXPECT_LT(fc6.k_per_split * (fc6.splits - 1), 25088);
  const nn::cuda::SgemmPlan fc8 = nn::cuda::plan_sgemm(64, 1000, 4096, 1, 132);
  EXPECT_GT(fc8.splits, 1);
  const nn::cuda::SgemmPlan weight_grad = nn::cuda::plan_sgemm(4096, 25088, 64, 1, 132);
  EXPECT_TRUE(weight_grad.large_tiles);
  EXPECT_EQ(weight_grad.splits, 1);
  const nn::cuda::SgemmPlan empty_k = nn::cuda::plan_sgemm(3, 3, 0, 1, 132);
  EXPECT_EQ(empty_k.splits, 1);
}

}  // namespace
