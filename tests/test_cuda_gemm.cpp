// The CUDA GEMM (kernels/matmul_cuda.cu) through the public API: nn::matmul and nn::linear on CUDA
// tensors against float64 products on the CPU of the same operands. Covers sizes 1, 3, 17, 129 and
// 1000 in each of M, N and K (edge tiles of both tile configurations and the split-K path),
// transposed, strided and misaligned operands (the scalar-load path), batched products with a
// broadcast operand, linear with bias (beta = 1) forward and backward, and the f32-only error.
// Each element must be within 1e-5 * (sum_k |a||b| + 1) of the float64 product. Skips without a
// device (labelled cuda in CTest).
#include <gtest/gtest.h>
#include <nn/nn.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace {

#define REQUIRE_CUDA() \
  if (!nn::cuda_available()) GTEST_SKIP() << "no CUDA device"

nn::Tensor identity(const nn::Tensor& t) { return t; }

// matmul(view_a(a), view_b(b)) on CUDA (the views taken of the CUDA copies) against the float64
// CPU product of the same views.
template <class ViewA, class ViewB>
void check_matmul(const nn::Tensor& a, const nn::Tensor& b, ViewA view_a, ViewB view_b, const std::string& what) {
  const nn::Tensor got = nn::matmul(view_a(a.to(nn::Device::cuda())), view_b(b.to(nn::Device::cuda()))).cpu();
  const nn::Tensor a64 = view_a(a).to(nn::f64), b64 = view_b(b).to(nn::f64);
  const nn::Tensor want = nn::matmul(a64, b64);
  const nn::Tensor magnitude = nn::matmul(nn::abs(a64), nn::abs(b64));
  ASSERT_EQ(got.shape(), want.shape()) << what;
  EXPECT_EQ(got.dtype(), nn::f32) << what;
  const std::vector<float> g = got.to_vector<float>();
  const std::vector<double> w = want.to_vector<double>(), mag = magnitude.to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) {
    const double tol = 1e-5 * (mag[i] + 1.0);
    ASSERT_LE(std::abs(g[i] - w[i]), tol) << what << ": element " << i << " is " << g[i] << ", want " << w[i];
  }
}

std::string dims(int64_t m, int64_t n, int64_t k) {
  return "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k);
}

TEST(CudaGemm, MatmulAllSizesMatchCpu) {
  REQUIRE_CUDA();
  uint64_t seed = 100;
  for (int64_t m : {1, 3, 17, 129, 1000})
    for (int64_t n : {1, 3, 17, 129, 1000})
      for (int64_t k : {1, 3, 17, 129, 1000}) {
        nn::Generator gen(seed++);
        const nn::Tensor a = nn::randn({m, k}, gen), b = nn::randn({k, n}, gen);
        check_matmul(a, b, identity, identity, dims(m, n, k));
      }
}

TEST(CudaGemm, TransposedOperandsAllFourCases) {
  REQUIRE_CUDA();
  struct Size {
    int64_t m, n, k;
  };
  // Odd edges, exact 128x128 tiles, and M=64 with a long K (64x64 tiles and split-K).
  const Size sizes[] = {{33, 65, 47}, {128, 256, 64}, {1, 1000, 17}, {64, 100, 4096}, {257, 3, 129}};
  uint64_t seed = 300;
  auto transposed = [](const nn::Tensor& t) { return t.t(); };
  for (const Size& s : sizes)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        nn::Generator gen(seed++);
        // Stored (k, m) / (n, k) when transposed; the view passed to matmul is always (m,k) x (k,n).
        const nn::Tensor a = ta ? nn::randn({s.k, s.m}, gen) : nn::randn({s.m, s.k}, gen);
        const nn::Tensor b = tb ? nn::randn({s.n, s.k}, gen) : nn::randn({s.k, s.n}, gen);
        const std::string what = dims(s.m, s.n, s.k) + " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb);
        if (ta && tb) check_matmul(a, b, transposed, transposed, what);
        else if (ta) check_matmul(a, b, transposed, identity, what);
        else if (tb) check_matmul(a, b, identity, transposed, what);
        else check_matmul(a, b, identity, identity, what);
      }
}

TEST(CudaGemm, StridedAndMisalignedOperands) {
  REQUIRE_CUDA();
  nn::Generator gen(7);
  // Every second column: not dense, so the op layer copies it.
  const nn::Tensor wide = nn::randn({45, 2 * 70}, gen), b = nn::randn({70, 33}, gen);
  check_matmul(wide, b, [](const nn::Tensor& t) { return t.slice(1, 0, t.size(1), 2); }, identity, "column slice");
  // Dense rows whose first element is 4 bytes past a 16-byte boundary (row strides multiples of
  // 4): the kernel must take its scalar loads and stores.
  const int64_t m = 70, n = 132, k = 64;
  const nn::Tensor flat_a = nn::randn({1 + m * k}, gen), flat_b = nn::randn({1 + k * n}, gen);
  auto shifted = [](int64_t rows, int64_t cols) {
    return [rows, cols](const nn::Tensor& t) { return t.narrow(0, 1, rows * cols).view({rows, cols}); };
  };
  check_matmul(flat_a, flat_b, shifted(m, k), shifted(k, n), "misaligned a and b");
  auto shifted_t = [](int64_t rows, int64_t cols) {
    return [rows, cols](const nn::Tensor& t) { return t.narrow(0, 1, rows * cols).view({rows, cols}).t(); };
  };
  check_matmul(flat_a, flat_b, shifted_t(k, m), shifted_t(n, k), "misaligned transposed a and b");
  // A row of a larger matrix (offset view, 1 x k).
  const nn::Tensor rows = nn::randn({5, 129}, gen), c = nn::randn({129, 40}, gen);
  check_matmul(rows, c, [](const nn::Tensor& t) { return t.narrow(0, 3, 1); }, identity, "one row of a matrix");
}

TEST(CudaGemm, BatchedWithBroadcastOperand) {
  REQUIRE_CUDA();
  nn::Generator gen(11);
  // b shared by the batch (batch stride 0).
  check_matmul(nn::randn({5, 17, 129}, gen), nn::randn({129, 33}, gen), identity, identity, "broadcast b");
  // a shared by the batch.
  check_matmul(nn::randn({33, 20}, gen), nn::randn({4, 20, 70}, gen), identity, identity, "broadcast a");
  // Two batch dims, both operands batched.
  check_matmul(nn::randn({2, 3, 17, 40}, gen), nn::randn({2, 3, 40, 9}, gen), identity, identity, "4-D");
  // Batched transposed operands.
  auto swap_last = [](const nn::Tensor& t) { return t.transpose(-1, -2); };
  check_matmul(nn::randn({3, 65, 31}, gen), nn::randn({3, 47, 65}, gen), swap_last, swap_last, "batched a^T b^T");
  // A batch of skinny products with long K (split-K across a batch).
  check_matmul(nn::randn({3, 8, 2000}, gen), nn::randn({3, 2000, 5}, gen), identity, identity, "batched split-K");
}

TEST(CudaGemm, EmptyDepthGivesZeros) {
  REQUIRE_CUDA();
  const nn::Tensor a = nn::zeros({3, 0}, nn::f32, nn::Device::cuda()), b = nn::zeros({0, 4}, nn::f32, nn::Device::cuda());
  const nn::Tensor c = nn::matmul(a, b);
  ASSERT_EQ(c.shape(), (nn::Shape{3, 4}));
  for (float v : c.to_vector<float>()) EXPECT_EQ(v, 0.f);
}

// Largest |got - want| over max|want|.
double relative_error(const nn::Tensor& got, const nn::Tensor& want) {
  const std::vector<float> g = got.cpu().to_vector<float>(), w = want.cpu().to_vector<float>();
  EXPECT_EQ(g.size(), w.size());
  double worst = 0, scale = 0;
  for (size_t i = 0; i < g.size() && i < w.size(); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(g[i]) - w[i]));
    if (std::isnan(g[i])) worst = INFINITY;
    scale = std::max(scale, std::abs(static_cast<double>(w[i])));
  }
  return worst / std::max(scale, 1e-30);
}

// linear(x, w, b) forward and backward on CUDA and on the CPU: output and the gradients of x, w
// and b within 1e-4 of the largest value.
void check_linear(int64_t rows, int64_t in, int64_t out, uint64_t seed) {
  nn::Generator gen(seed);
  const nn::Tensor x = nn::randn({rows, in}, gen), w = nn::randn({out, in}, gen), bias = nn::randn({out}, gen);
  const nn::Tensor grad_y = nn::randn({rows, out}, gen);
  struct Result {
    nn::Tensor y, dx, dw, db;
  };
  auto run = [&](nn::Device device) {
    // Fresh leaves on each device (detach: the CPU "copy" would otherwise be x itself).
    nn::Tensor xd = x.detach().to(device), wd = w.detach().to(device), bd = bias.detach().to(device);
    xd.requires_grad_();
    wd.requires_grad_();
    bd.requires_grad_();
    nn::Tensor y = nn::linear(xd, wd, bd);
    y.backward(grad_y.to(device));
    return Result{y.detach(), xd.grad(), wd.grad(), bd.grad()};
  };
  const Result cpu = run(nn::Device::cpu()), gpu = run(nn::Device::cuda());
  const std::string what = "linear rows=" + std::to_string(rows) + " in=" + std::to_string(in) +
                           " out=" + std::to_string(out);
  ASSERT_TRUE(gpu.dx.defined() && gpu.dw.defined() && gpu.db.defined()) << what;
  EXPECT_EQ(gpu.y.device(), nn::Device::cuda()) << what;
  EXPECT_EQ(gpu.dw.device(), nn::Device::cuda()) << what;
  EXPECT_LE(relative_error(gpu.y, cpu.y), 1e-4) << what << ": output";
  EXPECT_LE(relative_error(gpu.dx, cpu.dx), 1e-4) << what << ": input gradient";
  EXPECT_LE(relative_error(gpu.dw, cpu.dw), 1e-4) << what << ": weight gradient";
  EXPECT_LE(relative_error(gpu.db, cpu.db), 1e-4) << what << ": bias gradient";
}

TEST(CudaGemm, LinearForwardBackwardMatchCpu) {
  REQUIRE_CUDA();
  check_linear(37, 129, 65, 21);
  check_linear(1, 17, 3, 22);
  // The VGG classifier's shape at a smaller scale: 64 rows, long K (64x64 tiles, split-K forward).
  check_linear(64, 3000, 512, 23);
  // Large enough for 128x128 tiles everywhere.
  check_linear(512, 384, 1024, 24);
}

TEST(CudaGemm, RejectsNonF32) {
  REQUIRE_CUDA();
  const nn::Tensor a = nn::ones({4, 5}, nn::f64, nn::Device::cuda()), b = nn::ones({5, 3}, nn::f64, nn::Device::cuda());
  try {
    nn::matmul(a, b);
    FAIL() << "f64 matmul on CUDA must throw";
  } catch (const nn::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("f32"), std::string::npos) << msg;
  }
}

}  // namespace
