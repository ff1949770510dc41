// White-box tests of the CPU backend's packed f32 GEMM (libnn/src/cpu/gemm_cpu.h) against a float64
// triple loop: every transpose case through strided views, sizes around the register tile (6x16)
// and the cache blocks (KC=256, MC=120, NC=3072), alpha/beta, row and column biases, ReLU, a
// pre-packed A, and the threaded entry point.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "cpu/gemm_cpu.h"
#include "nn/error.h"
#include "nn/parallel.h"

namespace nn::cpu {
namespace {

struct Problem {
  int64_t m, n, k;
  bool trans_a, trans_b;
};

std::vector<float> random_vector(int64_t size, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(size));
  for (float& x : v) x = dist(rng);
  return v;
}

// A stored (m,k) row-major, or (k,m) when transposed; likewise B (k,n) or (n,k).
MatrixRef view(const std::vector<float>& s, int64_t rows, int64_t cols, bool transposed) {
  return transposed ? MatrixRef{s.data(), 1, rows} : MatrixRef{s.data(), cols, 1};
}

// What to apply after the product (the biases are drawn by check()).
struct Epilogue {
  float alpha = 1.0f, beta = 0.0f;
  bool row_bias = false, col_bias = false, relu = false;
};

void check(const Problem& p, const Epilogue& e, int mode, uint32_t seed) {
  std::mt19937 rng(seed);
  const auto a = random_vector(p.m * p.k, rng), b = random_vector(p.k * p.n, rng);
  const auto row_bias = random_vector(p.m, rng), col_bias = random_vector(p.n, rng);
  const int64_t ldc = p.n + 3;  // C has padding columns that must stay untouched
  auto c = random_vector(p.m * ldc, rng);
  const auto c0 = c;
  GemmEpilogue epi;
  epi.alpha = e.alpha;
  epi.beta = e.beta;
  epi.relu = e.relu;
  if (e.row_bias) epi.row_bias = row_bias.data();
  if (e.col_bias) epi.col_bias = col_bias.data();
  const MatrixRef av = view(a, p.m, p.k, p.trans_a), bv = view(b, p.k, p.n, p.trans_b);
  if (mode == 0) sgemm(p.m, p.n, p.k, av, bv, c.data(), ldc, epi);
  if (mode == 1) sgemm_parallel(p.m, p.n, p.k, av, bv, c.data(), ldc, epi);
  if (mode == 2) sgemm_packed(PackedA(p.m, p.k, av), p.n, bv, c.data(), ldc, epi);
  if (mode == 3) {  // B read in place: rows padded to whole 16-column panels plus 3, the padding random
    const int64_t ldb = (p.n + 15) / 16 * 16 + 3;
    std::vector<float> padded = random_vector(p.k * ldb, rng);
    for (int64_t q = 0; q < p.k; ++q)
      for (int64_t j = 0; j < p.n; ++j) padded[static_cast<size_t>(q * ldb + j)] = bv.at(q, j);
    sgemm_packed_b_in_place(PackedA(p.m, p.k, av), p.n, padded.data(), ldb, c.data(), ldc, epi);
  }
  double worst = 0;
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j) {
      double s = 0, mag = 0;
      for (int64_t q = 0; q < p.k; ++q) {
        const double t = double(av.at(i, q)) * double(bv.at(q, j));
        s += t;
        mag += std::abs(t);
      }
      double want = e.alpha * s + (e.beta != 0 ? e.beta * double(c0[i * ldc + j]) : 0.0);
      if (e.row_bias) want += row_bias[i];
      if (e.col_bias) want += col_bias[j];
      if (e.relu) want = std::max(want, 0.0);
      const double tol = 1e-5 * (std::abs(e.alpha) * mag + std::abs(e.beta) * std::abs(c0[i * ldc + j]) + 4.0);
      const double err = std::abs(c[i * ldc + j] - want);
      worst = std::max(worst, err / tol);
      ASSERT_LE(err, tol) << "m=" << p.m << " n=" << p.n << " k=" << p.k << " ta=" << p.trans_a
                          << " tb=" << p.trans_b << " mode=" << mode << " at (" << i << "," << j << ")";
    }
    for (int64_t j = p.n; j < ldc; ++j) ASSERT_EQ(c[i * ldc + j], c0[i * ldc + j]) << "wrote past column n";
  }
  EXPECT_LE(worst, 1.0);
}

TEST(CpuGemm, KernelIsChosen) {
  const std::string name = sgemm_kernel_name();
  EXPECT_TRUE(name == "avx2-fma-6x16" || name == "portable-6x16") << name;
}

TEST(CpuGemm, AllTransposesAndEdgeSizes) {
  uint32_t seed = 1;
  for (int64_t m : {1, 5, 6, 7, 13, 121})
    for (int64_t n : {1, 15, 16, 17, 50})
      for (int64_t k : {1, 3, 255, 257})
        for (bool ta : {false, true})
          for (bool tb : {false, true}) check({m, n, k, ta, tb}, Epilogue{}, 0, seed++);
}

TEST(CpuGemm, AlphaBetaBiasRelu) {
  Epilogue e;
  e.alpha = 0.5f;
  e.beta = -1.5f;
  check({37, 45, 300, false, false}, e, 0, 11);
  Epilogue bias;
  bias.row_bias = true;
  bias.relu = true;
  check({37, 45, 600, true, false}, bias, 0, 12);
  Epilogue col;
  col.col_bias = true;
  col.beta = 1.0f;
  col.relu = true;
  check({9, 70, 513, false, true}, col, 0, 13);
}

TEST(CpuGemm, BeyondTheCacheBlocks) {
  // m > MC, n > NC, k > KC: several blocks of each, with partial edges.
  check({250, 3100, 40, false, false}, Epilogue{}, 0, 21);
  check({130, 70, 530, true, true}, Epilogue{}, 0, 22);
}

TEST(CpuGemm, ZeroDepthAppliesTheEpilogueOnly) {
  Epilogue e;
  e.beta = 2.0f;
  e.row_bias = true;
  check({7, 9, 0, false, false}, e, 0, 31);
}

TEST(CpuGemm, PackedAMatchesPlain) {
  Epilogue e;
  e.row_bias = true;
  e.relu = true;
  check({70, 100, 600, false, false}, e, 2, 41);
  check({5, 33, 17, true, false}, Epilogue{}, 2, 42);
}

TEST(CpuGemm, PackedAWithBInPlaceMatchesPlain) {
  // Partial panels (n not a multiple of 16), several KC slices and MC blocks, the epilogue.
  Epilogue e;
  e.row_bias = true;
  e.relu = true;
  check({70, 100, 600, false, false}, e, 3, 61);
  check({5, 33, 17, true, false}, Epilogue{}, 3, 62);
  check({130, 49, 512, false, false}, Epilogue{}, 3, 63);  // Winograd's 28x28 layer at batch 1
  check({6, 1, 1, false, false}, Epilogue{}, 3, 64);
  // One- and two-column last panels (the column kernel) with every remainder of depth mod 4, the
  // epilogue on each KC slice.
  for (int64_t k : {4, 5, 6, 7, 8, 300}) check({13, 18, k, false, false}, e, 3, 65 + static_cast<uint32_t>(k));
  // Rows too short for whole panels are refused.
  std::vector<float> a(6 * 4, 1.0f), b(4 * 17, 1.0f), c(6 * 17);
  EXPECT_THROW(sgemm_packed_b_in_place(PackedA(6, 4, MatrixRef{a.data(), 4, 1}), 17, b.data(), 17, c.data(), 17), nn::Error);
}

TEST(CpuGemm, ParallelSplitsRowsOrColumns) {
  const int saved = get_num_threads();
  set_num_threads(2);
  Epilogue e;
  e.row_bias = true;
  e.col_bias = true;
  e.relu = true;
  check({40, 500, 200, false, false}, e, 1, 51);  // split over columns
  check({500, 40, 200, true, true}, e, 1, 52);    // split over rows
  check({3, 3, 3, false, false}, e, 1, 53);       // too small: serial
  set_num_threads(saved);
}

}  // namespace
}  // namespace nn::cpu
