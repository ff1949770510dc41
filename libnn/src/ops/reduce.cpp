// Reductions over dimensions, forward and backward: sum, mean, max (and argmax). The reduced dims
// are moved last and made dense, so every backend needs only a row reduction kernel.
#include <algorithm>
#include <numeric>

#include "ops/op_util.h"

namespace nn {
namespace {

struct ReducePlan {
  std::vector<int64_t> reduced;  // sorted, unique
  std::vector<int64_t> kept;
  Shape out_shape;               // without keepdim
  Shape keep_shape;              // reduced dims as 1
  int64_t rows = 1, cols = 1;
};

ReducePlan plan_reduce(const Tensor& x, const std::vector<int64_t>& dims_in, const char* op) {
  ReducePlan p;
  const int64_t nd = x.dim();
  std::vector<bool> is_reduced(nd, dims_in.empty());
  for (int64_t d : dims_in) {
    int64_t w = detail::wrap_dim(d, nd, op);
    if (nd == 0) continue;
    NN_CHECK(!is_reduced[w], op, ": dimension ", d, " listed twice");
    is_reduced[w] = true;
  }
  for (int64_t i = 0; i < nd; ++i) {
    if (is_reduced[i]) {
      p.reduced.push_back(i);
      p.cols *= x.shape()[i];
      p.keep_shape.push_back(1);
    } else {
      p.kept.push_back(i);
      p.rows *= x.shape()[i];
      p.out_shape.push_back(x.shape()[i]);
      p.keep_shape.push_back(x.shape()[i]);
    }
  }
  return p;
}

// x rearranged as dense (rows, cols) with the reduced dims last (no autograd).
Tensor as_rows(const Tensor& x, const ReducePlan& p) {
  std::vector<int64_t> order = p.kept;
  order.insert(order.end(), p.reduced.begin(), p.reduced.end());
  NoGradGuard ng;
  return detail::dense(x.permute(order)).reshape({p.rows, p.cols});
}

}  // namespace

namespace detail {
Tensor sum_kernel(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  ReducePlan p = plan_reduce(x, dims, "sum");
  Tensor out = make_tensor({p.rows}, x.dtype(), x.device());
  if (p.rows > 0) {
    if (p.cols == 0) NN_DISPATCH(fill, x.device())(out, 0.0);
    else NN_DISPATCH(sum_rows, x.device())(as_rows(x, p), out);
  }
  return out.view(keepdim ? p.keep_shape : p.out_shape);
}
}  // namespace detail

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  detail::check_float(x, "sum");
  Tensor out = detail::sum_kernel(x, dims, keepdim);
  if (needs_grad({x})) {
    ReducePlan p = plan_reduce(x, dims, "sum");
    Shape in_shape = x.shape(), keep_shape = p.keep_shape;
    record_op("sum", out, {x}, [=](const Tensor& g) -> std::vector<Tensor> {
      return {g.reshape(keep_shape).expand(in_shape)};
    });
  }
  return out;
}

Tensor sum(const Tensor& x) { return sum(x, {}, false); }

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  detail::check_float(x, "mean");
  ReducePlan p = plan_reduce(x, dims, "mean");
  NN_CHECK(p.cols > 0, "mean: reducing over zero elements of a tensor of shape ", shape_str(x.shape()));
  return div(sum(x, dims, keepdim), static_cast<double>(p.cols));
}

Tensor mean(const Tensor& x) { return mean(x, {}, false); }

namespace {

// Max over the plan's dims: values (keepdim shape per flag) and the index of each max within its
// flattened reduced block.
std::pair<Tensor, Tensor> max_impl(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, const char* op) {
  detail::check_float(x, op);
  ReducePlan p = plan_reduce(x, dims, op);
  NN_CHECK(p.cols > 0, op, ": reducing over zero elements of a tensor of shape ", shape_str(x.shape()));
  Tensor rows = as_rows(x, p);
  Tensor values = detail::make_tensor({p.rows}, x.dtype(), x.device());
  Tensor indices = detail::make_tensor({p.rows}, DType::i64, x.device());
  if (p.rows > 0) NN_DISPATCH(max_rows, x.device())(rows, values, indices);
  const Shape& shape = keepdim ? p.keep_shape : p.out_shape;
  values = values.view(shape);
  indices = indices.view(shape);
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    std::vector<int64_t> order = p.kept;
    order.insert(order.end(), p.reduced.begin(), p.reduced.end());
    Shape permuted_shape;
    for (int64_t d : order) permuted_shape.push_back(in_shape[d]);
    std::vector<int64_t> inverse(order.size());
    for (size_t i = 0; i < order.size(); ++i) inverse[order[i]] = static_cast<int64_t>(i);
    const int64_t nrows = p.rows, ncols = p.cols;
    SavedTensor saved_indices(indices);  // returned to the caller too: guard against in-place writes
    const std::string op_name = op;
    record_op(op, values, {x}, [=](const Tensor& g) -> std::vector<Tensor> {
      // Scatter each gradient to its max: the max-pool scatter over planes of one row each.
      Tensor dx = detail::make_tensor({1, nrows, 1, ncols}, g.dtype(), g.device());
      Tensor gd = detail::dense(g).view({1, nrows, 1, 1});
      Tensor id = saved_indices.get(op_name).contiguous().view({1, nrows, 1, 1});
      NN_DISPATCH(max_pool2d_backward, g.device())(gd, id, dx);
      return {dx.view(permuted_shape).permute(inverse).contiguous()};
    });
  }
  return {values, indices};
}

}  // namespace

Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return max_impl(x, dims, keepdim, "max").first;
}

Tensor max(const Tensor& x) { return max(x, {}, false); }

std::pair<Tensor, Tensor> max_with_indices(const Tensor& x, int64_t dim, bool keepdim) {
  return max_impl(x, {dim}, keepdim, "max");
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  NoGradGuard ng;
  return max_impl(x, {dim}, keepdim, "argmax").second;
}

}  // namespace nn
