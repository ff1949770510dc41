// Non-differentiable building blocks shared by the op families: kernel calls on fresh outputs.
// Differentiable ops call these and then record their backward with record_op().
#pragma once

#include "kernel_table.h"
#include "nn/autograd.h"
#include "nn/ops.h"
#include "tensor_internal.h"

namespace nn::detail {

// x itself when dense, else a dense copy (no autograd).
Tensor dense(const Tensor& x);
// A stride-0 view of t broadcast to `shape` (no autograd).
Tensor broadcast_view(const Tensor& t, const Shape& shape);
// Kernel calls into a new dense output (no autograd).
Tensor unary_kernel(UnaryOp op, const Tensor& x, double alpha = 0, double beta = 0);
Tensor binary_kernel(BinaryOp op, const Tensor& a, const Tensor& b);  // broadcasting
// Checks for ops over float tensors: defined, f32/f64, same device and dtype.
void check_float_pair(const Tensor& a, const Tensor& b, const char* op);
// Sums over `dims` of a dense-or-not tensor (no autograd), keeping them as size 1 when keepdim.
Tensor sum_kernel(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim);

}  // namespace nn::detail
