// Helpers shared by the op families: making tensors and views, and the common checks.
#pragma once

#include "nn/tensor.h"

namespace nn::detail {

Tensor make_tensor(const Shape& shape, DType dtype, Device device);
Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset);
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

void check_defined(const Tensor& t, const char* op);
void check_float(const Tensor& t, const char* op);  // f32 or f64
void check_same_device(const Tensor& a, const Tensor& b, const char* op);
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op);
void check_inplace_allowed(const Tensor& t, const char* op);

double load_as_double(const void* base, DType dtype, int64_t i);
void store_from_double(void* base, DType dtype, int64_t i, double v);

}  // namespace nn::detail
