// The op test table. Every op family adds its cases with NN_OP_CASES; each case runs:
//  - forward (f32) against a naive float64 reference written with plain loops,
//  - a float64 finite-difference gradient check of every differentiable input,
//  - on CUDA (when a device is present) against the CPU result, forward and backward.
// Inputs come from a fixed seed per case, are non-zero, and may be non-contiguous or broadcast.
#pragma once

#include <nn/nn.h>

#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

namespace nn::test {

// A dense float64 array for references.
struct Ref {
  Shape shape;
  std::vector<double> v;

  Ref() = default;
  explicit Ref(Shape s, double fill = 0.0) : shape(std::move(s)), v(static_cast<size_t>(shape_numel(shape)), fill) {}
  int64_t numel() const { return static_cast<int64_t>(v.size()); }
  int64_t dim() const { return static_cast<int64_t>(shape.size()); }
  int64_t size(int64_t d) const { return shape[d < 0 ? d + dim() : d]; }
  int64_t index(std::initializer_list<int64_t> idx) const {
    int64_t off = 0, k = 0;
    for (int64_t i : idx) off = off * shape[k++] + i;
    return off;
  }
  double& operator()(std::initializer_list<int64_t> idx) { return v[static_cast<size_t>(index(idx))]; }
  double operator()(std::initializer_list<int64_t> idx) const { return v[static_cast<size_t>(index(idx))]; }
};

// Element i of `a` read at the broadcast position of `out_shape`'s element i.
double broadcast_at(const Ref& a, const Shape& out_shape, int64_t i);
// out[i] = f(a[i], b[i]) with numpy broadcasting.
Ref ref_binary(const Ref& a, const Ref& b, const std::function<double(double, double)>& f);
Ref ref_unary(const Ref& a, const std::function<double(double)>& f);

enum class Fill {
  normal,       // N(0, 1)
  uniform,      // U(-1, 1)
  positive,     // U(0.5, 2)
  probability,  // U(0.05, 0.95)
  distinct,     // a jittered shuffled grid, gaps >= 0.03: no ties, nothing within 0.005 of 0
  labels,       // integers in [0, classes) as i64; never differentiated
};

enum class Layout {
  dense,
  transposed,  // the last two dims swapped in memory
  strided,     // every other element of a larger buffer along the last dim
};

struct Input {
  Shape shape;
  Fill fill = Fill::normal;
  Layout layout = Layout::dense;
  int64_t classes = 0;        // for Fill::labels
  bool differentiable = true;  // gradcheck this input
};

struct OpCase {
  std::string name;
  std::vector<Input> inputs;
  std::function<Tensor(const std::vector<Tensor>&)> run;
  std::function<Ref(const std::vector<Ref>&)> reference;
  double rtol = 1e-4;  // f32 forward against the f64 reference
  double atol = 1e-5;
  bool gradcheck = true;
  // Finite differences: the step and how many elements per input to check (all when larger).
  double fd_eps = 1e-6;
  int64_t fd_max_elements = 48;
};

using CaseList = std::vector<OpCase>;
int register_cases(const char* family, CaseList (*make)());
const std::vector<OpCase>& all_cases();

}  // namespace nn::test

#define NN_OP_CASES(family)                                                         \
  static ::nn::test::CaseList nn_op_cases_##family();                               \
  static const int nn_op_cases_registered_##family =                                \
      ::nn::test::register_cases(#family, &nn_op_cases_##family);                   \
  static ::nn::test::CaseList nn_op_cases_##family()
