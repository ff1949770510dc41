// The CUDA backend as a whole: a small VGG's training steps on CUDA equal to the same steps on the
// CPU (forward, loss, every parameter's gradient, the parameters after Adam steps), and the caching
// allocator (reuse, statistics, empty_cache, out-of-memory message). Skips without a device.
#include <gtest/gtest.h>
#include <nn/models/vgg.h>
#include <nn/nn.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

#define REQUIRE_CUDA() \
  if (!nn::cuda_available()) GTEST_SKIP() << "no CUDA device"

using nn::Tensor;

// |a - b| <= tol * max|a| + 1e-6 elementwise: the summation orders of the two backends differ.
void expect_close(const Tensor& cpu, const Tensor& gpu, double tol, const std::string& what) {
  ASSERT_EQ(cpu.shape(), gpu.shape()) << what;
  std::vector<double> a = cpu.to_vector<double>(), b = gpu.to_vector<double>();
  double scale = 0;
  for (double v : a) scale = std::max(scale, std::abs(v));
  ASSERT_GT(scale, 0) << what << " is all zero: the comparison would prove nothing";
  int reported = 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (!(std::abs(a[i] - b[i]) <= tol * scale + 1e-6) && reported++ < 5)
      ADD_FAILURE() << what << " element " << i << ": cpu " << a[i] << ", cuda " << b[i] << " (scale " << scale << ")";
}

nn::models::VGGOptions small_vgg_options() {
  nn::models::VGGOptions o;
  o.depth = 11;
  o.num_classes = 5;
  o.width_multiplier = 1.0 / 16;
  o.input_size = 32;
  o.hidden_features = 24;
  o.dropout = 0.0;  // the masks' random streams are tested in CudaRandom
  return o;
}

TEST(CudaModel, SmallVggTrainingStepsMatchCpu) {
  REQUIRE_CUDA();
  nn::Generator gen_cpu(41), gen_gpu(41);
  nn::models::VGG cpu_model(small_vgg_options(), gen_cpu);
  nn::models::VGG gpu_model(small_vgg_options(), gen_gpu);
  gpu_model.to(nn::Device::cuda());
  nn::Generator data_gen(7);
  const Tensor x = nn::randn({3, 3, 32, 32}, data_gen);
  const Tensor target = nn::from_vector<int64_t>({4, 0, 2}, {3});
  const Tensor x_gpu = x.to(nn::Device::cuda()), target_gpu = target.to(nn::Device::cuda());
  nn::optim::Adam cpu_opt(cpu_model.parameters(), 1e-3), gpu_opt(gpu_model.parameters(), 1e-3);
  auto cpu_params = cpu_model.named_parameters();
  auto gpu_params = gpu_model.named_parameters();
  ASSERT_EQ(cpu_params.size(), gpu_params.size());
  for (int step = 0; step < 3; ++step) {
    cpu_opt.zero_grad();
    gpu_opt.zero_grad();
    Tensor cpu_logits = cpu_model(x), gpu_logits = gpu_model(x_gpu);
    ASSERT_EQ(gpu_logits.device(), nn::Device::cuda());
    expect_close(cpu_logits, gpu_logits, 1e-4, "logits at step " + std::to_string(step));
    Tensor cpu_loss = nn::cross_entropy(cpu_logits, target), gpu_loss = nn::cross_entropy(gpu_logits, target_gpu);
    expect_close(cpu_loss, gpu_loss, 1e-5, "loss at step " + std::to_string(step));
    cpu_loss.backward();
    gpu_loss.backward();
    for (size_t i = 0; i < cpu_params.size(); ++i)
      expect_close(cpu_params[i].second.grad(), gpu_params[i].second.grad(), 2e-4,
                   "gradient of " + cpu_params[i].first + " at step " + std::to_string(step));
    cpu_opt.step();
    gpu_opt.step();
  }
  for (size_t i = 0; i < cpu_params.size(); ++i)
    expect_close(cpu_params[i].second, gpu_params[i].second, 1e-4, "parameter " + cpu_params[i].first + " after 3 steps");
}

TEST(CudaMemory, FreedBlocksAreReusedAndCounted) {
  REQUIRE_CUDA();
  const char* caching = std::getenv("NN_CUDA_CACHING");
  if (caching && std::string(caching) == "0") GTEST_SKIP() << "caching is off (NN_CUDA_CACHING=0)";
  nn::cuda::synchronize();
  const size_t n = 300000;  // 1.2 MB: a size class of its own
  nn::cuda::MemoryStats before = nn::cuda::memory_stats();
  {
    Tensor a = nn::zeros({static_cast<int64_t>(n)}, nn::f32, nn::Device::cuda());
    nn::cuda::MemoryStats during = nn::cuda::memory_stats();
    EXPECT_GE(during.allocated_bytes, before.allocated_bytes + n * 4);
    EXPECT_GE(during.peak_allocated_bytes, during.allocated_bytes);
  }
  nn::cuda::MemoryStats after_free = nn::cuda::memory_stats();
  EXPECT_EQ(after_free.allocated_bytes, before.allocated_bytes);
  EXPECT_GE(after_free.cached_bytes, n * 4);
  {
    Tensor b = nn::full({static_cast<int64_t>(n)}, 2.0, nn::f32, nn::Device::cuda());
    nn::cuda::MemoryStats again = nn::cuda::memory_stats();
    EXPECT_EQ(again.driver_allocations, after_free.driver_allocations) << "the freed block was not reused";
    EXPECT_EQ(again.cache_hits, after_free.cache_hits + 1);
    std::vector<float> v = b.to_vector<float>();
    EXPECT_EQ(v.front(), 2.0f);
    EXPECT_EQ(v.back(), 2.0f);
  }
  nn::cuda::empty_cache();
  nn::cuda::MemoryStats emptied = nn::cuda::memory_stats();
  EXPECT_EQ(emptied.cached_bytes, 0u);
  EXPECT_EQ(emptied.reserved_bytes, emptied.allocated_bytes);
}

TEST(CudaMemory, OutOfMemorySaysWhatWasAskedAndWhatIsFree) {
  REQUIRE_CUDA();
  try {
    Tensor huge = nn::empty({int64_t{1} << 46}, nn::f32, nn::Device::cuda());  // 256 TiB
    FAIL() << "a 256 TiB allocation succeeded";
  } catch (const nn::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("out of memory"), std::string::npos) << msg;
    EXPECT_NE(msg.find("asked for 281474976710656 bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find("free of"), std::string::npos) << msg;
  }
  // The device is still usable afterwards.
  Tensor t = nn::full({17}, 1.5, nn::f32, nn::Device::cuda());
  EXPECT_EQ(t.to_vector<float>()[16], 1.5f);
}

TEST(CudaMemory, StatsWithoutADeviceAreZero) {
  if (nn::cuda_available()) GTEST_SKIP() << "a device is present";
  nn::cuda::MemoryStats s = nn::cuda::memory_stats();
  EXPECT_EQ(s.allocated_bytes, 0u);
  EXPECT_EQ(s.reserved_bytes, 0u);
  nn::cuda::empty_cache();  // no-ops, no throw
  nn::cuda::synchronize();
}

}  // namespace
