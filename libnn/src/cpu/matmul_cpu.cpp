// Batched GEMM on the CPU: c[b] = alpha * op(a[b]) * op(b[b]) + beta * c[b]. Cost: 2*B*M*N*K FLOPs.
// f32 runs on the library's packed GEMM (gemm_cpu.h); f64, the reference precision of the tests,
// on Eigen's blocked GEMM over row-major maps. Threads go over the batch when it is large enough,
// otherwise into one product (sgemm_parallel, or Eigen's own OpenMP GEMM for f64).
#include <Eigen/Core>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"
#include "cpu/gemm_cpu.h"

namespace nn::cpu {
namespace {

template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using ConstMap = Eigen::Map<const RowMat<T>>;
template <typename T>
using MutMap = Eigen::Map<RowMat<T>>;

void gemm_one(const float* a, bool ta, const float* b, bool tb, float* c, int64_t m, int64_t n, int64_t k,
              float alpha, float beta) {
  GemmEpilogue e;
  e.alpha = alpha;
  e.beta = beta;
  const MatrixRef av = ta ? MatrixRef{a, 1, m} : MatrixRef{a, k, 1};
  const MatrixRef bv = tb ? MatrixRef{b, 1, k} : MatrixRef{b, n, 1};
  sgemm_parallel(m, n, k, av, bv, c, n, e);
}

template <typename T>
void gemm_one(const T* a, bool ta, const T* b, bool tb, T* c, int64_t m, int64_t n, int64_t k, T alpha, T beta) {
  // A stored (m,k) or (k,m) when transposed; B stored (k,n) or (n,k).
  ConstMap<T> A(a, ta ? k : m, ta ? m : k);
  ConstMap<T> B(b, tb ? n : k, tb ? k : n);
  MutMap<T> C(c, m, n);
  auto product = [&](auto&& lhs, auto&& rhs) {
    if (beta == T(0)) C.noalias() = alpha * (lhs * rhs);
    else {
      if (beta != T(1)) C *= beta;
      C.noalias() += alpha * (lhs * rhs);
    }
  };
  if (!ta && !tb) product(A, B);
  else if (ta && !tb) product(A.transpose(), B);
  else if (!ta && tb) product(A, B.transpose());
  else product(A.transpose(), B.transpose());
}

void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, double alpha, double beta) {
  dispatch_float(c.dtype(), "gemm", [&](auto tag) {
    using T = decltype(tag);
    const int64_t batch = c.shape()[0], m = c.shape()[1], n = c.shape()[2];
    const int64_t k = trans_a ? a.shape()[1] : a.shape()[2];
    const int64_t sa = a.strides()[0], sb = b.strides()[0];
    const T* ap = static_cast<const T*>(a.raw_data());
    const T* bp = static_cast<const T*>(b.raw_data());
    T* cp = c.data<T>();
    auto one = [&](int64_t i) {
      gemm_one(ap + i * sa, trans_a, bp + i * sb, trans_b, cp + i * m * n, m, n, k, static_cast<T>(alpha),
                  static_cast<T>(beta));
    };
    if (batch >= get_num_threads()) {
      parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t i = b0; i < b1; ++i) one(i);
      });
    } else {
      for (int64_t i = 0; i < batch; ++i) one(i);
    }
  });
}

}  // namespace

void register_matmul_cpu(KernelTable& t) { t.gemm = gemm; }

}  // namespace nn::cpu
