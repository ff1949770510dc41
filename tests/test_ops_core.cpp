// Op table cases: reductions, softmax, matmul/linear, shape ops, losses, dropout.
#include <cmath>
#include <limits>

#include "op_harness.h"

namespace nn::test {
namespace {

using V = std::vector<Tensor>;
using R = std::vector<Ref>;

// Reference reduction over `dims` (sorted) of a; op combines, init starts.
Ref ref_reduce(const Ref& a, std::vector<int64_t> dims, bool keepdim, double init,
               const std::function<double(double, double)>& op, bool average = false) {
  const int64_t nd = a.dim();
  if (dims.empty())
    for (int64_t i = 0; i < nd; ++i) dims.push_back(i);
  for (int64_t& d : dims)
    if (d < 0) d += nd;
  Shape keep = a.shape, out_shape;
  for (int64_t d : dims) keep[d] = 1;
  for (int64_t i = 0; i < nd; ++i)
    if (keepdim || keep[i] != 1 || a.shape[i] == 1) {
      bool reduced = std::find(dims.begin(), dims.end(), i) != dims.end();
      if (keepdim || !reduced) out_shape.push_back(keep[i]);
    }
  Ref out(keep, init);
  std::vector<int64_t> count(out.v.size(), 0);
  for (int64_t i = 0; i < a.numel(); ++i) {
    int64_t rem = i, off = 0, stride = 1;
    for (int64_t d = nd - 1; d >= 0; --d) {
      int64_t idx = rem % a.shape[d];
      rem /= a.shape[d];
      if (keep[d] != 1) off += idx * stride;
      stride *= keep[d];
    }
    out.v[off] = op(out.v[off], a.v[i]);
    count[off]++;
  }
  if (average)
    for (size_t i = 0; i < out.v.size(); ++i) out.v[i] /= count[i];
  out.shape = out_shape;
  return out;
}

double add2(double a, double b) { return a + b; }
double max2(double a, double b) { return std::max(a, b); }

Ref ref_softmax_last(const Ref& a, bool log) {
  Ref out(a.shape);
  const int64_t cols = a.shape.back(), rows = a.numel() / cols;
  for (int64_t r = 0; r < rows; ++r) {
    double m = -INFINITY, s = 0;
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, a.v[r * cols + c]);
    for (int64_t c = 0; c < cols; ++c) s += std::exp(a.v[r * cols + c] - m);
    for (int64_t c = 0; c < cols; ++c) {
      double lv = a.v[r * cols + c] - m - std::log(s);
      out.v[r * cols + c] = log ? lv : std::exp(lv);
    }
  }
  return out;
}

// (B..., M, K) x (B..., K, N) with broadcast batch dims, plain loops.
Ref ref_matmul(const Ref& a, const Ref& b) {
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  Shape ba(a.shape.begin(), a.shape.end() - 2), bb(b.shape.begin(), b.shape.end() - 2);
  Shape batch = broadcast_shapes(ba, bb);
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Ref out(out_shape);
  const int64_t nb = shape_numel(batch);
  Ref ia(ba), ib(bb);  // index helpers: map a batch index to each operand's batch offset
  for (int64_t t = 0; t < nb; ++t) {
    // batch offsets through broadcasting
    Ref pa(ba), pb(bb);
    for (int64_t i = 0; i < pa.numel(); ++i) pa.v[i] = static_cast<double>(i);
    for (int64_t i = 0; i < pb.numel(); ++i) pb.v[i] = static_cast<double>(i);
    int64_t oa = ba.empty() ? 0 : static_cast<int64_t>(broadcast_at(pa, batch, t));
    int64_t ob = bb.empty() ? 0 : static_cast<int64_t>(broadcast_at(pb, batch, t));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t q = 0; q < k; ++q) s += a.v[(oa * m + i) * k + q] * b.v[(ob * k + q) * n + j];
        out.v[(t * m + i) * n + j] = s;
      }
  }
  return out;
}

Ref ref_transpose_last(const Ref& a) {
  Shape s = a.shape;
  std::swap(s[s.size() - 1], s[s.size() - 2]);
  Ref out(s);
  const int64_t r = a.size(-2), c = a.size(-1), nb = a.numel() / (r * c);
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < c; ++j) out.v[(b * c + j) * r + i] = a.v[(b * r + i) * c + j];
  return out;
}

// log(1 + exp(-x)), written without overflow.
double softplus_neg(double x) { return std::log1p(std::exp(-std::abs(x))) + std::max(-x, 0.0); }

}  // namespace

NN_OP_CASES(reduce) {
  auto sum_case = [](const std::string& name, Input in, std::vector<int64_t> dims, bool keep) {
    return OpCase{name, {in}, [=](const V& x) { return sum(x[0], dims, keep); },
                  [=](const R& r) { return ref_reduce(r[0], dims, keep, 0.0, add2); }};
  };
  auto mean_case = [](const std::string& name, Input in, std::vector<int64_t> dims, bool keep) {
    return OpCase{name, {in}, [=](const V& x) { return mean(x[0], dims, keep); },
                  [=](const R& r) { return ref_reduce(r[0], dims, keep, 0.0, add2, true); }};
  };
  auto max_case = [](const std::string& name, Input in, std::vector<int64_t> dims, bool keep) {
    in.fill = Fill::distinct;
    return OpCase{name, {in}, [=](const V& x) { return max(x[0], dims, keep); },
                  [=](const R& r) { return ref_reduce(r[0], dims, keep, -INFINITY, max2); }};
  };
  return {
      sum_case("sum_all", Input{{3, 4, 5}}, {}, false),
      sum_case("sum_dim1", Input{{3, 4, 5}}, {1}, false),
      sum_case("sum_dims02_keepdim", Input{{3, 4, 5}, Fill::normal, Layout::transposed}, {0, 2}, true),
      sum_case("sum_last_strided", Input{{6, 7}, Fill::normal, Layout::strided}, {-1}, false),
      mean_case("mean_all", Input{{4, 6}}, {}, false),
      mean_case("mean_dim0_keepdim", Input{{4, 6}, Fill::normal, Layout::transposed}, {0}, true),
      max_case("max_all", Input{{3, 5}}, {}, false),
      max_case("max_dim1", Input{{3, 5, 2}}, {1}, false),
      max_case("max_dims12_keepdim", Input{{3, 5, 2}}, {1, 2}, true),
      max_case("max_dim0_transposed", Input{{4, 5}, Fill::distinct, Layout::transposed}, {0}, false),
  };
}

NN_OP_CASES(softmax) {
  auto sm = [](const std::string& name, Input in, int64_t dim, bool log) {
    return OpCase{name, {in},
                  [=](const V& x) { return log ? log_softmax(x[0], dim) : softmax(x[0], dim); },
                  [=](const R& r) {
                    // Move dim last, reference, move back.
                    Ref a = r[0];
                    const int64_t d = dim < 0 ? dim + a.dim() : dim;
                    if (d == a.dim() - 1) return ref_softmax_last(a, log);
                    Ref t = ref_transpose_last(a);  // only used with 2-D inputs and dim 0
                    (void)d;
                    return ref_transpose_last(ref_softmax_last(t, log));
                  }};
  };
  return {
      sm("softmax_last", Input{{4, 7}}, -1, false),
      sm("softmax_dim0", Input{{5, 3}}, 0, false),
      sm("log_softmax_last", Input{{4, 7}, Fill::normal, Layout::strided}, 1, true),
      sm("log_softmax_dim0_transposed", Input{{5, 3}, Fill::normal, Layout::transposed}, 0, true),
      sm("softmax_3d_last", Input{{2, 3, 6}}, 2, false),
  };
}

NN_OP_CASES(matmul) {
  auto mm = [](const std::string& name, Input a, Input b) {
    return OpCase{name, {a, b}, [](const V& x) { return matmul(x[0], x[1]); },
                  [](const R& r) { return ref_matmul(r[0], r[1]); }};
  };
  return {
      mm("2d", Input{{5, 7}}, Input{{7, 3}}),
      mm("2d_transposed_a", Input{{5, 7}, Fill::normal, Layout::transposed}, Input{{7, 3}}),
      mm("2d_transposed_b", Input{{5, 7}}, Input{{7, 3}, Fill::normal, Layout::transposed}),
      mm("2d_strided", Input{{4, 6}, Fill::normal, Layout::strided}, Input{{6, 5}}),
      mm("batched", Input{{3, 4, 5}}, Input{{3, 5, 2}}),
      mm("batched_broadcast_b", Input{{2, 3, 4, 5}}, Input{{5, 6}}),
      mm("batched_broadcast_both", Input{{2, 1, 4, 5}}, Input{{3, 5, 2}}),
      OpCase{"vector_matrix", {Input{{5}}, Input{{5, 3}}}, [](const V& x) { return matmul(x[0], x[1]); },
             [](const R& r) {
               Ref a = r[0];
               a.shape = {1, 5};
               Ref o = ref_matmul(a, r[1]);
               o.shape = {3};
               return o;
             }},
      OpCase{"linear_bias",
             {Input{{6, 5}}, Input{{4, 5}}, Input{{4}}},
             [](const V& x) { return linear(x[0], x[1], x[2]); },
             [](const R& r) {
               Ref y = ref_matmul(r[0], ref_transpose_last(r[1]));
               return ref_binary(y, r[2], [](double a, double b) { return a + b; });
             }},
      OpCase{"linear_3d_input_no_bias",
             {Input{{2, 3, 5}}, Input{{4, 5}, Fill::normal, Layout::transposed}},
             [](const V& x) { return linear(x[0], x[1]); },
             [](const R& r) { return ref_matmul(r[0], ref_transpose_last(r[1])); }},
  };
}

NN_OP_CASES(shape) {
  return {
      OpCase{"reshape_permute", {Input{{2, 3, 4}}},
             [](const V& x) { return mul(x[0].permute({2, 0, 1}).reshape({4, 6}), 2.0); },
             [](const R& r) {
               Ref o({4, 6});
               for (int64_t i = 0; i < 2; ++i)
                 for (int64_t j = 0; j < 3; ++j)
                   for (int64_t k = 0; k < 4; ++k) o.v[k * 6 + i * 3 + j] = 2 * r[0]({i, j, k});
               return o;
             }},
      OpCase{"narrow_slice_select", {Input{{5, 6}}},
             [](const V& x) { return concat({x[0].narrow(0, 1, 3).slice(1, 0, 6, 2), x[0].select(1, 5).narrow(0, 0, 3).unsqueeze(1)}, 1); },
             [](const R& r) {
               Ref o({3, 4});
               for (int64_t i = 0; i < 3; ++i) {
                 for (int64_t j = 0; j < 3; ++j) o.v[i * 4 + j] = r[0]({i + 1, 2 * j});
                 o.v[i * 4 + 3] = r[0]({i, 5});
               }
               return o;
             }},
      OpCase{"expand_flatten", {Input{{3, 1}}},
             [](const V& x) { return mul(x[0].expand({2, 3, 4}).flatten(), 1.0); },
             [](const R& r) {
               Ref o({24});
               for (int64_t i = 0; i < 24; ++i) o.v[i] = r[0].v[(i / 4) % 3];
               return o;
             }},
      OpCase{"concat_dim0", {Input{{2, 3}}, Input{{1, 3}, Fill::normal}, Input{{3, 3}, Fill::normal, Layout::transposed}},
             [](const V& x) { return concat({x[0], x[1], x[2]}, 0); },
             [](const R& r) {
               Ref o({6, 3});
               std::copy(r[0].v.begin(), r[0].v.end(), o.v.begin());
               std::copy(r[1].v.begin(), r[1].v.end(), o.v.begin() + 6);
               std::copy(r[2].v.begin(), r[2].v.end(), o.v.begin() + 9);
               return o;
             }},
      OpCase{"squeeze_transpose", {Input{{1, 4, 1, 3}}},
             [](const V& x) { return mul(x[0].squeeze().t(), 3.0); },
             [](const R& r) {
               Ref o({3, 4});
               for (int64_t i = 0; i < 4; ++i)
                 for (int64_t j = 0; j < 3; ++j) o.v[j * 4 + i] = 3 * r[0].v[i * 3 + j];
               return o;
             }},
  };
}

NN_OP_CASES(loss) {
  auto bce_ref = [](const Ref& x, const Ref& t, const Ref* w, const Ref* pw, Reduction red) {
    Ref l(x.shape);
    for (int64_t i = 0; i < x.numel(); ++i) {
      double lw = pw ? 1 + (broadcast_at(*pw, x.shape, i) - 1) * t.v[i] : 1.0;
      double v = (1 - t.v[i]) * x.v[i] + lw * softplus_neg(x.v[i]);
      l.v[i] = (w ? broadcast_at(*w, x.shape, i) : 1.0) * v;
    }
    if (red == Reduction::none) return l;
    Ref s({}, 0.0);
    for (double v : l.v) s.v[0] += v;
    if (red == Reduction::mean) s.v[0] /= static_cast<double>(l.numel());
    return s;
  };
  auto nll_ref = [](const Ref& logits, const Ref& target, const Ref* w, Reduction red, int64_t ignore) {
    Ref lsm = ref_softmax_last(logits, true);
    const int64_t n = logits.size(0), c = logits.size(1);
    Ref l({n});
    double wsum = 0;
    for (int64_t i = 0; i < n; ++i) {
      int64_t t = static_cast<int64_t>(target.v[i]);
      if (t == ignore) continue;
      double wt = w ? w->v[t] : 1.0;
      l.v[i] = -wt * lsm.v[i * c + t];
      wsum += wt;
    }
    if (red == Reduction::none) return l;
    Ref s({}, 0.0);
    for (double v : l.v) s.v[0] += v;
    if (red == Reduction::mean) s.v[0] /= wsum;
    return s;
  };
  BceWithLogitsOptions none_red;
  none_red.reduction = Reduction::none;
  return {
      OpCase{"bce_logits_mean", {Input{{8, 1}}, Input{{8, 1}, Fill::probability, Layout::dense, 0, false}},
             [](const V& x) { return binary_cross_entropy_with_logits(x[0], x[1]); },
             [=](const R& r) { return bce_ref(r[0], r[1], nullptr, nullptr, Reduction::mean); }},
      OpCase{"bce_logits_weight_pos_weight_sum",
             {Input{{6, 3}}, Input{{6, 3}, Fill::probability, Layout::dense, 0, false},
              Input{{6, 1}, Fill::positive, Layout::dense, 0, false}, Input{{3}, Fill::positive, Layout::dense, 0, false}},
             [](const V& x) {
               BceWithLogitsOptions o;
               o.weight = x[2];
               o.pos_weight = x[3];
               o.reduction = Reduction::sum;
               return binary_cross_entropy_with_logits(x[0], x[1], o);
             },
             [=](const R& r) { return bce_ref(r[0], r[1], &r[2], &r[3], Reduction::sum); }},
      OpCase{"bce_logits_none_transposed",
             {Input{{4, 5}, Fill::normal, Layout::transposed}, Input{{4, 5}, Fill::probability, Layout::dense, 0, false}},
             [=](const V& x) { return binary_cross_entropy_with_logits(x[0], x[1], none_red); },
             [=](const R& r) { return bce_ref(r[0], r[1], nullptr, nullptr, Reduction::none); }},
      OpCase{"cross_entropy_mean", {Input{{7, 4}}, Input{{7}, Fill::labels, Layout::dense, 4}},
             [](const V& x) { return cross_entropy(x[0], x[1]); },
             [=](const R& r) { return nll_ref(r[0], r[1], nullptr, Reduction::mean, -100); }},
      OpCase{"cross_entropy_class_weight",
             {Input{{7, 4}}, Input{{7}, Fill::labels, Layout::dense, 4}, Input{{4}, Fill::positive, Layout::dense, 0, false}},
             [](const V& x) {
               CrossEntropyOptions o;
               o.weight = x[2];
               return cross_entropy(x[0], x[1], o);
             },
             [=](const R& r) { return nll_ref(r[0], r[1], &r[2], Reduction::mean, -100); }},
      OpCase{"cross_entropy_none", {Input{{5, 3}, Fill::normal, Layout::transposed}, Input{{5}, Fill::labels, Layout::dense, 3}},
             [](const V& x) {
               CrossEntropyOptions o;
               o.reduction = Reduction::none;
               return cross_entropy(x[0], x[1], o);
             },
             [=](const R& r) { return nll_ref(r[0], r[1], nullptr, Reduction::none, -100); }},
      OpCase{"mse_mean", {Input{{4, 3}}, Input{{4, 3}, Fill::normal, Layout::strided}},
             [](const V& x) { return mse_loss(x[0], x[1]); },
             [](const R& r) {
               Ref s({}, 0.0);
               for (int64_t i = 0; i < r[0].numel(); ++i) s.v[0] += (r[0].v[i] - r[1].v[i]) * (r[0].v[i] - r[1].v[i]);
               s.v[0] /= static_cast<double>(r[0].numel());
               return s;
             }},
  };
}

NN_OP_CASES(dropout) {
  // The mask is the Philox stream's (see generator.h): element i keeps when the f32 uniform drawn
  // from word 2*(i%2) of block (i/2) is >= p. The gradient check runs in f64, whose mask comes
  // from the f64 uniforms of the same blocks: a fixed mask either way, so it checks the backward.
  const double p = 0.3;
  return {
      OpCase{"train_p03", {Input{{6, 5}}},
             [p](const V& x) {
               Generator gen(42);
               return dropout(x[0], p, true, gen);
             },
             [p](const R& r) {
               Ref o(r[0].shape);
               for (int64_t i = 0; i < o.numel(); ++i) {
                 uint32_t w[4];
                 philox4x32(42, static_cast<uint64_t>(i / 2), 0, w);
                 double u = (w[2 * (i % 2)] >> 8) * (1.0 / 16777216.0);
                 o.v[i] = u >= p ? r[0].v[i] / (1 - p) : 0.0;
               }
               return o;
             },
             1e-4, 1e-5},
  };
}

}  // namespace nn::test
