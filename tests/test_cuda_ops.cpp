// The CUDA kernels other than GEMM and convolution against the CPU backend, through the public
// API: elementwise (odd and large sizes, transposed / strided / misaligned / broadcast inputs, in
// place), row reductions (every launch shape, each dim of a 3-D tensor, ties and NaN), softmax,
// pooling (ties, NaN, padding and ceil modes), losses with weights and ignore_index, random fills
// and dropout (the same Philox values as the CPU), and SGD / Adam / AdamW steps. Values must agree
// within 1e-5 + 1e-4*|cpu| unless stated (indices and random draws exactly). Skips without a
// device (suite names contain Cuda: labelled cuda in CTest).
#include <gtest/gtest.h>
#include <nn/nn.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

#define REQUIRE_CUDA() \
  if (!nn::cuda_available()) GTEST_SKIP() << "no CUDA device"

using nn::Tensor;

const nn::Device kCpu = nn::Device::cpu();
nn::Device cuda_device() { return nn::Device::cuda(); }

Tensor on_cuda(const Tensor& t) { return t.to(cuda_device()); }

std::vector<double> host_values(const Tensor& t) { return t.cpu().contiguous().to(nn::f64).to_vector<double>(); }

// |cuda - cpu| <= atol + rtol*|cpu| elementwise; NaN must match NaN, infinities must be equal.
void expect_close(const Tensor& got, const Tensor& want, const std::string& what, double atol = 1e-5,
                  double rtol = 1e-4) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  EXPECT_EQ(got.device(), cuda_device()) << what;
  const std::vector<double> g = host_values(got), w = host_values(want);
  int failures = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(w[i]) && std::isnan(g[i])) continue;
    if (g[i] == w[i]) continue;
    if (!(std::abs(g[i] - w[i]) <= atol + rtol * std::abs(w[i]))) {
      if (++failures <= 5) ADD_FAILURE() << what << ": element " << i << " cuda " << g[i] << " cpu " << w[i];
    }
  }
  EXPECT_EQ(failures, 0) << what << ": " << failures << " of " << g.size() << " elements differ";
}

void expect_equal_indices(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  EXPECT_EQ(got.cpu().contiguous().to_vector<int64_t>(), want.contiguous().to_vector<int64_t>()) << what;
}

// A leaf that requires grad, on `device`.
Tensor leaf(const Tensor& t, nn::Device device) {
  Tensor l = t.to(device).detach();
  l.requires_grad_(true);
  return l;
}

const std::vector<int64_t> kOddSizes = {1, 3, 17, 129, 1000, (int64_t{1} << 20) + 3};

// ---- elementwise ----

struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> f;
  bool positive_input;
};

std::vector<UnaryCase> unary_cases() {
  return {
      {"neg", [](const Tensor& x) { return nn::neg(x); }, false},
      {"exp", [](const Tensor& x) { return nn::exp(x); }, false},
      {"log", [](const Tensor& x) { return nn::log(x); }, true},
      {"sqrt", [](const Tensor& x) { return nn::sqrt(x); }, true},
      {"abs", [](const Tensor& x) { return nn::abs(x); }, false},
      {"relu", [](const Tensor& x) { return nn::relu(x); }, false},
      {"sigmoid", [](const Tensor& x) { return nn::sigmoid(nn::mul(x, 8.0)); }, false},
      {"tanh", [](const Tensor& x) { return nn::tanh(x); }, false},
      {"clamp", [](const Tensor& x) { return nn::clamp(x, -0.5, 0.75); }, false},
      {"add_scalar", [](const Tensor& x) { return nn::add(x, 1.5); }, false},
      {"mul_scalar", [](const Tensor& x) { return nn::mul(x, -2.5); }, false},
      {"rsub_scalar", [](const Tensor& x) { return nn::sub(3.0, x); }, false},
      {"rdiv_scalar", [](const Tensor& x) { return nn::div(2.0, x); }, true},
      {"square", [](const Tensor& x) { return nn::pow(x, 2.0); }, false},
      {"pow_scalar", [](const Tensor& x) { return nn::pow(x, 1.7); }, true},
  };
}

// Positive inputs for log/sqrt/pow: |x| + 0.1 on the CPU.
Tensor input_for(const Tensor& x, bool positive) { return positive ? nn::add(nn::abs(x), 0.1) : x; }

TEST(CudaOps, UnaryOddSizesMatchCpu) {
  REQUIRE_CUDA();
  nn::Generator gen(11);
  for (int64_t n : kOddSizes) {
    Tensor x = nn::randn({n}, gen);
    for (const UnaryCase& c : unary_cases()) {
      Tensor in = input_for(x, c.positive_input);
      expect_close(c.f(on_cuda(in)), c.f(in), std::string(c.name) + " n=" + std::to_string(n));
    }
  }
}

TEST(CudaOps, UnaryF64AndNonContiguousMatchCpu) {
  REQUIRE_CUDA();
  nn::Generator gen(12);
  Tensor x = nn::randn({33, 17}, gen);
  Tensor x64 = nn::randn({129, 3}, gen, nn::f64);
  Tensor long_x = nn::randn({1001}, gen);
  for (const UnaryCase& c : unary_cases()) {
    const std::string name = c.name;
    Tensor in = input_for(x, c.positive_input);
    Tensor in_cuda = on_cuda(in);
    expect_close(c.f(in_cuda.t()), c.f(in.t()), name + " transposed");
    expect_close(c.f(in_cuda.slice(1, 1, 17, 2)), c.f(in.slice(1, 1, 17, 2)), name + " strided");
    Tensor in64 = input_for(x64, c.positive_input);
    expect_close(c.f(on_cuda(in64)), c.f(in64), name + " f64", 1e-12, 1e-10);
    // A contiguous view one element into its storage: not 16-byte aligned (scalar dense path).
    Tensor lin = input_for(long_x, c.positive_input);
    expect_close(c.f(on_cuda(lin).narrow(0, 1, 1000)), c.f(lin.narrow(0, 1, 1000)), name + " misaligned");
  }
}

struct BinaryCase {
  const char* name;
  std::function<Tensor(const Tensor&, const Tensor&)> f;
};

std::vector<BinaryCase> binary_cases() {
  return {
      {"add", [](const Tensor& a, const Tensor& b) { return nn::add(a, b); }},
      {"sub", [](const Tensor& a, const Tensor& b) { return nn::sub(a, b); }},
      {"mul", [](const Tensor& a, const Tensor& b) { return nn::mul(a, b); }},
      {"div", [](const Tensor& a, const Tensor& b) { return nn::div(a, b); }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return nn::maximum(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return nn::minimum(a, b); }},
      // pow with a positive base
      {"pow", [](const Tensor& a, const Tensor& b) { return nn::pow(nn::add(nn::abs(a), 0.5), b); }},
  };
}

TEST(CudaOps, BinaryOddSizesMatchCpu) {
  REQUIRE_CUDA();
  nn::Generator gen(21);
  for (int64_t n : kOddSizes) {
    Tensor a = nn::randn({n}, gen), b = nn::randn({n}, gen);
    Tensor ac = on_cuda(a), bc = on_cuda(b);
    for (const BinaryCase& c : binary_cases())
      expect_close(c.f(ac, bc), c.f(a, b), std::string(c.name) + " n=" + std::to_string(n));
  }
}

TEST(CudaOps, BinaryBroadcastAndStridedMatchCpu) {
  REQUIRE_CUDA();
  nn::Generator gen(22);
  struct Pair {
    std::string what;
    Tensor a, b;
  };
  Tensor base = nn::randn({40, 129}, gen);
  Tensor base64 = nn::randn({9, 33}, gen, nn::f64);
  std::vector<Pair> pairs = {
      {"(17,1,5) x (1,129,5)", nn::randn({17, 1, 5}, gen), nn::randn({1, 129, 5}, gen)},
      {"(3,1000) x (1000)", nn::randn({3, 1000}, gen), nn::randn({1000}, gen)},
      {"(1000,3) x 0-d", nn::randn({1000, 3}, gen), nn::randn({}, gen)},
      {"(40,129) x (129)", base, nn::randn({129}, gen)},
      {"transposed x strided", nn::randn({129, 20}, gen).t(), base.slice(1, 0, 129, 1).slice(0, 0, 40, 2)},
      {"f64 (9,33) x (9,1)", base64, nn::randn({9, 1}, gen, nn::f64)},
      {"f64 transposed x (33,1)", base64.t(), nn::randn({33, 1}, gen, nn::f64)},
  };
  for (const Pair& p : pairs) {
    const bool f64 = p.a.dtype() == nn::f64;
    for (const BinaryCase& c : binary_cases()) {
      expect_close(c.f(on_cuda(p.a), on_cuda(p.b)), c.f(p.a, p.b), std::string(c.name) + " " + p.what,
                   f64 ? 1e-12 : 1e-5, f64 ? 1e-10 : 1e-4);
      expect_close(c.f(on_cuda(p.b), on_cuda(p.a)), c.f(p.b, p.a), std::string(c.name) + " swapped " + p.what,
                   f64 ? 1e-12 : 1e-5, f64 ? 1e-10 : 1e-4);
    }
  }
  // Strided views of one device tensor (the to() of a view would copy it dense).
  Tensor bc = on_cuda(base);
  expect_close(nn::add(bc.slice(1, 1, 129, 3), bc.slice(1, 0, 128, 3)),
               nn::add(base.slice(1, 1, 129, 3), base.slice(1, 0, 128, 3)), "add of two strided device views");
  expect_close(nn::mul(bc.t(), bc.t()), nn::mul(base.t(), base.t()), "mul of transposed device views");
  expect_close(nn::div(bc.narrow(1, 1, 100), bc.narrow(1, 2, 100)),
               nn::div(base.narrow(1, 1, 100), base.narrow(1, 2, 100)), "div of offset device views");
}

TEST(CudaOps, InPlaceAddIntoItselfMatchesCpu) {
  REQUIRE_CUDA();
  nn::Generator gen(23);
  Tensor a = nn::randn({37, 1000}, gen), b = nn::randn({1000}, gen), c = nn::randn({37, 1000}, gen);
  Tensor ac = on_cuda(a).clone(), acc = on_cuda(a).clone();
  Tensor expect_b = a.clone(), expect_c = a.clone();
  ac.add_(on_cuda(b), 0.5);    // broadcast operand, out aliases the first input
  expect_b.add_(b, 0.5);
  acc.add_(on_cuda(c));        // dense operands, out aliases the first input (vector path)
  expect_c.add_(c);
  expect_close(ac, expect_b, "add_ broadcast");
  expect_close(acc, expect_c, "add_ dense");
  acc.mul_(-3.0);
  expect_c.mul_(-3.0);
  expect_close(acc, expect_c, "mul_");
}

TEST(CudaOps, ElementwiseGradientsMatchCpu) {
  REQUIRE_CUDA();
  nn::Generator gen(24);
  Tensor x = nn::randn({17, 129}, gen), y = nn::randn({17, 129}, gen), w = nn::randn({17, 129}, gen);
  auto run = [&](nn::Device d) {
    Tensor xl = leaf(x, d), yl = leaf(y, d);
    Tensor wd = w.to(d);
    Tensor loss = nn::add(nn::sum(nn::mul(nn::relu(xl), wd)), nn::sum(nn::mul(nn::sigmoid(xl), wd)));
    loss = nn::add(loss, nn::sum(nn::mul(nn::tanh(yl), wd)));
    loss = nn::add(loss, nn::sum(nn::mul(nn::maximum(xl, yl), wd)));
    loss = nn::add(loss, nn::sum(nn::mul(nn::minimum(xl, yl), nn::mul(wd, 0.5))));
    loss = nn::add(loss, nn::sum(nn::mul(nn::clamp(xl, -0.3, 0.4), wd)));
    loss.backward();
    return std::make_pair(xl.grad(), yl.grad());
  };
  auto [gx_cpu, gy_cpu] = run(kCpu);
  auto [gx_cuda, gy_cuda] = run(cuda_device());
  expect_close(gx_cuda, gx_cpu, "dx");
  expect_close(gy_cuda, gy_cpu, "dy");
}

// ---- reductions ----

TEST(CudaOps, SumAndMaxOddAndLargeSizesMatchCpu) {
  REQUIRE_CUDA();
  nn::Generator gen(31);
  for (int64_t n : kOddSizes) {
    Tensor x = nn::randn({n}, gen);
    Tensor xc = on_cuda(x);
    const std::string what = " n=" + std::to_string(n);
    expect_close(nn::sum(xc), nn::sum(x), "sum" + what);
    expect_close(nn::max(xc), nn::max(x), "max" + what, 0, 0);
    auto [v, i] = nn::max_with_indices(xc, 0);
    auto [v_cpu, i_cpu] = nn::max_with_indices(x, 0);
    expect_close(v, v_cpu, "max value" + what, 0, 0);
    expect_equal_indices(i, i_cpu, "argmax" + what);
  }
  // Every launch shape: thread per row (cols <= 8), warp per row, many long rows, few long rows
  // split over blocks (partials combined by a second kernel).
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {100000, 3}, {1, 8}, {5000, 17}, {33, 1000}, {9000, 1500}, {7, 5000}, {2, (int64_t{1} << 20) + 3}, {1, 1025}};
  for (auto [rows, cols] : shapes) {
    Tensor x = nn::randn({rows, cols}, gen);
    Tensor xc = on_cuda(x);
    const std::string what = " (" + std::to_string(rows) + ", " + std::to_string(cols) + ")";
    expect_close(nn::sum(xc, {1}), nn::sum(x, {1}), "sum rows" + what);
    expect_close(nn::mean(xc, {1}), nn::mean(x, {1}), "mean rows" + what);
    auto [v, i] = nn::max_with_indices(xc, 1);
    auto [v_cpu, i_cpu] = nn::max_with_indices(x, 1);
    expect_close(v, v_cpu, "max rows" + what, 0, 0);
    expect_equal_indices(i, i_cpu, "argmax rows" + what);
  }
  Tensor x64 = nn::randn({7, 5000}, gen, nn::f64);
  expect_close(nn::sum(on_cuda(x64), {1}), nn::sum(x64, {1}), "sum f64", 1e-12, 1e-10);
  expect_close(nn::max(on_cuda(x64), {1}), nn::max(x64, {1}), "max f64", 0, 0);
}

TEST(CudaOps, SumAndMaxOverEachDimOf3dMatchCpu) {
  REQUIRE_CUDA();
  nn::Generator gen(32);
  Tensor x = nn::randn({7, 33, 129}, gen);
  Tensor xc = on_cuda(x);
  const std::vector<std::vector<int64_t>> dim_sets = {{0}, {1}, {2}, {0, 2}, {0, 1}, {}};
  for (const auto& dims : dim_sets) {
    std::string what = " dims {";
    for (int64_t d : dims) what += std::to_string(d) + ",";
    what += "}";
    expect_close(nn::sum(xc, dims), nn::sum(x, dims), "sum" + what);
    expect_close(nn::sum(xc, dims, true), nn::sum(x, dims, true), "sum keepdim" + what);
    expect_close(nn::max(xc, dims), nn::max(x, dims), "max" + what, 0, 0);
  }
  for (int64_t d = 0; d < 3; ++d) {
    auto [v, i] = nn::max_with_indices(xc, d);
    auto [v_cpu, i_cpu] = nn::max_with_indices(x, d);
    expect_close(v, v_cpu, "max_with_indices dim " + std::to_string(d), 0, 0);
    expect_equal_indices(i, i_cpu, "indices dim " + std::to_string(d));
  }
  // Through a transposed (non-contiguous) input.
  expect_close(nn::sum(xc.transpose(0, 2), {1}), nn::sum(x.transpose(0, 2), {1}), "sum of transposed");
}

TEST(CudaOps, MaxTiesAndNaNFollowCpu) {
  REQUIRE_CUDA();
  nn::Generator gen(33);
  // Rounded values: many ties, so the first maximum must win; NaN rows: the first NaN wins.
  for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{64, 5}, {64, 300}, {3, 20000}, {1, 3}}) {
    std::vector<float> v = nn::randn({rows, cols}, gen).to_vector<float>();
    for (float& e : v) e = std::round(e * 1.5f);
    for (int64_t r = 0; r < rows; r += 3) {
      v[r * cols + (r * 7919) % cols] = std::numeric_limits<float>::quiet_NaN();
      if (r % 2 == 0) v[r * cols + cols - 1] = std::numeric_limits<float>::quiet_NaN();
    }
    if (rows > 1) v[1 * cols + 0] = -0.0f;  // -0 and 0 compare equal: the first stays
    Tensor x = nn::from_vector(v, {rows, cols});
    auto [val, idx] = nn::max_with_indices(on_cuda(x), 1);
    auto [val_cpu, idx_cpu] = nn::max_with_indices(x, 1);
    const std::string what = " (" + std::to_string(rows) + ", " + std::to_string(cols) + ")";
    expect_close(val, val_cpu, "tied max" + what, 0, 0);
    expect_equal_indices(idx, idx_cpu, "tied argmax" + what);
  }
}

TEST(CudaOps, MaxReductionGradientMatchesCpu) {
  REQUIRE_CUDA();
  nn::Generator gen(34);
  Tensor x = nn::randn({13, 17, 5}, gen), w = nn::randn({13, 5}, gen);
  auto run = [&](nn::Device d) {
    Tensor xl = leaf(x, d);
    nn::sum(nn::mul(nn::max(xl, {1}), w.to(d))).backward();
    return xl.grad();
  };
  expect_close(run(cuda_device()), run(kCpu), "max backward", 0, 0);
}

// ---- softmax ----

TEST(CudaOps, SoftmaxAndLogSoftmaxRowsMatchCpu) {
  REQUIRE_CUDA();
  nn::Generator gen(41);
  for (int64_t cols : {1, 3, 1000, 1025, 100000}) {
    const int64_t rows = cols >= 100000 ? 3 : 37;
    Tensor x = nn::mul(nn::randn({rows, cols}, gen), 4.0);
    Tensor w = nn::randn({rows, cols}, gen);
    for (bool log : {false, true}) {
      const std::string what = std::string(log ? "log_softmax" : "softmax") + " cols=" + std::to_string(cols);
      auto run = [&](nn::Device d) {
        Tensor xl = leaf(x, d);
        Tensor y = log ? nn::log_softmax(xl, 1) : nn::softmax(xl, 1);
        nn::sum(nn::mul(y, w.to(d))).backward();
        return std::make_pair(y, xl.grad());
      };
      auto [y_cpu, g_cpu] = run(kCpu);
      auto [y, g] = run(cuda_device());
      expect_close(y, y_cpu, what);
      expect_close(g, g_cpu, what + " grad");
    }
  }
}

TEST(CudaOps, SoftmaxOtherDimsExtremesAndF64MatchCpu) {
  REQUIRE_CUDA();
  nn::Generator gen(42);
  Tensor x = nn::randn({5, 7, 3}, gen);
  for (int64_t d = 0; d < 3; ++d) {
    expect_close(nn::softmax(on_cuda(x), d), nn::softmax(x, d), "softmax dim " + std::to_string(d));
    expect_close(nn::log_softmax(on_cuda(x), d), nn::log_softmax(x, d), "log_softmax dim " + std::to_string(d));
  }
  // Large logits: max-subtraction keeps everything finite.
  Tensor big = nn::from_vector<float>({1000, -1000, 999, 0, 88, 89, 90, -90}, {2, 4});
  expect_close(nn::softmax(on_cuda(big), 1), nn::softmax(big, 1), "softmax of large logits");
  expect_close(nn::log_softmax(on_cuda(big), 1), nn::log_softmax(big, 1), "log_softmax of large logits");
  Tensor x64 = nn::randn({9, 2000}, gen, nn::f64);
  expect_close(nn::softmax(on_cuda(x64), 1), nn::softmax(x64, 1), "softmax f64", 1e-14, 1e-10);
  expect_close(nn::log_softmax(on_cuda(x64), 1), nn::log_softmax(x64, 1), "log_softmax f64", 1e-12, 1e-10);
}

// ---- pooling ----

TEST(CudaOps, MaxPoolTiesAndNaNFollowCpu) {
  REQUIRE_CUDA();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor x = nn::from_vector<float>({1, 1, 2, 0, 1, 1, 0, 2, nan, 3, 5, 5, 4, nan, 5, 5, 7, 7, 7, 7}, {1, 1, 5, 4});
  nn::Pool2dOptions o;
  for (bool ceil : {false, true}) {
    o.ceil_mode = ceil;
    auto [y, idx] = nn::max_pool2d_with_indices(on_cuda(x), o);
    auto [y_cpu, idx_cpu] = nn::max_pool2d_with_indices(x, o);
    const std::vector<int64_t> indices = idx.cpu().to_vector<int64_t>();
    ASSERT_GE(indices.size(), 4u);
    EXPECT_EQ(indices[0], 0) << "ceil " << ceil;
    EXPECT_EQ(indices[1], 2) << "ceil " << ceil;
    EXPECT_EQ(indices[2], 13) << "ceil " << ceil;  // the last NaN of the window
    EXPECT_TRUE(std::isnan(y.cpu().to_vector<float>()[2]));
    EXPECT_EQ(indices[3], 10) << "ceil " << ceil;
    expect_equal_indices(idx, idx_cpu, std::string("argmax ceil ") + (ceil ? "on" : "off"));
    expect_close(y, y_cpu, std::string("values ceil ") + (ceil ? "on" : "off"), 0, 0);
  }
}

TEST(CudaOps, MaxPoolForwardBackwardMatchCpu) {
  REQUIRE_CUDA();
  nn::Generator gen(51);
  Tensor x = nn::randn({2, 3, 11, 13}, gen);
  struct Config {
    std::array<int64_t, 2> kernel, stride, padding;
    bool ceil;
  };
  for (const Config& c : std::vector<Config>{{{2, 2}, {2, 2}, {0, 0}, false},
                                             {{3, 3}, {2, 2}, {1, 1}, false},
                                             {{3, 3}, {2, 2}, {1, 1}, true},
                                             {{3, 2}, {1, 1}, {1, 0}, false},  // overlapping windows
                                             {{2, 3}, {3, 2}, {0, 1}, true}}) {
    nn::Pool2dOptions o;
    o.kernel = c.kernel;
    o.stride = c.stride;
    o.padding = c.padding;
    o.ceil_mode = c.ceil;
    const std::string what = "max_pool k" + std::to_string(c.kernel[0]) + "x" + std::to_string(c.kernel[1]) + " s" +
                             std::to_string(c.stride[0]) + " p" + std::to_string(c.padding[0]) +
                             (c.ceil ? " ceil" : "");
    auto run = [&](nn::Device d) {
      Tensor xl = leaf(x, d);
      auto [y, idx] = nn::max_pool2d_with_indices(xl, o);
      Tensor w = nn::arange(y.numel()).reshape(y.shape()).to(d);
      nn::sum(nn::mul(y, w)).backward();
      return std::make_tuple(y, idx, xl.grad());
    };
    auto [y_cpu, idx_cpu, g_cpu] = run(kCpu);
    auto [y, idx, g] = run(cuda_device());
    expect_close(y, y_cpu, what, 0, 0);
    expect_equal_indices(idx, idx_cpu, what + " argmax");
    expect_close(g, g_cpu, what + " grad");
  }
}

TEST(CudaOps, AvgPoolPaddingAndCeilModeMatchCpu) {
  REQUIRE_CUDA();
  nn::Generator gen(52);
  Tensor x = nn::randn({2, 3, 11, 13}, gen);
  Tensor x64 = nn::randn({1, 2, 6, 6}, gen, nn::f64);
  for (bool ceil : {false, true}) {
    for (bool include_pad : {true, false}) {
      for (auto [k, s, p] : std::vector<std::tuple<std::array<int64_t, 2>, std::array<int64_t, 2>, std::array<int64_t, 2>>>{
               {{3, 3}, {2, 2}, {1, 1}}, {{2, 3}, {1, 2}, {1, 1}}, {{4, 4}, {3, 3}, {2, 1}}}) {
        nn::Pool2dOptions o;
        o.kernel = k;
        o.stride = s;
        o.padding = p;
        o.ceil_mode = ceil;
        o.count_include_pad = include_pad;
        const std::string what = "avg_pool k" + std::to_string(k[0]) + "x" + std::to_string(k[1]) +
                                 (ceil ? " ceil" : " floor") + (include_pad ? " include_pad" : " exclude_pad");
        auto run = [&](const Tensor& in, nn::Device d) {
          Tensor xl = leaf(in, d);
          Tensor y = nn::avg_pool2d(xl, o);
          Tensor w = nn::arange(y.numel()).reshape(y.shape()).to(in.dtype()).to(d);
          nn::sum(nn::mul(y, w)).backward();
          return std::make_pair(y, xl.grad());
        };
        auto [y_cpu, g_cpu] = run(x, kCpu);
        auto [y, g] = run(x, cuda_device());
        expect_close(y, y_cpu, what);
        expect_close(g, g_cpu, what + " grad");
        auto [y64_cpu, g64_cpu] = run(x64, kCpu);
        auto [y64, g64] = run(x64, cuda_device());
        expect_close(y64, y64_cpu, what + " f64", 1e-12, 1e-10);
        expect_close(g64, g64_cpu, what + " f64 grad", 1e-12, 1e-10);
      }
    }
  }
}

TEST(CudaOps, AdaptiveAvgPoolMatchesCpu) {
  REQUIRE_CUDA();
  nn::Generator gen(53);
  for (auto [in_shape, out_size] : std::vector<std::pair<nn::Shape, std::array<int64_t, 2>>>{
           {{2, 3, 11, 13}, {3, 4}}, {{2, 3, 11, 13}, {1, 1}}, {{1, 2, 5, 6}, {7, 9}}, {{2, 1, 7, 7}, {7, 7}}}) {
    Tensor x = nn::randn(in_shape, gen);
    const std::string what = "adaptive to " + std::to_string(out_size[0]) + "x" + std::to_string(out_size[1]);
    auto run = [&](nn::Device d) {
      Tensor xl = leaf(x, d);
      Tensor y = nn::adaptive_avg_pool2d(xl, out_size);
      Tensor w = nn::arange(y.numel()).reshape(y.shape()).to(d);
      nn::sum(nn::mul(y, w)).backward();
      return std::make_pair(y, xl.grad());
    };
    auto [y_cpu, g_cpu] = run(kCpu);
    auto [y, g] = run(cuda_device());
    expect_close(y, y_cpu, what);
    expect_close(g, g_cpu, what + " grad");
  }
}

// ---- losses ----

TEST(CudaLoss, BceWithLogitsWeightsMatchCpu) {
  REQUIRE_CUDA();
  nn::Generator gen(61);
  Tensor x = nn::mul(nn::randn({6, 5}, gen), 4.0);
  Tensor t = nn::rand({6, 5}, gen);
  Tensor weight = nn::rand({6, 1}, gen);
  Tensor pos_weight = nn::add(nn::rand({5}, gen), 0.5);
  for (int variant = 0; variant < 4; ++variant) {
    for (nn::Reduction reduction : {nn::Reduction::mean, nn::Reduction::none}) {
      const std::string what = "bce variant " + std::to_string(variant) +
                               (reduction == nn::Reduction::mean ? " mean" : " none");
      auto run = [&](nn::Device d) {
        nn::BceWithLogitsOptions o;
        if (variant & 1) o.weight = weight.to(d);
        if (variant & 2) o.pos_weight = pos_weight.to(d);
        o.reduction = reduction;
        Tensor xl = leaf(x, d);
        Tensor loss = nn::binary_cross_entropy_with_logits(xl, t.to(d), o);
        Tensor scalar = reduction == nn::Reduction::none ? nn::sum(nn::mul(loss, nn::add(x, 0.25).to(d))) : loss;
        scalar.backward();
        return std::make_pair(loss, xl.grad());
      };
      auto [l_cpu, g_cpu] = run(kCpu);
      auto [l, g] = run(cuda_device());
      expect_close(l, l_cpu, what);
      expect_close(g, g_cpu, what + " grad");
    }
  }
}

TEST(CudaLoss, CrossEntropyClassWeightsAndIgnoreIndexMatchCpu) {
  REQUIRE_CUDA();
  nn::Generator gen(62);
  Tensor logits = nn::mul(nn::randn({9, 5}, gen), 3.0);
  Tensor target = nn::from_vector<int64_t>({0, 4, -100, 2, 2, 1, -100, 3, 0}, {9});
  Tensor target2 = nn::from_vector<int64_t>({0, 4, 1, 2, 2, 1, 3, 3, 0}, {9});
  Tensor weight = nn::add(nn::rand({5}, gen), 0.2);
  struct Variant {
    const char* name;
    bool weighted;
    nn::Reduction reduction;
    int64_t ignore_index;
    const Tensor* target;
  };
  for (const Variant& v : std::vector<Variant>{{"mean", false, nn::Reduction::mean, -100, &target},
                                               {"weighted mean", true, nn::Reduction::mean, -100, &target},
                                               {"weighted sum", true, nn::Reduction::sum, -100, &target},
                                               {"weighted none", true, nn::Reduction::none, -100, &target},
                                               {"ignore class 2", true, nn::Reduction::mean, 2, &target2}}) {
    auto run = [&](nn::Device d) {
      nn::CrossEntropyOptions o;
      if (v.weighted) o.weight = weight.to(d);
      o.reduction = v.reduction;
      o.ignore_index = v.ignore_index;
      Tensor xl = leaf(logits, d);
      Tensor loss = nn::cross_entropy(xl, v.target->to(d), o);
      Tensor scalar = v.reduction == nn::Reduction::none ? nn::sum(nn::mul(loss, nn::arange(9).to(d))) : loss;
      scalar.backward();
      return std::make_pair(loss, xl.grad());
    };
    auto [l_cpu, g_cpu] = run(kCpu);
    auto [l, g] = run(cuda_device());
    expect_close(l, l_cpu, std::string("cross_entropy ") + v.name);
    expect_close(g, g_cpu, std::string("cross_entropy grad ") + v.name);
  }
}

// ---- random ----

TEST(CudaRandom, UniformNormalAndDropoutEqualCpuDraws) {
  REQUIRE_CUDA();
  for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{1001}, (int64_t{1} << 20) + 3}) {
    const std::string what = " n=" + std::to_string(n);
    nn::Generator gc(1234), gg(1234);
    for (int draw = 0; draw < 2; ++draw) {  // the second draw checks that both advance alike
      Tensor u_cpu = nn::uniform({n}, -2.0, 3.0, gc);
      Tensor u = nn::uniform({n}, -2.0, 3.0, gg, nn::f32, cuda_device());
      EXPECT_EQ(u.cpu().to_vector<float>(), u_cpu.to_vector<float>()) << "uniform f32" << what;
      Tensor u64_cpu = nn::uniform({n}, -1.0, 1.0, gc, nn::f64);
      Tensor u64 = nn::uniform({n}, -1.0, 1.0, gg, nn::f64, cuda_device());
      expect_close(u64, u64_cpu, "uniform f64" + what, 1e-15, 1e-14);  // an FMA may differ in the last bit
      // Normal: the device's double log/sin/cos may differ from libm in the last bits.
      Tensor z_cpu = nn::normal({n}, 0.5, 2.0, gc);
      Tensor z = nn::normal({n}, 0.5, 2.0, gg, nn::f32, cuda_device());
      expect_close(z, z_cpu, "normal f32" + what, 1e-6, 1e-6);
      Tensor z64_cpu = nn::randn({n}, gc, nn::f64);
      Tensor z64 = nn::randn({n}, gg, nn::f64, cuda_device());
      expect_close(z64, z64_cpu, "normal f64" + what, 1e-13, 1e-12);
      for (double p : {0.1, 0.5}) {
        Tensor ones_cpu = nn::ones({n});
        Tensor d_cpu = nn::dropout(ones_cpu, p, true, gc);
        Tensor d = nn::dropout(on_cuda(ones_cpu), p, true, gg);
        EXPECT_EQ(d.cpu().to_vector<float>(), d_cpu.to_vector<float>()) << "dropout p=" << p << what;
        Tensor ones64 = nn::ones({n}, nn::f64);
        Tensor d64_cpu = nn::dropout(ones64, p, true, gc);
        Tensor d64 = nn::dropout(on_cuda(ones64), p, true, gg);
        EXPECT_EQ(d64.cpu().to_vector<double>(), d64_cpu.to_vector<double>()) << "dropout f64 p=" << p << what;
      }
      EXPECT_EQ(gc.offset(), gg.offset());
    }
  }
}

TEST(CudaRandom, UniformStaysBelowHigh) {
  REQUIRE_CUDA();
  nn::Generator gen(7);
  // A range so narrow that low + span*u rounds onto high in f32 unless clamped.
  Tensor u = nn::uniform({100000}, 1.0, 1.0000001, gen, nn::f32, cuda_device());
  for (float v : u.cpu().to_vector<float>()) {
    ASSERT_GE(v, 1.0f);
    ASSERT_LT(v, 1.0000001f);
  }
}

// ---- optimizers ----

// Runs `steps` updates of two parameters (f32 or f64) on `device` with the same gradients, and
// returns the final parameters on the CPU.
template <typename MakeOptimizer>
std::vector<Tensor> run_optimizer(nn::Device device, nn::DType dtype, const MakeOptimizer& make, int steps) {
  nn::Generator gen(71);
  std::vector<Tensor> params = {leaf(nn::randn({1003}, gen, dtype), device),
                                leaf(nn::randn({17, 5}, gen, dtype), device)};
  auto opt = make(params);
  for (int s = 0; s < steps; ++s) {
    for (Tensor& p : params) p.set_grad(nn::randn(p.shape(), gen, dtype).to(device));
    opt->step();
  }
  std::vector<Tensor> out;
  for (Tensor& p : params) out.push_back(p.detach());
  return out;
}

template <typename MakeOptimizer>
void expect_same_steps(const MakeOptimizer& make, const std::string& what) {
  for (nn::DType dtype : {nn::f32, nn::f64}) {
    std::vector<Tensor> cpu = run_optimizer(kCpu, dtype, make, 4);
    std::vector<Tensor> gpu = run_optimizer(cuda_device(), dtype, make, 4);
    for (size_t i = 0; i < cpu.size(); ++i)
      expect_close(gpu[i], cpu[i], what + (dtype == nn::f32 ? " f32" : " f64") + " param " + std::to_string(i));
  }
}

TEST(CudaOptim, SgdStepsMatchCpu) {
  REQUIRE_CUDA();
  struct Config {
    const char* name;
    nn::optim::SgdOptions o;
  };
  std::vector<Config> configs(4);
  configs[0].name = "plain";
  configs[1].name = "momentum + dampening";
  configs[1].o.momentum = 0.9;
  configs[1].o.dampening = 0.1;
  configs[2].name = "nesterov + weight decay";
  configs[2].o.momentum = 0.8;
  configs[2].o.nesterov = true;
  configs[2].o.weight_decay = 0.01;
  configs[3].name = "weight decay, no momentum";
  configs[3].o.weight_decay = 0.05;
  for (const Config& c : configs) {
    expect_same_steps(
        [&](const std::vector<Tensor>& params) {
          return std::make_unique<nn::optim::SGD>(params, 0.1, c.o);
        },
        std::string("SGD ") + c.name);
  }
}

TEST(CudaOptim, AdamAndAdamWStepsMatchCpu) {
  REQUIRE_CUDA();
  nn::optim::AdamOptions l2;
  l2.weight_decay = 0.02;
  expect_same_steps([](const std::vector<Tensor>& params) { return std::make_unique<nn::optim::Adam>(params, 0.01); },
                    "Adam");
  expect_same_steps(
      [&](const std::vector<Tensor>& params) { return std::make_unique<nn::optim::Adam>(params, 0.01, l2); },
      "Adam L2");
  expect_same_steps(
      [](const std::vector<Tensor>& params) { return std::make_unique<nn::optim::AdamW>(params, 0.01); }, "AdamW");
}

}  // namespace
