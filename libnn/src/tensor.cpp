// Tensor metadata, storage, element access, factories and printing. Views and copies, which are
// differentiable, live in ops/shape.cpp and ops/copy.cpp.
#include "nn/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <limits>
#include <sstream>

#include "device_memory.h"
#include "kernel_table.h"
#include "nn/autograd.h"
#include "tensor_internal.h"

namespace nn {

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    NN_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
    NN_CHECK(d == 0 || n <= std::numeric_limits<int64_t>::max() / d, "shape ", shape_str(shape),
             " has too many elements");
    n *= d;
  }
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1; i >= 0; --i) {
    strides[i] = s;
    // Checked: a zero-size shape such as [0, 2^40, 2^40] passes shape_numel but not this.
    NN_CHECK(!__builtin_mul_overflow(s, std::max<int64_t>(shape[i], 1), &s), "shape ", shape_str(shape),
             " is too large to index");
  }
  return strides;
}

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  data_ = detail::device_allocate(nbytes, device);
}

Storage::Storage(void* data, size_t nbytes, Device device, std::shared_ptr<void> owner)
    : data_(data), nbytes_(nbytes), device_(device), owner_(std::move(owner)) {}

Storage::~Storage() {
  if (!owner_) detail::device_free(data_, device_);
}

namespace detail {

Tensor make_tensor(const Shape& shape, DType dtype, Device device) {
  int64_t n = shape_numel(shape);
  NN_CHECK(static_cast<uint64_t>(n) <= std::numeric_limits<uint64_t>::max() / dtype_size(dtype),
           "tensor of shape ", shape_str(shape), " is too large");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(n) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t range = std::max<int64_t>(ndim, 1);
  NN_CHECK(dim >= -range && dim < range, op, ": dimension ", dim, " out of range for a tensor with ",
           ndim, " dimensions");
  return dim < 0 ? dim + range : dim;
}

void check_defined(const Tensor& t, const char* op) {
  NN_CHECK(t.defined(), op, ": got an undefined tensor");
}

void check_float(const Tensor& t, const char* op) {
  check_defined(t, op);
  NN_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64, op, ": expected a f32 or f64 tensor, got ",
           dtype_name(t.dtype()), " (convert with .to(nn::f32))");
}

void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  NN_CHECK(a.device() == b.device(), op, ": tensors are on different devices (", a.device(), " and ",
           b.device(), ")");
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  NN_CHECK(a.dtype() == b.dtype(), op, ": dtypes differ (", dtype_name(a.dtype()), " and ",
           dtype_name(b.dtype()), ")");
}

void check_inplace_allowed(const Tensor& t, const char* op) {
  check_defined(t, op);
  NN_CHECK(!(t.requires_grad() && grad_mode_enabled()), op,
           ": in-place write to a tensor that requires grad; wrap it in nn::NoGradGuard");
}

}  // namespace detail

// ---- metadata ----
const Shape& Tensor::shape() const { detail::check_defined(*this, "shape"); return impl_->shape; }
const Shape& Tensor::strides() const { detail::check_defined(*this, "strides"); return impl_->strides; }
int64_t Tensor::dim() const { return static_cast<int64_t>(shape().size()); }
int64_t Tensor::size(int64_t d) const { return shape()[detail::wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[detail::wrap_dim(d, dim(), "stride")]; }
int64_t Tensor::offset() const { detail::check_defined(*this, "offset"); return impl_->offset; }
int64_t Tensor::numel() const { return shape_numel(shape()); }
DType Tensor::dtype() const { detail::check_defined(*this, "dtype"); return impl_->dtype; }
Device Tensor::device() const { detail::check_defined(*this, "device"); return impl_->storage->device(); }
const std::shared_ptr<Storage>& Tensor::storage() const {
  detail::check_defined(*this, "storage");
  return impl_->storage;
}
uint64_t Tensor::version() const { return storage()->version(); }

bool Tensor::is_contiguous() const {
  const Shape& sh = shape();
  const Shape& st = strides();
  int64_t expected = 1;
  for (int64_t i = static_cast<int64_t>(sh.size()) - 1; i >= 0; --i) {
    if (sh[i] == 1) continue;
    if (st[i] != expected) return false;
    expected *= sh[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  detail::check_defined(*this, "data");
  return static_cast<char*>(impl_->storage->data()) + impl_->offset * dtype_size(impl_->dtype);
}

template <typename T>
T* Tensor::data() const {
  NN_CHECK(dtype() == dtype_of<T>::value, "data<T>(): tensor has dtype ", dtype_name(dtype()),
           ", not ", dtype_name(dtype_of<T>::value));
  return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int64_t* Tensor::data<int64_t>() const;
template int32_t* Tensor::data<int32_t>() const;
template uint8_t* Tensor::data<uint8_t>() const;

namespace detail {
double load_as_double(const void* base, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::f32: return static_cast<const float*>(base)[i];
    case DType::f64: return static_cast<const double*>(base)[i];
    case DType::f16: return half_to_float(static_cast<const uint16_t*>(base)[i]);
    case DType::bf16: return bfloat16_to_float(static_cast<const uint16_t*>(base)[i]);
    case DType::i64: return static_cast<double>(static_cast<const int64_t*>(base)[i]);
    case DType::i32: return static_cast<const int32_t*>(base)[i];
    case DType::u8: return static_cast<const uint8_t*>(base)[i];
  }
  return 0;
}

void store_from_double(void* base, DType dtype, int64_t i, double v) {
  switch (dtype) {
    case DType::f32: static_cast<float*>(base)[i] = static_cast<float>(v); break;
    case DType::f64: static_cast<double*>(base)[i] = v; break;
    case DType::f16: static_cast<uint16_t*>(base)[i] = float_to_half(static_cast<float>(v)); break;
    case DType::bf16: static_cast<uint16_t*>(base)[i] = float_to_bfloat16(static_cast<float>(v)); break;
    case DType::i64: static_cast<int64_t*>(base)[i] = static_cast<int64_t>(v); break;
    case DType::i32: static_cast<int32_t*>(base)[i] = static_cast<int32_t>(v); break;
    case DType::u8: static_cast<uint8_t*>(base)[i] = static_cast<uint8_t>(v); break;
  }
}
}  // namespace detail

static int64_t linear_offset_of(const Tensor& t, const std::vector<int64_t>& index) {
  NN_CHECK(static_cast<int64_t>(index.size()) == t.dim(), "index has ", index.size(),
           " coordinates for a tensor with ", t.dim(), " dimensions");
  int64_t off = 0;
  for (size_t d = 0; d < index.size(); ++d) {
    int64_t i = index[d];
    int64_t n = t.shape()[d];
    if (i < 0) i += n;
    NN_CHECK(i >= 0 && i < n, "index ", index[d], " out of range for dimension ", d, " of size ", n);
    off += i * t.strides()[d];
  }
  return off;
}

double Tensor::item_double_at(int64_t linear_offset) const {
  NN_CHECK(device().is_cpu(), "element access needs a CPU tensor (this one is on ", device(),
           "); use .cpu()");
  return detail::load_as_double(raw_data(), dtype(), linear_offset);
}

double Tensor::item_double() const {
  NN_CHECK(numel() == 1, "item(): tensor of shape ", shape_str(shape()), " has ", numel(),
           " elements, not 1");
  if (!device().is_cpu()) return cpu().item_double();
  return item_double_at(0);
}

double Tensor::at(const std::vector<int64_t>& index) const {
  return item_double_at(linear_offset_of(*this, index));
}

void Tensor::set(const std::vector<int64_t>& index, double value) {
  detail::check_inplace_allowed(*this, "set");
  NN_CHECK(device().is_cpu(), "set(): needs a CPU tensor (this one is on ", device(), ")");
  detail::store_from_double(raw_data(), dtype(), linear_offset_of(*this, index), value);
  storage()->bump_version();
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = to(Device::cpu()).to(dtype_of<T>::value).contiguous();
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

// ---- factories ----
Tensor empty(const Shape& shape, DType dtype, Device device) {
  return detail::make_tensor(shape, dtype, device);
}

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (t.numel() > 0) NN_DISPATCH(fill, device)(t, value);
  return t;
}

Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor scalar_tensor(double value, DType dtype, Device device) { return full({}, value, dtype, device); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.dtype(), t.device()); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype(), t.device()); }

Tensor arange(double start, double end, double step, DType dtype, Device device) {
  NN_CHECK(step != 0 && std::isfinite(start) && std::isfinite(end) && std::isfinite(step),
           "arange: step must be non-zero and bounds finite");
  double count = std::ceil((end - start) / step);
  NN_CHECK(count < 1e12, "arange: too many elements");
  int64_t n = std::max<int64_t>(0, static_cast<int64_t>(count));
  Tensor t = empty({n}, dtype, Device::cpu());
  for (int64_t i = 0; i < n; ++i) detail::store_from_double(t.raw_data(), dtype, i, start + i * step);
  return t.to(device);
}

Tensor arange(int64_t n, DType dtype, Device device) { return arange(0.0, static_cast<double>(n), 1.0, dtype, device); }

Tensor uniform(const Shape& shape, double low, double high, Generator& gen, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  int64_t n = t.numel();
  uint64_t counter = gen.reserve(static_cast<uint64_t>((n + 1) / 2));  // 2 numbers per block
  if (n > 0) NN_DISPATCH(random_uniform, device)(t, gen.seed(), counter, low, high);
  return t;
}

Tensor rand(const Shape& shape, Generator& gen, DType dtype, Device device) {
  return uniform(shape, 0.0, 1.0, gen, dtype, device);
}

Tensor normal(const Shape& shape, double mean, double std, Generator& gen, DType dtype, Device device) {
  NN_CHECK(std >= 0, "normal: std must be >= 0, got ", std);
  Tensor t = empty(shape, dtype, device);
  int64_t n = t.numel();
  uint64_t counter = gen.reserve(static_cast<uint64_t>((n + 1) / 2));
  if (n > 0) NN_DISPATCH(random_normal, device)(t, gen.seed(), counter, mean, std);
  return t;
}

Tensor randn(const Shape& shape, Generator& gen, DType dtype, Device device) {
  return normal(shape, 0.0, 1.0, gen, dtype, device);
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  NN_CHECK(shape_numel(shape) == static_cast<int64_t>(values.size()), "from_vector: ", values.size(),
           " values do not fill shape ", shape_str(shape));
  Tensor t = empty(shape, dtype_of<T>::value, Device::cpu());
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
  return t.to(device);
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, Device);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, Device);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, Device);
template Tensor from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, Device);
template Tensor from_vector<uint8_t>(const std::vector<uint8_t>&, const Shape&, Device);

Tensor tensor(std::initializer_list<float> values, const Shape& shape, DType dtype) {
  return from_vector(std::vector<float>(values), shape).to(dtype);
}

Tensor tensor(std::initializer_list<float> values, DType dtype) {
  return tensor(values, {static_cast<int64_t>(values.size())}, dtype);
}

Tensor from_blob(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> owner) {
  int64_t n = shape_numel(shape);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(data, static_cast<size_t>(n) * dtype_size(dtype),
                                            Device::cpu(), std::move(owner));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

// ---- printing ----
namespace {

void print_rec(std::ostream& out, const Tensor& t, int64_t dim, int64_t offset, int indent,
               bool summarize, bool is_int) {
  int64_t n = t.shape()[dim];
  const int64_t edge = 3;
  out << "[";
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && n > 2 * edge && i == edge) {
      out << (dim + 1 == t.dim() ? "..., " : "...,\n" + std::string(indent + 1, ' '));
      i = n - edge - 1;
      continue;
    }
    int64_t off = offset + i * t.strides()[dim];
    if (dim + 1 == t.dim()) {
      double v = detail::load_as_double(static_cast<char*>(t.storage()->data()), t.dtype(), off);
      if (is_int) out << static_cast<int64_t>(v);
      else out << std::setprecision(4) << std::fixed << v;
      if (i + 1 < n) out << ", ";
    } else {
      print_rec(out, t, dim + 1, off, indent + 1, summarize, is_int);
      if (i + 1 < n) out << ",\n" << std::string(indent + 1, ' ');
    }
  }
  out << "]";
}

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  Tensor c = device().is_cpu() ? *this : cpu();
  std::ostringstream out;
  out << "tensor(";
  bool is_int = !is_floating(dtype());
  if (c.dim() == 0) {
    double v = detail::load_as_double(static_cast<char*>(c.storage()->data()), c.dtype(), c.offset());
    if (is_int) out << static_cast<int64_t>(v);
    else out << std::setprecision(4) << std::fixed << v;
  } else if (c.numel() == 0) {
    out << "[]";
  } else {
    print_rec(out, c, 0, c.offset(), 7, c.numel() > 1000, is_int);
  }
  out << ", shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype());
  if (!device().is_cpu()) out << ", device=" << device();
  if (requires_grad()) out << ", requires_grad";
  out << ")";
  return out.str();
}

std::ostream& operator<<(std::ostream& out, const Tensor& t) { return out << t.str(); }

}  // namespace nn
