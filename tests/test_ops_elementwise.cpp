// Op table cases: broadcasting binary ops, scalar ops, unary ops and activations.
#include <cmath>

#include "op_harness.h"

namespace nn::test {
namespace {

using V = std::vector<Tensor>;
using R = std::vector<Ref>;

OpCase binary_case(const std::string& name, Input a, Input b, Tensor (*op)(const Tensor&, const Tensor&),
                   double (*f)(double, double)) {
  return {name, {a, b}, [op](const V& x) { return op(x[0], x[1]); },
          [f](const R& r) { return ref_binary(r[0], r[1], f); }};
}

OpCase unary_case(const std::string& name, Input a, std::function<Tensor(const Tensor&)> op,
                  std::function<double(double)> f) {
  return {name, {a}, [op](const V& x) { return op(x[0]); }, [f](const R& r) { return ref_unary(r[0], f); }};
}

double f_add(double a, double b) { return a + b; }
double f_sub(double a, double b) { return a - b; }
double f_mul(double a, double b) { return a * b; }
double f_div(double a, double b) { return a / b; }
double f_pow(double a, double b) { return std::pow(a, b); }
double f_max(double a, double b) { return a >= b ? a : b; }
double f_min(double a, double b) { return a <= b ? a : b; }

}  // namespace

NN_OP_CASES(elementwise) {
  const Input m{{3, 5}}, row{{5}}, col{{3, 1}};
  const Input t{{4, 3}, Fill::normal, Layout::transposed}, s{{3, 5}, Fill::normal, Layout::strided};
  const Input pos{{3, 5}, Fill::positive}, pos_col{{3, 1}, Fill::positive};
  return {
      binary_case("add_same_shape", m, m, add, f_add),
      binary_case("add_broadcast_row", m, row, add, f_add),
      binary_case("add_broadcast_both", Input{{4, 1, 5}}, Input{{3, 1}}, add, f_add),
      binary_case("add_transposed", t, Input{{4, 3}}, add, f_add),
      binary_case("sub_broadcast_col", m, col, sub, f_sub),
      binary_case("sub_strided", s, m, sub, f_sub),
      binary_case("mul_broadcast", Input{{2, 3, 4}}, Input{{3, 1}}, mul, f_mul),
      binary_case("mul_transposed_strided", t, Input{{4, 3}, Fill::normal, Layout::strided}, mul, f_mul),
      binary_case("div_broadcast", m, pos_col, div, f_div),
      binary_case("pow_tensor", pos, Input{{3, 5}, Fill::uniform}, pow, f_pow),
      binary_case("maximum", Input{{3, 5}, Fill::distinct}, Input{{3, 5}, Fill::distinct}, maximum, f_max),
      binary_case("minimum_broadcast", Input{{3, 5}, Fill::distinct}, Input{{5}, Fill::distinct}, minimum, f_min),
      unary_case("add_scalar", m, [](const Tensor& x) { return x + 1.5; }, [](double v) { return v + 1.5; }),
      unary_case("rsub_scalar", s, [](const Tensor& x) { return 2.0 - x; }, [](double v) { return 2.0 - v; }),
      unary_case("mul_scalar", t, [](const Tensor& x) { return x * -3.0; }, [](double v) { return v * -3.0; }),
      unary_case("div_scalar", m, [](const Tensor& x) { return x / 4.0; }, [](double v) { return v / 4.0; }),
      unary_case("rdiv_scalar", pos, [](const Tensor& x) { return 2.0 / x; }, [](double v) { return 2.0 / v; }),
      unary_case("pow_scalar", pos, [](const Tensor& x) { return pow(x, 2.5); }, [](double v) { return std::pow(v, 2.5); }),
      unary_case("square", m, [](const Tensor& x) { return pow(x, 2.0); }, [](double v) { return v * v; }),
      unary_case("neg", t, [](const Tensor& x) { return -x; }, [](double v) { return -v; }),
      unary_case("exp", m, [](const Tensor& x) { return exp(x); }, [](double v) { return std::exp(v); }),
      unary_case("log", pos, [](const Tensor& x) { return log(x); }, [](double v) { return std::log(v); }),
      unary_case("sqrt", Input{{3, 5}, Fill::positive, Layout::strided}, [](const Tensor& x) { return sqrt(x); },
                 [](double v) { return std::sqrt(v); }),
      unary_case("abs", Input{{4, 6}, Fill::distinct}, [](const Tensor& x) { return abs(x); },
                 [](double v) { return std::abs(v); }),
      unary_case("clamp", Input{{4, 6}, Fill::distinct}, [](const Tensor& x) { return clamp(x, -0.3, 0.4); },
                 [](double v) { return std::min(std::max(v, -0.3), 0.4); }),
      unary_case("relu", Input{{4, 6}, Fill::distinct, Layout::transposed}, [](const Tensor& x) { return relu(x); },
                 [](double v) { return v > 0 ? v : 0.0; }),
      unary_case("sigmoid", m, [](const Tensor& x) { return sigmoid(x); },
                 [](double v) { return 1.0 / (1.0 + std::exp(-v)); }),
      unary_case("tanh", s, [](const Tensor& x) { return tanh(x); }, [](double v) { return std::tanh(v); }),
  };
}

}  // namespace nn::test
