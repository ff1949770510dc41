// The GEMM peer: OpenBLAS's cblas_sgemm on the same shapes as BM_Matmul (nn::matmul on our packed
// GEMM), with as many OpenBLAS threads as NN_NUM_THREADS. Built into nn_bench_cpu only when
// OpenBLAS is found (Debian: libopenblas-dev); the library never links it.
//   BM_OpenBLASSgemm/n:S    C (S,S) = A (S,S) * B (S,S): 2*S^3 FLOPs
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <nn/nn.h>

#include <vector>

extern "C" void openblas_set_num_threads(int num_threads);

namespace {

void BM_OpenBLASSgemm(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  openblas_set_num_threads(nn::get_num_threads());
  nn::Generator gen(7);
  const std::vector<float> a = nn::randn({n, n}, gen).to_vector<float>(), b = nn::randn({n, n}, gen).to_vector<float>();
  std::vector<float> c(static_cast<size_t>(n) * n);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GFLOP"] = benchmark::Counter(2.0 * n * n * n * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_OpenBLASSgemm)->ArgName("n")->Arg(256)->Arg(512)->Arg(1024)->Arg(2048)->UseRealTime()->MinTime(0.2)->Unit(benchmark::kMillisecond);

}  // namespace
