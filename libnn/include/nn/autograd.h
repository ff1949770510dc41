// Define-by-run reverse-mode autograd, small enough to read in one sitting.
//
// Every differentiable op that produced a tensor from inputs that require grad attaches a Node
// to its output: the node knows the nodes of its inputs (edges) and a backward function that maps
// the gradient of its output to one gradient per input. Leaves that require grad get an
// accumulator node that adds into .grad. backward() sorts the nodes reachable from the root
// topologically, walks them once in reverse order, and frees each node's saved tensors unless
// asked to retain the graph. Backward runs with grad mode off (no higher-order gradients).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nn/tensor.h"

namespace nn {

// Grad mode is per thread. Ops record history only while it is on.
bool grad_mode_enabled();

class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// Gradients for chosen leaves only (per thread, for its scope): every other leaf that requires
// grad - a model's parameters - is treated as a constant. Ops compute no gradient for it and
// record no edge to it, so backward never writes its .grad and never even attaches a gradient
// accumulator to it: a model can be differentiated with respect to an activation (Grad-CAM) by
// several threads at once without being written. Non-leaf tensors are unaffected. Scopes nest; the
// innermost one decides.
class GradientsOnlyFor {
 public:
  explicit GradientsOnlyFor(const std::vector<Tensor>& leaves);
  ~GradientsOnlyFor();
  GradientsOnlyFor(const GradientsOnlyFor&) = delete;
  GradientsOnlyFor& operator=(const GradientsOnlyFor&) = delete;

 private:
  std::vector<const TensorImpl*> leaves_;
  const std::vector<const TensorImpl*>* previous_;
};

// Whether an op should compute and pass on a gradient for this input: grad mode is on, `t`
// requires grad, and no GradientsOnlyFor scope makes it a constant.
bool wants_grad(const Tensor& t);

class Node {
 public:
  virtual ~Node() = default;
  const std::string& name() const { return name_; }
  // Producer node of each input; null where the input needs no gradient.
  const std::vector<std::shared_ptr<Node>>& next() const { return next_; }
  // Shape of each input, to check the gradients a backward function returns.
  const std::vector<Shape>& input_shapes() const { return input_shapes_; }
  // Gradient of the output -> one gradient per input (undefined where none flows).
  virtual std::vector<Tensor> apply(const Tensor& grad_output) = 0;
  // Drops saved tensors; a later apply() is an error.
  virtual void release() {}

  // The tensor this node produced, if it asked to retain its gradient.
  void set_retained_output(const std::shared_ptr<TensorImpl>& impl) { retained_output_ = impl; }
  std::shared_ptr<TensorImpl> retained_output() const { return retained_output_.lock(); }

 protected:
  Node(std::string name, std::vector<std::shared_ptr<Node>> next, std::vector<Shape> input_shapes)
      : name_(std::move(name)), next_(std::move(next)), input_shapes_(std::move(input_shapes)) {}

 private:
  std::string name_;
  std::vector<std::shared_ptr<Node>> next_;
  std::vector<Shape> input_shapes_;
  std::weak_ptr<TensorImpl> retained_output_;
};

// A tensor saved for backward, with the version it had when saved: using it after an in-place
// write is an error that names the op, instead of a silently wrong gradient.
class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor& t);
  Tensor get(const std::string& op_name) const;
  bool defined() const { return tensor_.defined(); }

 private:
  Tensor tensor_;  // detached alias: no reference back into the graph
  uint64_t version_ = 0;
};

using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

// True when at least one input wants_grad().
bool needs_grad(std::initializer_list<Tensor> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Makes `output` the result of a differentiable op over `inputs`: attaches a node named `name`
// whose backward is `fn` (one returned gradient per input, undefined allowed). Call only when
// needs_grad(inputs).
void record_op(const std::string& name, Tensor& output, const std::vector<Tensor>& inputs,
               BackwardFn fn);

// Runs backward from `root` (a one-element tensor when `gradient` is undefined).
void run_backward(const Tensor& root, const Tensor& gradient, bool retain_graph);

// The node backward would enter for this tensor: its grad_fn or its leaf accumulator.
std::shared_ptr<Node> gradient_edge(const Tensor& t);

}  // namespace nn
