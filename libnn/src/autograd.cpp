// The autograd engine: nodes, saved tensors, backward.
#include "nn/autograd.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "nn/ops.h"
#include "tensor_internal.h"

namespace nn {

namespace {
thread_local bool grad_mode = true;
// The leaves the innermost GradientsOnlyFor scope of this thread allows; null outside any scope.
thread_local const std::vector<const TensorImpl*>* gradient_leaves = nullptr;

// The node of an op: a backward function and the tensors its closure saved.
class FunctionNode : public Node {
 public:
  FunctionNode(std::string name, std::vector<std::shared_ptr<Node>> next, std::vector<Shape> shapes,
               BackwardFn fn)
      : Node(std::move(name), std::move(next), std::move(shapes)), fn_(std::move(fn)) {}

  std::vector<Tensor> apply(const Tensor& grad_output) override {
    NN_CHECK(fn_, "backward through '", name(),
             "' a second time: its saved tensors were freed after the first backward; "
             "pass retain_graph=true to the first backward() to keep them");
    return fn_(grad_output);
  }
  void release() override { fn_ = nullptr; }

 private:
  BackwardFn fn_;
};

// The node of a leaf that requires grad: adds the incoming gradient into leaf.grad.
class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(const std::shared_ptr<TensorImpl>& leaf)
      : Node("AccumulateGrad", {}, {leaf->shape}), leaf_(leaf) {}

  std::vector<Tensor> apply(const Tensor& grad_output) override {
    std::shared_ptr<TensorImpl> leaf = leaf_.lock();
    if (!leaf) return {};
    if (!leaf->grad) {
      // The gradient becomes .grad. When nothing else holds its buffer (the usual case: a fresh
      // kernel output owned only by the engine) it is adopted; otherwise it may alias a tensor
      // someone holds, so .grad gets a private copy.
      const bool sole_owner = grad_output.impl_ptr().use_count() == 1 && grad_output.storage().use_count() == 1 &&
                              grad_output.is_contiguous() && grad_output.dtype() == leaf->dtype;
      leaf->grad = (sole_owner ? grad_output.detach() : grad_output.clone()).impl_ptr();
    } else {
      Tensor(leaf->grad).add_(grad_output);
    }
    return {};
  }

 private:
  std::weak_ptr<TensorImpl> leaf_;
};

void accumulate_into_impl(TensorImpl* impl, const Tensor& grad) {
  if (!impl->grad) impl->grad = grad.clone().impl_ptr();
  else Tensor(impl->grad).add_(grad);
}

}  // namespace

bool grad_mode_enabled() { return grad_mode; }
NoGradGuard::NoGradGuard() : previous_(grad_mode) { grad_mode = false; }
NoGradGuard::~NoGradGuard() { grad_mode = previous_; }

GradientsOnlyFor::GradientsOnlyFor(const std::vector<Tensor>& leaves) : previous_(gradient_leaves) {
  for (const Tensor& t : leaves) {
    NN_CHECK(t.defined() && t.is_leaf() && t.requires_grad(),
             "GradientsOnlyFor: every tensor given must be a leaf that requires grad");
    leaves_.push_back(t.impl());
  }
  gradient_leaves = &leaves_;
}
GradientsOnlyFor::~GradientsOnlyFor() { gradient_leaves = previous_; }

namespace {
// A leaf that a GradientsOnlyFor scope of this thread makes a constant.
bool is_constant_leaf(const Tensor& t) {
  return gradient_leaves != nullptr && t.is_leaf() &&
         std::find(gradient_leaves->begin(), gradient_leaves->end(), t.impl()) == gradient_leaves->end();
}
}  // namespace

bool wants_grad(const Tensor& t) { return grad_mode && t.requires_grad() && !is_constant_leaf(t); }

SavedTensor::SavedTensor(const Tensor& t) {
  if (!t.defined()) return;
  tensor_ = t.detach();
  version_ = t.version();
}

Tensor SavedTensor::get(const std::string& op_name) const {
  if (!tensor_.defined()) return tensor_;
  NN_CHECK(tensor_.version() == version_, "a tensor saved for the backward of '", op_name,
           "' was modified in place after it was saved (version ", tensor_.version(), ", saved at ",
           version_, "); clone it before writing into it");
  return tensor_;
}

namespace {
bool any_requires_grad(const Tensor* begin, const Tensor* end) {
  if (!grad_mode) return false;
  return std::any_of(begin, end, [](const Tensor& t) { return wants_grad(t); });
}
}  // namespace

bool needs_grad(const std::vector<Tensor>& inputs) {
  return any_requires_grad(inputs.data(), inputs.data() + inputs.size());
}

bool needs_grad(std::initializer_list<Tensor> inputs) { return any_requires_grad(inputs.begin(), inputs.end()); }

std::shared_ptr<Node> gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return nullptr;
  if (is_constant_leaf(t)) return nullptr;
  TensorImpl* impl = t.impl();
  if (impl->grad_fn) return impl->grad_fn;
  if (!impl->grad_accumulator) impl->grad_accumulator = std::make_shared<AccumulateGrad>(t.impl_ptr());
  return impl->grad_accumulator;
}

void record_op(const std::string& name, Tensor& output, const std::vector<Tensor>& inputs, BackwardFn fn) {
  std::vector<std::shared_ptr<Node>> next;
  std::vector<Shape> shapes;
  next.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    next.push_back(gradient_edge(t));
    shapes.push_back(t.defined() ? t.shape() : Shape{});
  }
  TensorImpl* impl = output.impl();
  impl->grad_fn = std::make_shared<FunctionNode>(name, std::move(next), std::move(shapes), std::move(fn));
  impl->requires_grad = true;
}

void run_backward(const Tensor& root, const Tensor& gradient, bool retain_graph) {
  detail::check_defined(root, "backward");
  NN_CHECK(root.requires_grad(), "backward: the tensor does not require grad and has no grad_fn");
  Tensor seed = gradient;
  if (!seed.defined()) {
    NN_CHECK(root.numel() == 1, "backward: a gradient must be given for a tensor of shape ",
             shape_str(root.shape()), " (implicit gradients only for one-element tensors)");
    seed = ones(root.shape(), root.dtype(), root.device());
  } else {
    NN_CHECK(seed.shape() == root.shape(), "backward: gradient of shape ", shape_str(seed.shape()),
             " for a tensor of shape ", shape_str(root.shape()));
    seed = seed.detach();
  }
  std::shared_ptr<Node> root_node = gradient_edge(root);

  // Dependencies: how many edges from reachable nodes point into each node.
  std::unordered_map<Node*, int> dependencies;
  std::vector<Node*> stack{root_node.get()};
  std::unordered_set<Node*> seen{root_node.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& next : n->next()) {
      if (!next) continue;
      dependencies[next.get()] += 1;
      if (seen.insert(next.get()).second) stack.push_back(next.get());
    }
  }

  // Kahn's algorithm: a node runs once every edge into it has delivered (or not) its gradient.
  NoGradGuard no_grad;
  std::unordered_map<Node*, Tensor> grads;
  grads[root_node.get()] = seed;
  std::vector<Node*> ready{root_node.get()};
  while (!ready.empty()) {
    Node* node = ready.back();
    ready.pop_back();
    Tensor grad;
    if (auto it = grads.find(node); it != grads.end()) {
      grad = std::move(it->second);
      grads.erase(it);
    }
    std::vector<Tensor> input_grads;
    if (grad.defined()) {
      if (auto out = node->retained_output(); out && out->retains_grad) accumulate_into_impl(out.get(), grad);
      input_grads = node->apply(grad);
      NN_ASSERT(input_grads.empty() || input_grads.size() == node->next().size(), "node '", node->name(),
                "' returned ", input_grads.size(), " gradients for ", node->next().size(), " inputs");
    }
    if (!retain_graph) node->release();
    const auto& next = node->next();
    for (size_t i = 0; i < next.size(); ++i) {
      Node* target = next[i].get();
      if (!target) continue;
      if (i < input_grads.size() && input_grads[i].defined()) {
        const Tensor& g = input_grads[i];
        NN_ASSERT(g.shape() == node->input_shapes()[i], "node '", node->name(), "' returned a gradient of shape ",
                  shape_str(g.shape()), " for input ", i, " of shape ", shape_str(node->input_shapes()[i]));
        auto it = grads.find(target);
        if (it == grads.end()) grads.emplace(target, g);
        else it->second = add(it->second, g);
      }
      if (--dependencies[target] == 0) ready.push_back(target);
    }
  }
}

// ---- Tensor's autograd methods ----
bool Tensor::requires_grad() const { return defined() && impl_->requires_grad; }

Tensor& Tensor::requires_grad_(bool on) {
  detail::check_defined(*this, "requires_grad_");
  NN_CHECK(is_leaf() || on, "requires_grad_(false) on a non-leaf tensor; use detach()");
  NN_CHECK(!on || is_floating(dtype()), "requires_grad_: only floating-point tensors can require grad (got ",
           dtype_name(dtype()), ")");
  impl_->requires_grad = on;
  if (!on) impl_->grad_accumulator.reset();
  return *this;
}

bool Tensor::is_leaf() const { return defined() && !impl_->grad_fn; }

Tensor Tensor::grad() const {
  detail::check_defined(*this, "grad");
  return impl_->grad ? Tensor(impl_->grad) : Tensor();
}

void Tensor::set_grad(const Tensor& grad) const {
  detail::check_defined(*this, "set_grad");
  if (grad.defined())
    NN_CHECK(grad.shape() == shape(), "set_grad: gradient of shape ", shape_str(grad.shape()),
             " for a tensor of shape ", shape_str(shape()));
  impl_->grad = grad.defined() ? grad.impl_ptr() : nullptr;
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  detail::check_defined(*this, "grad_fn");
  return impl_->grad_fn;
}

Tensor Tensor::detach() const {
  detail::check_defined(*this, "detach");
  return detail::make_view(*this, shape(), strides(), offset());
}

void Tensor::retain_grad() const {
  detail::check_defined(*this, "retain_grad");
  NN_CHECK(requires_grad(), "retain_grad: the tensor does not require grad");
  if (is_leaf()) return;  // leaves keep their gradient anyway
  impl_->retains_grad = true;
  impl_->grad_fn->set_retained_output(impl_);
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  run_backward(*this, gradient, retain_graph);
}

}  // namespace nn
