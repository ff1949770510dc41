// Dropout, forward and backward: a mask of 0 and 1/(1-p) drawn from a Philox stream of the given
// generator, multiplied in; the gradient is multiplied by the same mask.
#include "ops/op_util.h"

namespace nn {

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  detail::check_float(x, "dropout");
  NN_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability must be in [0, 1], got ", p);
  if (!training || p == 0.0) return x;
  if (p == 1.0) return mul(x, 0.0);
  Tensor mask = detail::make_tensor(x.shape(), x.dtype(), x.device());
  const int64_t n = mask.numel();
  const uint64_t counter = gen.reserve(static_cast<uint64_t>((n + 1) / 2));
  if (n > 0) NN_DISPATCH(dropout_mask, x.device())(mask, gen.seed(), counter, p);
  Tensor out = detail::binary_kernel(BinaryOp::mul, x, mask);
  if (needs_grad({x})) {
    record_op("dropout", out, {x}, [mask](const Tensor& g) -> std::vector<Tensor> {
      return {detail::binary_kernel(BinaryOp::mul, g, mask)};
    });
  }
  return out;
}

}  // namespace nn
