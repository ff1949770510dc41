// CUDA plumbing: device factories, the fill/copy kernels, host<->device copies. Skips without a
// device (labelled cuda in CTest).
#include <gtest/gtest.h>
#include <nn/nn.h>

#include <string>
#include <vector>

#include "kernel_table.h"

namespace {

#define REQUIRE_CUDA() \
  if (!nn::cuda_available()) GTEST_SKIP() << "no CUDA device"

TEST(Cuda, FullFillsEveryElementOnDevice) {
  REQUIRE_CUDA();
  nn::Tensor t = nn::full({37, 129}, 3.25, nn::f32, nn::Device::cuda());
  EXPECT_EQ(t.device(), nn::Device::cuda());
  for (float v : t.to_vector<float>()) ASSERT_EQ(v, 3.25f);
  nn::Tensor z = nn::zeros({1000}, nn::f64, nn::Device::cuda());
  for (double v : z.to_vector<double>()) ASSERT_EQ(v, 0.0);
}

TEST(Cuda, StridedCopyMatchesCpu) {
  REQUIRE_CUDA();
  nn::Generator gen(3);
  nn::Tensor x = nn::randn({17, 33}, gen);
  nn::Tensor on_gpu = x.to(nn::Device::cuda());
  nn::Tensor transposed = on_gpu.t().contiguous();  // runs the CUDA strided copy kernel
  nn::Tensor expected = x.t().contiguous();
  EXPECT_EQ(transposed.to_vector<float>(), expected.to_vector<float>());
  nn::Tensor as_double = on_gpu.to(nn::f64);  // dtype conversion on the device
  std::vector<double> d = as_double.to_vector<double>();
  std::vector<float> f = x.to_vector<float>();
  for (size_t i = 0; i < f.size(); ++i) ASSERT_EQ(d[i], static_cast<double>(f[i]));
}

TEST(Cuda, DeviceCountIsConsistent) {
  // Runs everywhere: without a device the count is 0 and allocation fails with a clear message.
  if (nn::cuda_available()) {
    EXPECT_GT(nn::cuda_device_count(), 0);
    return;
  }
  EXPECT_EQ(nn::cuda_device_count(), 0);
  try {
    nn::zeros({4}, nn::f32, nn::Device::cuda());
    FAIL() << "allocating on a missing CUDA device must throw";
  } catch (const nn::Error& e) {
    std::string msg = e.what();
    EXPECT_TRUE(msg.find("cuda") != std::string::npos) << msg;
  }
}

}  // namespace

namespace {

// Runs without a device: when the CUDA backend is compiled in (its copy kernel is registered),
// every entry of the kernel table (libnn/src/ops.def) has a CUDA version.
TEST(CudaKernelTable, EveryKernelHasACudaVersionWhenCudaIsBuilt) {
  const nn::KernelTable& t = nn::kernel_table(nn::DeviceType::cuda);
  if (!t.copy) GTEST_SKIP() << "nn was built without CUDA";
  std::vector<std::string> missing;
#define NN_KERNEL(name, params) \
  if (!t.name) missing.push_back(#name);
#include "ops.def"
#undef NN_KERNEL
  EXPECT_TRUE(missing.empty()) << "no CUDA kernel for: " << ::testing::PrintToString(missing);
}

}  // namespace
