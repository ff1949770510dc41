// nn_bench_cuda_gemm: our FP32 GEMM (nn::cuda::sgemm, kernels/matmul_cuda.cu) against cublasSgemm
// (default math mode: FP32, no TF32), row-major C = op(A) op(B), on
//   - square 1024, 2048, 4096, 8192;
//   - the VGG16 classifier at batch 64: fc6 forward y = x W^T (64x4096x25088, B transposed), fc6
//     input gradient dX = dY W (64x25088x4096), fc6 weight gradient dW = dY^T X (4096x25088x64, A
//     transposed), fc7 forward (64x4096x4096) and fc8 forward (64x1000x4096).
// For each shape BM_Sgemm/cublas/<shape> and BM_Sgemm/ours/<shape>. The ours benchmark first checks
// its result against cuBLAS (|ours - cublas| <= 1e-5 sqrt(K) max|cublas| + 1e-5, else
// SkipWithError). Each iteration is one launch timed with CUDA events after an L2 flush (manual
// time). Counters: TFLOPs = 2MNK / median time (TFLOP/s); on ours, vs_cublas = cuBLAS median / our
// median, both measured in that benchmark. The label says how ours ran (tile size, split-K).
// Inputs are uniform in [-1, 1), generated on the device from a fixed seed.
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_bench_util.cuh"
#include "cuda_util.cuh"
#include "gemm_cuda.cuh"

namespace {

struct GemmShape {
  std::string name;
  int64_t m, n, k;
  bool trans_a, trans_b;
};

// What every benchmark shares: nn's stream on device 0, a cuBLAS handle on it, the L2 flush.
struct Context {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  std::unique_ptr<bench::L2Flush> flush;
  int sm_count = 0;
};
Context* g_context = nullptr;

__global__ void fill_uniform_kernel(float* x, int64_t n, uint64_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint64_t h = seed + static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull;  // splitmix64
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
    h ^= h >> 31;
    x[i] = static_cast<float>(h >> 40) * (2.0f / 16777216.0f) - 1.0f;
  }
}

bench::DeviceArray<float> random_on_device(int64_t n, uint64_t seed, cudaStream_t s) {
  bench::DeviceArray<float> d(static_cast<size_t>(n));
  fill_uniform_kernel<<<nn::cuda::blocks_for(n), 256, 0, s>>>(d.get(), n, seed);
  BENCH_CUDA_OK(cudaGetLastError());
  return d;
}

// A, B and C of one shape (A stored (m,k) or (k,m), B (k,n) or (n,k), C (m,n), all dense).
struct Operands {
  const GemmShape& shape;
  bench::DeviceArray<float> a, b, c;
  Operands(const GemmShape& s, cudaStream_t stream)
      : shape(s),
        a(random_on_device(s.m * s.k, 1, stream)),
        b(random_on_device(s.k * s.n, 2, stream)),
        c(static_cast<size_t>(s.m * s.n)) {
    BENCH_CUDA_OK(cudaStreamSynchronize(stream));
  }
  int64_t lda() const { return shape.trans_a ? shape.m : shape.k; }
  int64_t ldb() const { return shape.trans_b ? shape.k : shape.n; }
};

void run_ours(const Operands& op, float* c) {
  const GemmShape& s = op.shape;
  nn::cuda::sgemm(g_context->stream, s.trans_a, s.trans_b, s.m, s.n, s.k, 1.f, op.a.get(), op.lda(), 0, op.b.get(),
                  op.ldb(), 0, 0.f, c, s.n, 0, 1);
}

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
void run_cublas(const Operands& op, float* c) {
  const GemmShape& s = op.shape;
  const float alpha = 1.f, beta = 0.f;
  const cublasStatus_t status =
      cublasSgemm(g_context->cublas, s.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, s.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                  static_cast<int>(s.n), static_cast<int>(s.m), static_cast<int>(s.k), &alpha, op.b.get(),
                  static_cast<int>(op.ldb()), op.a.get(), static_cast<int>(op.lda()), &beta, c, static_cast<int>(s.n));
  if (status != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasSgemm failed: " + std::to_string(status));
}

double tflops(const GemmShape& s, double ms) {
  return 2.0 * static_cast<double>(s.m) * static_cast<double>(s.n) * static_cast<double>(s.k) / (ms * 1e-3) / 1e12;
}

// Our result against cuBLAS's; empty when within tolerance, else what went wrong.
std::string check_against_cublas(const Operands& op) {
  bench::DeviceArray<float> ref(static_cast<size_t>(op.shape.m * op.shape.n));
  BENCH_CUDA_OK(cudaMemsetAsync(op.c.get(), 0xff, op.c.size() * sizeof(float), g_context->stream));  // NaN
  run_ours(op, op.c.get());
  run_cublas(op, ref.get());
  BENCH_CUDA_OK(cudaStreamSynchronize(g_context->stream));
  BENCH_CUDA_OK(cudaGetLastError());
  const std::vector<float> got = op.c.download(), want = ref.download();
  double max_ref = 0;
  for (float v : want) max_ref = std::max(max_ref, std::abs(static_cast<double>(v)));
  const double atol = 1e-5 * std::sqrt(static_cast<double>(op.shape.k)) * max_ref + 1e-5;
  const double err = bench::max_scaled_error(got, want, atol, 0.0);
  if (err <= 1.0) return "";
  return "differs from cuBLAS: max error " + std::to_string(err) + " x tolerance " + std::to_string(atol);
}

std::string plan_label(const GemmShape& s) {
  const nn::cuda::SgemmPlan plan = nn::cuda::plan_sgemm(s.m, s.n, s.k, 1, g_context->sm_count);
  std::string label = plan.large_tiles ? "128x128" : "64x64";
  if (plan.splits > 1) label += " split-K " + std::to_string(plan.splits);
  return label;
}

void bm_cublas(benchmark::State& state, const GemmShape& s) {
  if (!g_context) {
    state.SkipWithError("no CUDA device");
    return;
  }
  try {
    Operands op(s, g_context->stream);
    auto launch = [&] { run_cublas(op, op.c.get()); };
    launch();
    for (auto _ : state) state.SetIterationTime(bench::time_once_ms(g_context->stream, *g_context->flush, launch) * 1e-3);
    const double ms = bench::median_ms(g_context->stream, *g_context->flush, launch);
    state.counters["TFLOPs"] = tflops(s, ms);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void bm_ours(benchmark::State& state, const GemmShape& s) {
  if (!g_context) {
    state.SkipWithError("no CUDA device");
    return;
  }
  try {
    Operands op(s, g_context->stream);
    const std::string wrong = check_against_cublas(op);
    if (!wrong.empty()) {
      state.SkipWithError(wrong.c_str());
      return;
    }
    state.SetLabel(plan_label(s));
    auto ours = [&] { run_ours(op, op.c.get()); };
    auto cublas = [&] { run_cublas(op, op.c.get()); };
    for (auto _ : state) state.SetIterationTime(bench::time_once_ms(g_context->stream, *g_context->flush, ours) * 1e-3);
    const double ours_ms = bench::median_ms(g_context->stream, *g_context->flush, ours);
    const double cublas_ms = bench::median_ms(g_context->stream, *g_context->flush, cublas);
    state.counters["TFLOPs"] = tflops(s, ours_ms);
    state.counters["vs_cublas"] = cublas_ms / ours_ms;
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

std::vector<GemmShape> shapes() {
  std::vector<GemmShape> v;
  for (int64_t n : {1024, 2048, 4096, 8192}) {
    const std::string d = std::to_string(n);
    v.push_back({d + "x" + d + "x" + d, n, n, n, false, false});
  }
  v.push_back({"vgg_fc6_forward_64x4096x25088", 64, 4096, 25088, false, true});
  v.push_back({"vgg_fc6_input_grad_64x25088x4096", 64, 25088, 4096, false, false});
  v.push_back({"vgg_fc6_weight_grad_4096x25088x64", 4096, 25088, 64, true, false});
  v.push_back({"vgg_fc7_forward_64x4096x4096", 64, 4096, 4096, false, true});
  v.push_back({"vgg_fc8_forward_64x1000x4096", 64, 1000, 4096, false, true});
  return v;
}

// Timed iterations: about 0.2 s of work at 40 TFLOP/s, between 5 and 100.
int iterations_for(const GemmShape& s) {
  const double seconds = tflops(s, 1e3) / 40.0;  // 2MNK / 40e12
  return static_cast<int>(std::clamp(0.2 / seconds, 5.0, 100.0));
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  Context context;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0) {
    BENCH_CUDA_OK(cudaSetDevice(0));
    context.stream = nn::cuda::stream(0);
    if (cublasCreate(&context.cublas) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate failed");
    cublasSetStream(context.cublas, context.stream);
    cublasSetMathMode(context.cublas, CUBLAS_DEFAULT_MATH);
    context.flush = std::make_unique<bench::L2Flush>();
    BENCH_CUDA_OK(cudaDeviceGetAttribute(&context.sm_count, cudaDevAttrMultiProcessorCount, 0));
    g_context = &context;
  }

  static const std::vector<GemmShape> all = shapes();
  for (const GemmShape& s : all) {
    const int iterations = iterations_for(s);
    benchmark::RegisterBenchmark(("BM_Sgemm/cublas/" + s.name).c_str(), bm_cublas, s)
        ->UseManualTime()
        ->Iterations(iterations)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("BM_Sgemm/ours/" + s.name).c_str(), bm_ours, s)
        ->UseManualTime()
        ->Iterations(iterations)
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();

  g_context = nullptr;
  if (context.cublas) cublasDestroy(context.cublas);
  return 0;
}
