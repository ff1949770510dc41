// Tensor: a cheap handle on shared storage with a shape, strides (in elements), an offset, a
// dtype, a device and autograd metadata. Copying a Tensor aliases; clone() is the only deep copy.
// Views (reshape, permute, narrow, expand, ...) share storage and record their own backward.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "nn/device.h"
#include "nn/dtype.h"
#include "nn/error.h"
#include "nn/generator.h"

namespace nn {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& shape);
int64_t shape_numel(const Shape& shape);
// Row-major strides of a dense tensor of this shape.
Shape contiguous_strides(const Shape& shape);

// One buffer on one device. Not copyable; shared by every view of it. Its version counter
// counts in-place writes, so autograd can tell when a tensor it saved was overwritten.
class Storage {
 public:
  Storage(size_t nbytes, Device device);
  // Wraps memory owned by `owner` (e.g. a memory-mapped file); nothing is copied.
  Storage(void* data, size_t nbytes, Device device, std::shared_ptr<void> owner);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  std::shared_ptr<void> owner_;  // set when the memory is borrowed
  uint64_t version_ = 0;
};

class Node;
class Tensor;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;

  // Autograd.
  bool requires_grad = false;
  bool retains_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<Node> grad_fn;           // the node that produced this tensor (null for leaves)
  std::shared_ptr<Node> grad_accumulator;  // leaves that require grad: created on first use
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

  // Metadata.
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t dim() const;
  int64_t size(int64_t d) const;    // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t offset() const;
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const;
  uint64_t version() const;

  // Element access (CPU). data<T>() points at the first element (offset applied) and checks T.
  template <typename T> T* data() const;
  void* raw_data() const;
  // The single element of a one-element tensor, converted.
  template <typename T> T item() const { return static_cast<T>(item_double()); }
  double item_double() const;
  double at(const std::vector<int64_t>& index) const;
  void set(const std::vector<int64_t>& index, double value);  // in place
  // All elements in logical (row-major) order, converted to T. Works on any device.
  template <typename T> std::vector<T> to_vector() const;

  // Views: share storage, differentiable.
  Tensor view(const Shape& shape) const;     // needs compatible strides; one -1 allowed
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a copy
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const;  // 2-D transpose
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;  // removes dim
  Tensor expand(const Shape& shape) const;           // broadcast; -1 keeps a size
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;  // itself when already contiguous

  // Copies.
  Tensor clone() const;
  Tensor to(DType dtype) const;    // itself when already of that dtype
  Tensor to(Device device) const;  // itself when already there
  Tensor cpu() const { return to(Device::cpu()); }

  // In-place writes (bump the version counter; refused on tensors that require grad while grad
  // mode is on).
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& copy_(const Tensor& src);  // src broadcast to this shape, dtype converted
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& mul_(double factor);

  // Autograd.
  bool requires_grad() const;
  Tensor& requires_grad_(bool on = true);
  bool is_leaf() const;
  Tensor grad() const;  // undefined until a backward reached this tensor
  void set_grad(const Tensor& grad) const;
  const std::shared_ptr<Node>& grad_fn() const;
  Tensor detach() const;       // same storage, no history
  void retain_grad() const;    // keep .grad of a non-leaf (e.g. a conv activation for Grad-CAM)
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;

  std::string str() const;  // readable printing

 private:
  double item_double_at(int64_t linear_offset) const;
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& out, const Tensor& t);

// Factories.
Tensor empty(const Shape& shape, DType dtype = f32, Device device = Device::cpu());
Tensor zeros(const Shape& shape, DType dtype = f32, Device device = Device::cpu());
Tensor ones(const Shape& shape, DType dtype = f32, Device device = Device::cpu());
Tensor full(const Shape& shape, double value, DType dtype = f32, Device device = Device::cpu());
Tensor arange(double start, double end, double step = 1.0, DType dtype = f32,
              Device device = Device::cpu());
Tensor arange(int64_t n, DType dtype = f32, Device device = Device::cpu());
Tensor scalar_tensor(double value, DType dtype = f32, Device device = Device::cpu());
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
// Uniform in [low, high) and normal(mean, std), from an explicit generator.
Tensor rand(const Shape& shape, Generator& gen, DType dtype = f32, Device device = Device::cpu());
Tensor uniform(const Shape& shape, double low, double high, Generator& gen, DType dtype = f32,
               Device device = Device::cpu());
Tensor randn(const Shape& shape, Generator& gen, DType dtype = f32, Device device = Device::cpu());
Tensor normal(const Shape& shape, double mean, double std, Generator& gen, DType dtype = f32,
              Device device = Device::cpu());

// From host data (copied). T in {float, double, int64_t, int32_t, uint8_t}.
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu());
// Convenience: nn::tensor({1, 2, 3}) is f32 of shape {3}.
Tensor tensor(std::initializer_list<float> values, DType dtype = f32);
Tensor tensor(std::initializer_list<float> values, const Shape& shape, DType dtype = f32);
// Wraps existing host memory without copying; `owner` keeps it alive.
Tensor from_blob(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> owner);

}  // namespace nn
