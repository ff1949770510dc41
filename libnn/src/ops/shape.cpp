// Views and shape ops, forward and backward: view/reshape, permute/transpose, narrow/slice/select,
// expand, squeeze/unsqueeze, flatten, concat. Views share storage and cost nothing; their
// gradients are the inverse rearrangement (or a sum, for expand; a scatter, for slices).
#include <algorithm>
#include <numeric>
#include <optional>

#include "ops/op_util.h"

namespace nn {
namespace {

using detail::make_view;
using detail::wrap_dim;

Shape infer_shape(const Shape& shape, int64_t numel, const Shape& from) {
  Shape out = shape;
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      NN_CHECK(infer < 0, "reshape: only one dimension can be -1 in ", shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      NN_CHECK(out[i] >= 0, "reshape: invalid size ", out[i], " in ", shape_str(shape));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    NN_CHECK(known != 0 && numel % known == 0, "reshape: cannot reshape ", shape_str(from), " (", numel,
             " elements) into ", shape_str(shape));
    out[infer] = numel / known;
  }
  NN_CHECK(shape_numel(out) == numel, "reshape: cannot reshape ", shape_str(from), " (", numel,
           " elements) into ", shape_str(shape));
  return out;
}

// Strides that let a tensor with (shape, strides) be viewed as new_shape without a copy.
std::optional<Shape> view_strides(const Shape& shape, const Shape& strides, const Shape& new_shape) {
  Shape out(new_shape.size(), 1);
  if (shape.empty()) return contiguous_strides(new_shape);
  int64_t numel = shape_numel(shape);
  if (numel == 0) return contiguous_strides(new_shape);
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

// Records `backward` for a view `out` of `in` when needed.
Tensor finish_view(Tensor out, const Tensor& in, const char* name,
                   std::function<Tensor(const Tensor&)> backward) {
  if (needs_grad({in})) record_op(name, out, {in}, [backward](const Tensor& g) -> std::vector<Tensor> {
    return {backward(g)};
  });
  return out;
}

// Gradient of a strided sub-view: zeros of the input's shape with g written into the view.
Tensor scatter_into_zeros(const Tensor& g, const Shape& in_shape,
                          const std::function<Tensor(const Tensor&)>& take_view) {
  Tensor z = zeros(in_shape, g.dtype(), g.device());
  Tensor v = take_view(z);
  NN_DISPATCH(copy, g.device())(g, v);
  return z;
}

}  // namespace

Tensor Tensor::view(const Shape& shape_in) const {
  Shape new_shape = infer_shape(shape_in, numel(), shape());
  auto st = view_strides(shape(), strides(), new_shape);
  NN_CHECK(st.has_value(), "view: cannot view a tensor of shape ", shape_str(shape()), " and strides ",
           shape_str(strides()), " as ", shape_str(new_shape), " without a copy; use reshape()");
  Shape in_shape = shape();
  return finish_view(make_view(*this, new_shape, *st, offset()), *this, "view",
                     [in_shape](const Tensor& g) { return g.reshape(in_shape); });
}

Tensor Tensor::reshape(const Shape& shape_in) const {
  Shape new_shape = infer_shape(shape_in, numel(), shape());
  if (view_strides(shape(), strides(), new_shape)) return view(new_shape);
  return contiguous().view(new_shape);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims_in) const {
  const int64_t nd = dim();
  NN_CHECK(static_cast<int64_t>(dims_in.size()) == nd, "permute: got ", dims_in.size(),
           " dims for a tensor with ", nd, " dimensions");
  std::vector<int64_t> dims(nd), inverse(nd, -1);
  Shape sh(nd), st(nd);
  for (int64_t i = 0; i < nd; ++i) {
    dims[i] = wrap_dim(dims_in[i], nd, "permute");
    NN_CHECK(inverse[dims[i]] < 0, "permute: dimension ", dims[i], " repeated");
    inverse[dims[i]] = i;
    sh[i] = shape()[dims[i]];
    st[i] = strides()[dims[i]];
  }
  return finish_view(make_view(*this, sh, st, offset()), *this, "permute",
                     [inverse](const Tensor& g) { return g.permute(inverse); });
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  const int64_t nd = dim();
  std::vector<int64_t> dims(nd);
  std::iota(dims.begin(), dims.end(), 0);
  if (nd == 0) return permute(dims);
  std::swap(dims[wrap_dim(d0, nd, "transpose")], dims[wrap_dim(d1, nd, "transpose")]);
  return permute(dims);
}

Tensor Tensor::t() const {
  NN_CHECK(dim() == 2, "t(): expects a 2-D tensor, got ", shape_str(shape()));
  return transpose(0, 1);
}

Tensor Tensor::slice(int64_t dim_in, int64_t start, int64_t end, int64_t step) const {
  const int64_t d = wrap_dim(dim_in, dim(), "slice");
  const int64_t n = shape()[d];
  NN_CHECK(step > 0, "slice: step must be positive, got ", step);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape sh = shape(), st = strides();
  sh[d] = (end - start + step - 1) / step;
  st[d] = strides()[d] * step;
  Shape in_shape = shape();
  return finish_view(make_view(*this, sh, st, offset() + start * strides()[d]), *this, "slice",
                     [=](const Tensor& g) {
                       return scatter_into_zeros(g, in_shape, [=](const Tensor& z) {
                         return z.slice(d, start, end, step);
                       });
                     });
}

Tensor Tensor::narrow(int64_t dim_in, int64_t start, int64_t length) const {
  const int64_t d = wrap_dim(dim_in, dim(), "narrow");
  const int64_t n = shape()[d];
  if (start < 0) start += n;
  NN_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: range [", start, ", ", start + length,
           ") out of bounds for dimension ", d, " of size ", n);
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t dim_in, int64_t index) const {
  const int64_t d = wrap_dim(dim_in, dim(), "select");
  const int64_t n = shape()[d];
  if (index < 0) index += n;
  NN_CHECK(index >= 0 && index < n, "select: index ", index, " out of range for dimension ", d, " of size ", n);
  Shape sh = shape(), st = strides();
  sh.erase(sh.begin() + d);
  st.erase(st.begin() + d);
  Shape in_shape = shape();
  return finish_view(make_view(*this, sh, st, offset() + index * strides()[d]), *this, "select",
                     [=](const Tensor& g) {
                       return scatter_into_zeros(g, in_shape, [=](const Tensor& z) {
                         return z.select(d, index);
                       });
                     });
}

Tensor Tensor::expand(const Shape& shape_in) const {
  const int64_t nd = static_cast<int64_t>(shape_in.size());
  NN_CHECK(nd >= dim(), "expand: cannot expand ", shape_str(shape()), " to fewer dimensions ",
           shape_str(shape_in));
  Shape sh(nd), st(nd, 0);
  for (int64_t i = 0; i < nd; ++i) {
    int64_t src = i - (nd - dim());
    int64_t want = shape_in[i];
    if (src < 0) {
      NN_CHECK(want >= 0, "expand: size -1 not allowed for a new leading dimension");
      sh[i] = want;
      continue;
    }
    int64_t have = shape()[src];
    if (want == -1) want = have;
    NN_CHECK(have == want || have == 1, "expand: cannot expand ", shape_str(shape()), " to ",
             shape_str(shape_in), " (dimension ", i, ": ", have, " vs ", want, ")");
    sh[i] = want;
    st[i] = have == want ? strides()[src] : 0;
  }
  Shape in_shape = shape();
  return finish_view(make_view(*this, sh, st, offset()), *this, "expand",
                     [in_shape](const Tensor& g) { return sum_to(g, in_shape); });
}

Tensor Tensor::squeeze() const {
  Shape sh;
  for (int64_t s : shape())
    if (s != 1) sh.push_back(s);
  return reshape(sh);
}

Tensor Tensor::squeeze(int64_t dim_in) const {
  if (dim() == 0) return *this;
  const int64_t d = wrap_dim(dim_in, dim(), "squeeze");
  if (shape()[d] != 1) return *this;
  Shape sh = shape();
  sh.erase(sh.begin() + d);
  return reshape(sh);
}

Tensor Tensor::unsqueeze(int64_t dim_in) const {
  const int64_t d = wrap_dim(dim_in, dim() + 1, "unsqueeze");
  Shape sh = shape();
  sh.insert(sh.begin() + d, 1);
  return reshape(sh);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  const int64_t s = wrap_dim(start_dim, dim(), "flatten");
  const int64_t e = wrap_dim(end_dim, dim(), "flatten");
  NN_CHECK(s <= e, "flatten: start_dim ", start_dim, " comes after end_dim ", end_dim);
  Shape sh(shape().begin(), shape().begin() + s);
  int64_t n = 1;
  for (int64_t i = s; i <= e; ++i) n *= shape()[i];
  sh.push_back(n);
  sh.insert(sh.end(), shape().begin() + e + 1, shape().end());
  return reshape(sh);
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) { return x.flatten(start_dim, end_dim); }
Tensor reshape(const Tensor& x, const Shape& shape) { return x.reshape(shape); }

Tensor concat(const std::vector<Tensor>& tensors, int64_t dim_in) {
  NN_CHECK(!tensors.empty(), "concat: expects at least one tensor");
  const Tensor& first = tensors[0];
  detail::check_defined(first, "concat");
  const int64_t nd = first.dim();
  NN_CHECK(nd > 0, "concat: zero-dimensional tensors cannot be concatenated");
  const int64_t d = wrap_dim(dim_in, nd, "concat");
  Shape out_shape = first.shape();
  out_shape[d] = 0;
  for (size_t k = 0; k < tensors.size(); ++k) {
    const Tensor& t = tensors[k];
    detail::check_defined(t, "concat");
    detail::check_same_device(first, t, "concat");
    detail::check_same_dtype(first, t, "concat");
    NN_CHECK(t.dim() == nd, "concat: tensor ", k, " has shape ", shape_str(t.shape()), ", expected ", nd,
             " dimensions like ", shape_str(first.shape()));
    for (int64_t i = 0; i < nd; ++i)
      NN_CHECK(i == d || t.shape()[i] == first.shape()[i], "concat: tensor ", k, " has shape ",
               shape_str(t.shape()), ", which differs from ", shape_str(first.shape()),
               " outside dimension ", d);
    out_shape[d] += t.shape()[d];
  }
  Tensor out = detail::make_tensor(out_shape, first.dtype(), first.device());
  std::vector<int64_t> starts;
  int64_t pos = 0;
  {
    NoGradGuard ng;
    for (const Tensor& t : tensors) {
      starts.push_back(pos);
      Tensor v = out.narrow(d, pos, t.shape()[d]);
      if (v.numel() > 0) NN_DISPATCH(copy, out.device())(t, v);
      pos += t.shape()[d];
    }
  }
  if (needs_grad(tensors)) {
    std::vector<int64_t> lengths;
    for (const Tensor& t : tensors) lengths.push_back(t.shape()[d]);
    record_op("concat", out, tensors, [=](const Tensor& g) {
      std::vector<Tensor> grads;
      for (size_t k = 0; k < starts.size(); ++k) grads.push_back(g.narrow(d, starts[k], lengths[k]));
      return grads;
    });
  }
  return out;
}

}  // namespace nn
