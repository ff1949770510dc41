// Runs the op table (op_harness.h): forward vs float64 reference, float64 gradcheck, CUDA vs CPU.
#include "op_harness.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace nn::test {

namespace {
struct Family {
  const char* name;
  CaseList (*make)();
};
std::vector<Family>& families() {
  static std::vector<Family> f;
  return f;
}
}  // namespace

int register_cases(const char* family, CaseList (*make)()) {
  families().push_back({family, make});
  return 0;
}

const std::vector<OpCase>& all_cases() {
  static std::vector<OpCase> cases = [] {
    std::vector<OpCase> out;
    for (const Family& f : families())
      for (OpCase& c : f.make()) {
        c.name = std::string(f.name) + "_" + c.name;
        out.push_back(std::move(c));
      }
    return out;
  }();
  return cases;
}

double broadcast_at(const Ref& a, const Shape& out_shape, int64_t i) {
  const int64_t nd = static_cast<int64_t>(out_shape.size());
  int64_t off = 0, stride = 1;
  for (int64_t d = nd - 1; d >= 0; --d) {
    int64_t idx = i % out_shape[d];
    i /= out_shape[d];
    int64_t ad = d - (nd - a.dim());
    if (ad < 0) continue;
    if (a.shape[ad] != 1) off += idx * stride;
    stride *= a.shape[ad];
  }
  return a.v[static_cast<size_t>(off)];
}

Ref ref_binary(const Ref& a, const Ref& b, const std::function<double(double, double)>& f) {
  Ref out(broadcast_shapes(a.shape, b.shape));
  for (int64_t i = 0; i < out.numel(); ++i) out.v[i] = f(broadcast_at(a, out.shape, i), broadcast_at(b, out.shape, i));
  return out;
}

Ref ref_unary(const Ref& a, const std::function<double(double)>& f) {
  Ref out(a.shape);
  for (int64_t i = 0; i < a.numel(); ++i) out.v[i] = f(a.v[i]);
  return out;
}

namespace {

Ref make_values(const Input& in, std::mt19937_64& rng) {
  Ref r(in.shape);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  switch (in.fill) {
    case Fill::normal:
      for (double& x : r.v) x = normal(rng);
      break;
    case Fill::uniform:
      for (double& x : r.v) x = 2 * unit(rng) - 1;
      break;
    case Fill::positive:
      for (double& x : r.v) x = 0.5 + 1.5 * unit(rng);
      break;
    case Fill::probability:
      for (double& x : r.v) x = 0.05 + 0.9 * unit(rng);
      break;
    case Fill::distinct: {
      std::vector<int64_t> perm(r.v.size());
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      const double n = static_cast<double>(perm.size());
      for (size_t i = 0; i < perm.size(); ++i) {
        // Jitter keeps two distinct-filled inputs from sharing values (ties break gradients).
        double x = (static_cast<double>(perm[i]) - n / 2.0) * 0.05 + 0.02 * unit(rng);
        r.v[i] = x >= 0 ? x + 0.005 : x - 0.005;  // stays clear of 0 (relu's kink)
      }
      break;
    }
    case Fill::labels: {
      std::uniform_int_distribution<int64_t> lab(0, std::max<int64_t>(in.classes, 1) - 1);
      for (double& x : r.v) x = static_cast<double>(lab(rng));
      break;
    }
  }
  return r;
}

Tensor make_tensor_from(const Input& in, const Ref& values, DType dtype, Device device) {
  if (in.fill == Fill::labels) {
    std::vector<int64_t> v(values.v.begin(), values.v.end());
    return from_vector(v, in.shape, device);
  }
  Tensor dense = from_vector(values.v, in.shape).to(dtype).to(device);
  NoGradGuard ng;
  switch (in.layout) {
    case Layout::dense:
      return dense;
    case Layout::transposed: {
      if (dense.dim() < 2) return dense;
      Tensor t = dense.transpose(-1, -2).contiguous().transpose(-1, -2);
      EXPECT_FALSE(t.is_contiguous() && dense.size(-1) > 1 && dense.size(-2) > 1);
      return t;
    }
    case Layout::strided: {
      if (dense.dim() < 1) return dense;
      Shape big_shape = in.shape;
      big_shape.back() *= 2;
      Tensor big = full(big_shape, 123.0, dtype, device);  // garbage between the elements
      Tensor view = big.slice(-1, 0, big_shape.back(), 2);
      view.copy_(dense);
      return view;
    }
  }
  return dense;
}

struct Prepared {
  std::vector<Ref> values;
};

Prepared prepare(const OpCase& c) {
  std::seed_seq seq(c.name.begin(), c.name.end());
  std::mt19937_64 rng(seq);
  Prepared p;
  for (const Input& in : c.inputs) p.values.push_back(make_values(in, rng));
  return p;
}

std::vector<Tensor> make_inputs(const OpCase& c, const Prepared& p, DType dtype, Device device, bool grad) {
  std::vector<Tensor> t;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    Tensor x = make_tensor_from(c.inputs[i], p.values[i], dtype, device);
    if (grad && c.inputs[i].differentiable && c.inputs[i].fill != Fill::labels) x.requires_grad_();
    t.push_back(x);
  }
  return t;
}

// A fixed random projection of the output, so the scalar loss weighs every element differently.
Tensor projection(const Shape& shape, DType dtype, Device device) {
  Generator gen(77);
  return uniform(shape, 0.5, 1.5, gen, dtype).to(device);
}

class OpTable : public ::testing::TestWithParam<size_t> {};

TEST_P(OpTable, ForwardMatchesFloat64Reference) {
  const OpCase& c = all_cases()[GetParam()];
  Prepared p = prepare(c);
  Ref expected = c.reference(p.values);
  Tensor y = c.run(make_inputs(c, p, DType::f32, Device::cpu(), false));
  ASSERT_EQ(y.shape(), expected.shape) << c.name;
  std::vector<double> got = y.to_vector<double>();
  bool any_nonzero = false;
  int reported = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double e = expected.v[i];
    any_nonzero |= e != 0.0;
    if (!(std::abs(got[i] - e) <= c.atol + c.rtol * std::abs(e)) && reported++ < 5)
      ADD_FAILURE() << c.name << ": element " << i << " is " << got[i] << ", reference " << e;
  }
  EXPECT_TRUE(any_nonzero || got.empty()) << c.name << ": the reference is all zeros; the case proves nothing";
}

TEST_P(OpTable, GradientMatchesFiniteDifferences) {
  const OpCase& c = all_cases()[GetParam()];
  if (!c.gradcheck) GTEST_SKIP() << c.name << " is not differentiable";
  Prepared p = prepare(c);
  std::vector<Tensor> inputs = make_inputs(c, p, DType::f64, Device::cpu(), true);
  Tensor y = c.run(inputs);
  Tensor w = projection(y.shape(), DType::f64, Device::cpu());
  Tensor loss = sum(mul(y, w));
  loss.backward();
  auto eval = [&]() {
    NoGradGuard ng;
    return sum(mul(c.run(inputs), w)).item<double>();
  };
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor x = inputs[k];
    if (!x.requires_grad()) continue;
    ASSERT_TRUE(x.grad().defined()) << c.name << ": no gradient reached input " << k;
    ASSERT_EQ(x.grad().shape(), x.shape());
    std::vector<double> analytic = x.grad().to_vector<double>();
    const int64_t n = x.numel();
    const int64_t step = std::max<int64_t>(1, n / c.fd_max_elements);
    double max_abs = 0;
    for (double a : analytic) max_abs = std::max(max_abs, std::abs(a));
    EXPECT_GT(max_abs, 0.0) << c.name << ": gradient of input " << k << " is all zeros";
    int reported = 0;
    for (int64_t i = 0; i < n; i += step) {
      // Logical index i -> coordinates.
      std::vector<int64_t> idx(x.dim());
      int64_t rem = i;
      for (int64_t d = x.dim() - 1; d >= 0; --d) {
        idx[d] = rem % x.shape()[d];
        rem /= x.shape()[d];
      }
      double orig = x.at(idx);
      {
        NoGradGuard ng;
        x.set(idx, orig + c.fd_eps);
      }
      double up = eval();
      {
        NoGradGuard ng;
        x.set(idx, orig - c.fd_eps);
      }
      double down = eval();
      {
        NoGradGuard ng;
        x.set(idx, orig);
      }
      double numeric = (up - down) / (2 * c.fd_eps);
      double tol = 1e-6 + 1e-5 * std::max(std::abs(numeric), max_abs);
      if (!(std::abs(numeric - analytic[i]) <= tol) && reported++ < 5)
        ADD_FAILURE() << c.name << ": input " << k << " element " << i << ": analytic " << analytic[i]
                      << ", finite difference " << numeric;
    }
  }
}

double rms(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return v.empty() ? 0.0 : std::sqrt(s / static_cast<double>(v.size()));
}

TEST_P(OpTable, CudaMatchesCpu) {
  const OpCase& c = all_cases()[GetParam()];
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Prepared p = prepare(c);
  std::vector<Tensor> cpu_in = make_inputs(c, p, DType::f32, Device::cpu(), c.gradcheck);
  std::vector<Tensor> gpu_in = make_inputs(c, p, DType::f32, Device::cuda(), c.gradcheck);
  Tensor y_cpu = c.run(cpu_in);
  // Every kernel of the table has a CUDA version: a missing one is a failure, not a skip.
  Tensor y_gpu = c.run(gpu_in);
  ASSERT_EQ(y_gpu.device(), Device::cuda());
  std::vector<double> a = y_cpu.to_vector<double>(), b = y_gpu.to_vector<double>();
  // Relative to each element, or to the output's RMS for elements much smaller than it: long f32
  // dot products (convolutions) that cancel to a small value carry the rounding of their terms.
  const double scale = rms(a);
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], b[i], 1e-5 + 1e-4 * std::max(std::abs(a[i]), scale)) << c.name << " element " << i;
  if (!c.gradcheck) return;
  sum(mul(y_cpu, projection(y_cpu.shape(), DType::f32, Device::cpu()))).backward();
  sum(mul(y_gpu, projection(y_gpu.shape(), DType::f32, Device::cuda()))).backward();
  for (size_t k = 0; k < cpu_in.size(); ++k) {
    if (!cpu_in[k].requires_grad()) continue;
    std::vector<double> ga = cpu_in[k].grad().to_vector<double>(), gb = gpu_in[k].grad().to_vector<double>();
    const double gscale = rms(ga);
    for (size_t i = 0; i < ga.size(); ++i)
      ASSERT_NEAR(ga[i], gb[i], 1e-5 + 1e-4 * std::max(std::abs(ga[i]), gscale)) << c.name << " input " << k << " element " << i;
  }
}

std::string case_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string s = all_cases()[info.param].name;
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

std::vector<size_t> case_indices() {
  std::vector<size_t> idx(all_cases().size());
  std::iota(idx.begin(), idx.end(), 0);
  return idx;
}

INSTANTIATE_TEST_SUITE_P(Ops, OpTable, ::testing::ValuesIn(case_indices()), case_name);

}  // namespace
}  // namespace nn::test
