// nn_bench_cuda_conv: our convolution (kernels/conv_cuda.cu: Winograd F(4x4, 3x3) on the layers with
// >= 16 channels, conv_winograd_cuda.cu, the implicit GEMM on the first) against cuDNN on the 13
// conv layers of VGG16 (all 3x3, stride 1, padding 1) at batch 64, FP32, for forward, backward data
// and backward weight.
//
//   BM_Conv/<pass>/cudnn/<layer>  cuDNN with the fastest FP32 algorithm cudnnFind*AlgorithmEx
//                                 reports under CUDNN_FMA_MATH (no TF32) whose workspace fits the
//                                 buffer we could allocate (at most 4 GiB).
//   BM_Conv/<pass>/ours/<layer>   our launcher; first checks its result against cuDNN's on the same
//                                 inputs (SkipWithError when wrong), then measures both with
//                                 median_ms and reports TFLOPs and vs_cudnn = cuDNN median / ours.
//   BM_Conv/<pass>/total          the per-pass sums over the 13 layers of those two medians (ours,
//                                 cudnn, vs_cudnn): the number the target is judged on. A table of
//                                 every layer is printed to stderr at the end as well.
// The forward pass is compared without bias or ReLU (cuDNN's plain convolution; ours fuses them in
// the epilogue at no extra pass). Method (bench/cuda_bench_util.cuh): inputs uniform in [-1, 1)
// filled on the device from fixed seeds, an L2 flush before every timed launch, CUDA events, manual
// time. Everything runs on one stream, the cuDNN handle's. cudnnFind runs once per (pass, layer):
// a pass's cudnn and ours benchmarks share one prepared problem (buffers, descriptors, algorithm),
// which is rebuilt only when the next benchmark needs another one.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "conv_cuda.cuh"
#include "cuda_bench_util.cuh"

namespace {

#define CUDNN_CHECK(expr)                                                                      \
  do {                                                                                         \
    cudnnStatus_t cudnn_status_ = (expr);                                                      \
    if (cudnn_status_ != CUDNN_STATUS_SUCCESS)                                                 \
      throw std::runtime_error(std::string(#expr) + ": " + cudnnGetErrorString(cudnn_status_)); \
  } while (0)

struct Layer {
  const char* name;
  int c, o, hw;
};

constexpr Layer kLayers[] = {
    {"L01_3x64x224", 3, 64, 224},      {"L02_64x64x224", 64, 64, 224},    {"L03_64x128x112", 64, 128, 112},
    {"L04_128x128x112", 128, 128, 112}, {"L05_128x256x56", 128, 256, 56},  {"L06_256x256x56", 256, 256, 56},
    {"L07_256x256x56", 256, 256, 56},  {"L08_256x512x28", 256, 512, 28},  {"L09_512x512x28", 512, 512, 28},
    {"L10_512x512x28", 512, 512, 28},  {"L11_512x512x14", 512, 512, 14},  {"L12_512x512x14", 512, 512, 14},
    {"L13_512x512x14", 512, 512, 14},
};
constexpr int kLayerCount = sizeof(kLayers) / sizeof(kLayers[0]);
constexpr int kBatch = 64;
constexpr int kTimedRuns = 9, kWarmupRuns = 2, kIterations = 5;

enum Pass { kForward = 0, kBackwardData = 1, kBackwardWeight = 2 };
constexpr int kPassCount = 3;
const char* const kPassNames[kPassCount] = {"forward", "backward_data", "backward_weight"};

// VGG's 3x3 convolution, stride 1, padding 1 (same-size output), at batch kBatch.
nn::Conv2dGeometry layer_geometry(const Layer& l) {
  return nn::Conv2dGeometry::from({kBatch, l.c, l.hw, l.hw}, {l.o, l.c, 3, 3}, {1, 1}, {1, 1});
}

double conv_flops(const nn::Conv2dGeometry& g) {
  return 2.0 * g.n * g.o * g.oh * g.ow * g.c * g.kh * g.kw;
}

// ---- device helpers: seeded fill and the result check ----

__global__ void fill_uniform_kernel(float* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + i;  // splitmix64 of (seed, i)
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    p[i] = static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f;  // [-1, 1)
  }
}

bench::DeviceArray<float> random_array(size_t n, uint64_t seed, cudaStream_t s) {
  bench::DeviceArray<float> a(n);
  fill_uniform_kernel<<<1024, 256, 0, s>>>(a.get(), n, seed);
  BENCH_CUDA_OK(cudaGetLastError());
  return a;
}

__global__ void sum_squares_kernel(const float* v, size_t n, double* out) {
  double local = 0;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    local += static_cast<double>(v[i]) * v[i];
  for (int offset = 16; offset > 0; offset /= 2) local += __shfl_down_sync(0xffffffffu, local, offset);
  if (threadIdx.x % 32 == 0) atomicAdd(out, local);
}

// Largest |a - b| / (atol + rtol * |b|) as the bits of a non-negative float (NaN counts as inf).
__global__ void scaled_error_kernel(const float* a, const float* b, size_t n, float atol, float rtol,
                                    unsigned* worst_bits) {
  float worst = 0;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    float e = fabsf(a[i] - b[i]) / (atol + rtol * fabsf(b[i]));
    if (!(e <= FLT_MAX)) e = INFINITY;
    worst = fmaxf(worst, e);
  }
  for (int offset = 16; offset > 0; offset /= 2) worst = fmaxf(worst, __shfl_down_sync(0xffffffffu, worst, offset));
  if (threadIdx.x % 32 == 0) atomicMax(worst_bits, __float_as_uint(worst));
}

// max_scaled_error of ours against reference with atol = 1e-3 * RMS(reference), rtol = 1e-3 (cuDNN
// may pick Winograd or FFT algorithms, a little less exact than a direct sum; index bugs are O(1)).
double scaled_error_on_device(const float* ours, const float* reference, size_t n, cudaStream_t s) {
  bench::DeviceArray<double> sum_sq(1);
  bench::DeviceArray<unsigned> worst(1);
  BENCH_CUDA_OK(cudaMemsetAsync(sum_sq.get(), 0, sizeof(double), s));
  BENCH_CUDA_OK(cudaMemsetAsync(worst.get(), 0, sizeof(unsigned), s));
  sum_squares_kernel<<<1024, 256, 0, s>>>(reference, n, sum_sq.get());
  BENCH_CUDA_OK(cudaGetLastError());
  double host_sum = 0;
  BENCH_CUDA_OK(cudaMemcpyAsync(&host_sum, sum_sq.get(), sizeof(double), cudaMemcpyDeviceToHost, s));
  BENCH_CUDA_OK(cudaStreamSynchronize(s));
  const double rms = std::sqrt(host_sum / static_cast<double>(n));
  scaled_error_kernel<<<1024, 256, 0, s>>>(ours, reference, n, static_cast<float>(1e-3 * rms + 1e-30), 1e-3f,
                                           worst.get());
  BENCH_CUDA_OK(cudaGetLastError());
  unsigned bits = 0;
  BENCH_CUDA_OK(cudaMemcpyAsync(&bits, worst.get(), sizeof(unsigned), cudaMemcpyDeviceToHost, s));
  BENCH_CUDA_OK(cudaStreamSynchronize(s));
  float e;
  std::memcpy(&e, &bits, sizeof(e));
  return e;
}

// ---- the shared stream, cuDNN handle and L2 flush ----

struct Session {
  cudaStream_t stream = nullptr;
  cudnnHandle_t handle = nullptr;
  std::unique_ptr<bench::L2Flush> flush;
  Session() {
    BENCH_CUDA_OK(cudaStreamCreate(&stream));
    CUDNN_CHECK(cudnnCreate(&handle));
    CUDNN_CHECK(cudnnSetStream(handle, stream));
    flush = std::make_unique<bench::L2Flush>();
  }
};

Session& session() {
  static Session* s = new Session;  // lives until exit
  return *s;
}

// ---- one (pass, layer): buffers, descriptors, the cuDNN algorithm ----

class Problem {
 public:
  Problem(Pass pass, int layer) : pass_(pass), layer_(layer), g_(layer_geometry(kLayers[layer])) {
    Session& s = session();
    const size_t x_count = g_.n * g_.c * g_.h * g_.w, w_count = g_.o * g_.c * g_.kh * g_.kw;
    const size_t y_count = g_.n * g_.o * g_.oh * g_.ow;
    // Inputs a, b and outputs (ours, cuDNN's) per pass.
    if (pass == kForward) {
      a_ = random_array(x_count, 100 + layer, s.stream);
      b_ = random_array(w_count, 200 + layer, s.stream);
      out_count_ = y_count;
    } else if (pass == kBackwardData) {
      a_ = random_array(y_count, 300 + layer, s.stream);
      b_ = random_array(w_count, 200 + layer, s.stream);
      out_count_ = x_count;
    } else {
      a_ = random_array(y_count, 300 + layer, s.stream);
      b_ = random_array(x_count, 100 + layer, s.stream);
      out_count_ = w_count;
    }
    out_ours_ = bench::DeviceArray<float>(out_count_);
    out_cudnn_ = bench::DeviceArray<float>(out_count_);
    const size_t ours_bytes = pass == kBackwardData   ? nn::cuda::conv2d_backward_input_workspace_bytes(g_)
                              : pass == kBackwardWeight ? nn::cuda::conv2d_backward_weight_workspace_bytes(g_)
                                                        : nn::cuda::conv2d_forward_workspace_bytes(g_);
    ours_workspace_ = bench::DeviceArray<float>((ours_bytes + 3) / 4);

    CUDNN_CHECK(cudnnCreateTensorDescriptor(&x_desc_));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&y_desc_));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&w_desc_));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv_));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(x_desc_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g_.n, g_.c, g_.h, g_.w));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(y_desc_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g_.n, g_.o, g_.oh, g_.ow));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(w_desc_, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, g_.o, g_.c, g_.kh, g_.kw));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv_, g_.pad_h, g_.pad_w, g_.stride_h, g_.stride_w, 1, 1,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionMathType(conv_, CUDNN_FMA_MATH));
    BENCH_CUDA_OK(cudaStreamSynchronize(s.stream));
    find_algorithm();
  }

  ~Problem() {
    cudnnDestroyConvolutionDescriptor(conv_);
    cudnnDestroyFilterDescriptor(w_desc_);
    cudnnDestroyTensorDescriptor(y_desc_);
    cudnnDestroyTensorDescriptor(x_desc_);
  }

  Pass pass() const { return pass_; }
  int layer() const { return layer_; }
  const nn::Conv2dGeometry& geometry() const { return g_; }
  int algorithm() const { return algo_; }
  int math_type() const { return static_cast<int>(math_); }
  size_t cudnn_workspace_bytes() const { return cudnn_bytes_; }

  void run_cudnn() {
    Session& s = session();
    const float one = 1.f, zero = 0.f;
    void* ws = cudnn_bytes_ > 0 ? cudnn_workspace_.get() : nullptr;
    if (pass_ == kForward)
      CUDNN_CHECK(cudnnConvolutionForward(s.handle, &one, x_desc_, a_.get(), w_desc_, b_.get(), conv_,
                                          static_cast<cudnnConvolutionFwdAlgo_t>(algo_), ws, cudnn_bytes_, &zero,
                                          y_desc_, out_cudnn_.get()));
    else if (pass_ == kBackwardData)
      CUDNN_CHECK(cudnnConvolutionBackwardData(s.handle, &one, w_desc_, b_.get(), y_desc_, a_.get(), conv_,
                                               static_cast<cudnnConvolutionBwdDataAlgo_t>(algo_), ws, cudnn_bytes_,
                                               &zero, x_desc_, out_cudnn_.get()));
    else
      CUDNN_CHECK(cudnnConvolutionBackwardFilter(s.handle, &one, x_desc_, b_.get(), y_desc_, a_.get(), conv_,
                                                 static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo_), ws,
                                                 cudnn_bytes_, &zero, w_desc_, out_cudnn_.get()));
  }

  void run_ours() {
    Session& s = session();
    if (pass_ == kForward)
      nn::cuda::conv2d_forward_f32(a_.get(), b_.get(), nullptr, out_ours_.get(), g_, false, ours_workspace_.get(),
                                   s.stream);
    else if (pass_ == kBackwardData)
      nn::cuda::conv2d_backward_input_f32(a_.get(), b_.get(), out_ours_.get(), g_, ours_workspace_.get(), s.stream);
    else
      nn::cuda::conv2d_backward_weight_f32(a_.get(), b_.get(), out_ours_.get(), g_, ours_workspace_.get(), s.stream);
  }

  // Runs both once and returns ours' scaled error against cuDNN (<= 1: within tolerance).
  double check() {
    Session& s = session();
    BENCH_CUDA_OK(cudaMemsetAsync(out_ours_.get(), 0xff, out_count_ * sizeof(float), s.stream));  // NaN
    run_cudnn();
    run_ours();
    return scaled_error_on_device(out_ours_.get(), out_cudnn_.get(), out_count_, s.stream);
  }

 private:
  // With the descriptor set to CUDNN_FMA_MATH cuDNN should only run FMA kernels; a result reported
  // as a tensor-op math type is skipped all the same.
  static bool fma_only(cudnnMathType_t m) { return m == CUDNN_FMA_MATH || m == CUDNN_DEFAULT_MATH; }

  // cudnnFind*AlgorithmEx on our buffers with as much workspace as we can get (at most 4 GiB);
  // keeps the fastest FMA-math result that succeeded.
  void find_algorithm() {
    Session& s = session();
    size_t free_bytes = 0, total_bytes = 0;
    BENCH_CUDA_OK(cudaMemGetInfo(&free_bytes, &total_bytes));
    size_t budget = std::min<size_t>(size_t{4} << 30, free_bytes > (size_t{2} << 30) ? free_bytes - (size_t{2} << 30) : 0);
    budget = budget / 256 * 256;
    bench::DeviceArray<float> search_ws(budget / 4 + 1);
    constexpr int kMaxResults = 16;
    int returned = 0;
    int best = -1;
    size_t best_bytes = 0;
    if (pass_ == kForward) {
      cudnnConvolutionFwdAlgoPerf_t perf[kMaxResults];
      CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(s.handle, x_desc_, a_.get(), w_desc_, b_.get(), conv_,
                                                         y_desc_, out_cudnn_.get(), kMaxResults, &returned, perf,
                                                         search_ws.get(), budget));
      for (int i = 0; i < returned && best < 0; ++i)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && fma_only(perf[i].mathType) && perf[i].memory <= budget) {
          best = perf[i].algo;
          best_bytes = perf[i].memory;
          math_ = perf[i].mathType;
        }
    } else if (pass_ == kBackwardData) {
      cudnnConvolutionBwdDataAlgoPerf_t perf[kMaxResults];
      CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(s.handle, w_desc_, b_.get(), y_desc_, a_.get(), conv_,
                                                              x_desc_, out_cudnn_.get(), kMaxResults, &returned,
                                                              perf, search_ws.get(), budget));
      for (int i = 0; i < returned && best < 0; ++i)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && fma_only(perf[i].mathType) && perf[i].memory <= budget) {
          best = perf[i].algo;
          best_bytes = perf[i].memory;
          math_ = perf[i].mathType;
        }
    } else {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[kMaxResults];
      CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(s.handle, x_desc_, b_.get(), y_desc_, a_.get(),
                                                                conv_, w_desc_, out_cudnn_.get(), kMaxResults,
                                                                &returned, perf, search_ws.get(), budget));
      for (int i = 0; i < returned && best < 0; ++i)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && fma_only(perf[i].mathType) && perf[i].memory <= budget) {
          best = perf[i].algo;
          best_bytes = perf[i].memory;
          math_ = perf[i].mathType;
        }
    }
    if (best < 0) throw std::runtime_error("cudnnFind returned no usable FP32 FMA-math algorithm");
    algo_ = best;
    cudnn_bytes_ = best_bytes;
    cudnn_workspace_ = bench::DeviceArray<float>(best_bytes / 4 + 1);
  }

  Pass pass_;
  int layer_;
  nn::Conv2dGeometry g_;
  bench::DeviceArray<float> a_, b_, out_ours_, out_cudnn_, ours_workspace_, cudnn_workspace_;
  size_t out_count_ = 0;
  cudnnTensorDescriptor_t x_desc_ = nullptr, y_desc_ = nullptr;
  cudnnFilterDescriptor_t w_desc_ = nullptr;
  cudnnConvolutionDescriptor_t conv_ = nullptr;
  int algo_ = -1;
  cudnnMathType_t math_ = CUDNN_FMA_MATH;
  size_t cudnn_bytes_ = 0;
};

// The current problem; replaced (old buffers freed first) when another is asked for.
Problem& problem(Pass pass, int layer) {
  static std::unique_ptr<Problem> current;
  if (!current || current->pass() != pass || current->layer() != layer) {
    current.reset();
    current = std::make_unique<Problem>(pass, layer);
  }
  return *current;
}

// Medians measured by the ours benchmarks: [pass][layer], negative until measured.
struct Medians {
  double ours_ms = -1, cudnn_ms = -1;
};
Medians g_medians[kPassCount][kLayerCount];

// ---- benchmarks ----

void bm_cudnn(benchmark::State& state, Pass pass, int layer) {
  try {
    Problem& p = problem(pass, layer);
    Session& s = session();
    p.run_cudnn();
    BENCH_CUDA_OK(cudaStreamSynchronize(s.stream));
    for (auto _ : state) state.SetIterationTime(bench::time_once_ms(s.stream, *s.flush, [&] { p.run_cudnn(); }) / 1e3);
    state.counters["algo"] = p.algorithm();
    state.counters["math_type"] = p.math_type();
    state.counters["workspace_MiB"] = static_cast<double>(p.cudnn_workspace_bytes()) / (1 << 20);
    state.counters["TFLOPs"] = benchmark::Counter(conv_flops(p.geometry()) / 1e12,
                                                  benchmark::Counter::kIsIterationInvariantRate);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void bm_ours(benchmark::State& state, Pass pass, int layer) {
  try {
    Problem& p = problem(pass, layer);
    Session& s = session();
    const double error = p.check();
    if (!(error <= 1.0)) {
      state.SkipWithError(("result differs from cuDNN: max scaled error " + std::to_string(error)).c_str());
      return;
    }
    const double cudnn_ms = bench::median_ms(s.stream, *s.flush, [&] { p.run_cudnn(); }, kTimedRuns, kWarmupRuns);
    const double ours_ms = bench::median_ms(s.stream, *s.flush, [&] { p.run_ours(); }, kTimedRuns, kWarmupRuns);
    for (auto _ : state) state.SetIterationTime(bench::time_once_ms(s.stream, *s.flush, [&] { p.run_ours(); }) / 1e3);
    g_medians[pass][layer] = {ours_ms, cudnn_ms};
    state.counters["TFLOPs"] = conv_flops(p.geometry()) / (ours_ms * 1e-3) / 1e12;
    state.counters["vs_cudnn"] = cudnn_ms / ours_ms;
    state.counters["ours_ms"] = ours_ms;
    state.counters["cudnn_ms"] = cudnn_ms;
    state.counters["max_scaled_error"] = error;
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// Sums of the medians over the 13 layers of one pass.
void bm_total(benchmark::State& state, Pass pass) {
  double ours = 0, cudnn = 0, flops = 0;
  for (int l = 0; l < kLayerCount; ++l) {
    if (g_medians[pass][l].ours_ms < 0) {
      state.SkipWithError("needs every BM_Conv/<pass>/ours/ benchmark of this pass to have run and passed");
      return;
    }
    ours += g_medians[pass][l].ours_ms;
    cudnn += g_medians[pass][l].cudnn_ms;
    flops += conv_flops(layer_geometry(kLayers[l]));
  }
  for (auto _ : state) state.SetIterationTime(ours / 1e3);
  state.counters["ours_ms"] = ours;
  state.counters["cudnn_ms"] = cudnn;
  state.counters["vs_cudnn"] = cudnn / ours;
  state.counters["TFLOPs"] = flops / (ours * 1e-3) / 1e12;
}

void print_table() {
  std::fprintf(stderr, "\n%-18s %-16s %10s %10s %8s\n", "pass", "layer", "ours_ms", "cudnn_ms", "vs_cudnn");
  for (int pass = 0; pass < kPassCount; ++pass) {
    double ours = 0, cudnn = 0;
    bool complete = true;
    for (int l = 0; l < kLayerCount; ++l) {
      const Medians& m = g_medians[pass][l];
      if (m.ours_ms < 0) {
        complete = false;
        continue;
      }
      ours += m.ours_ms;
      cudnn += m.cudnn_ms;
      std::fprintf(stderr, "%-18s %-16s %10.3f %10.3f %8.3f\n", kPassNames[pass], kLayers[l].name, m.ours_ms,
                   m.cudnn_ms, m.cudnn_ms / m.ours_ms);
    }
    if (ours > 0)
      std::fprintf(stderr, "%-18s %-16s %10.3f %10.3f %8.3f%s\n", kPassNames[pass], "TOTAL", ours, cudnn, cudnn / ours,
                   complete ? "" : "  (incomplete)");
  }
}

}  // namespace

int main(int argc, char** argv) {
  for (int pass = 0; pass < kPassCount; ++pass) {
    const Pass p = static_cast<Pass>(pass);
    for (int l = 0; l < kLayerCount; ++l) {
      const std::string suffix = std::string(kLayers[l].name);
      benchmark::RegisterBenchmark(("BM_Conv/" + std::string(kPassNames[pass]) + "/cudnn/" + suffix).c_str(),
                                   [p, l](benchmark::State& st) { bm_cudnn(st, p, l); })
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond)
          ->Iterations(kIterations);
      benchmark::RegisterBenchmark(("BM_Conv/" + std::string(kPassNames[pass]) + "/ours/" + suffix).c_str(),
                                   [p, l](benchmark::State& st) { bm_ours(st, p, l); })
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond)
          ->Iterations(kIterations);
    }
    benchmark::RegisterBenchmark(("BM_Conv/" + std::string(kPassNames[pass]) + "/total").c_str(),
                                 [p](benchmark::State& st) { bm_total(st, p); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(1);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "nn_bench_cuda_conv: no CUDA device\n");
    return 0;
  }
  benchmark::RunSpecifiedBenchmarks();
  print_table();
  benchmark::Shutdown();
  return 0;
}
