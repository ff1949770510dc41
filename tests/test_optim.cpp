// Optimizers, schedulers and gradient clipping against numbers worked out in plain double
// arithmetic: SGD (momentum, dampening, Nesterov, weight decay), Adam and AdamW over three steps,
// exact resumption from a state dict, scheduler sequences against their closed forms, and
// clip_grad_norm_ scaling.
#include <gtest/gtest.h>
#include <nn/autograd.h>
#include <nn/ops.h>
#include <nn/optim.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace nn {
namespace {

using optim::Adam;
using optim::AdamOptions;
using optim::AdamW;
using optim::SGD;
using optim::SgdOptions;

Tensor param_of(const std::vector<double>& values, DType dtype = f64) {
  Tensor p = from_vector(values, {static_cast<int64_t>(values.size())}).to(dtype);
  p.requires_grad_(true);
  return p;
}

void set_grad(const Tensor& p, const std::vector<double>& g) {
  p.set_grad(from_vector(g, {static_cast<int64_t>(g.size())}).to(p.dtype()));
}

// The gradients of the hand-worked runs: a different one each step, signs mixed.
const std::vector<std::vector<double>> kGrads = {{0.5, -1.0, 2.0}, {-0.25, 0.75, 1.5}, {1.0, 0.5, -2.0}};
const std::vector<double> kStart = {1.0, -2.0, 0.5};

// SGD in plain doubles, written from the update rule (PyTorch's).
std::vector<double> sgd_reference(double lr, const SgdOptions& o, int steps) {
  std::vector<double> p = kStart, buf(p.size());
  for (int t = 0; t < steps; ++t) {
    for (size_t i = 0; i < p.size(); ++i) {
      double d = kGrads[t][i] + o.weight_decay * p[i];
      if (o.momentum != 0) {
        buf[i] = t == 0 ? d : o.momentum * buf[i] + (1 - o.dampening) * d;
        d = o.nesterov ? d + o.momentum * buf[i] : buf[i];
      }
      p[i] -= lr * d;
    }
  }
  return p;
}

// Adam/AdamW in plain doubles.
std::vector<double> adam_reference(double lr, const AdamOptions& o, bool decoupled, int steps) {
  std::vector<double> p = kStart, m(p.size()), v(p.size());
  for (int t = 1; t <= steps; ++t) {
    for (size_t i = 0; i < p.size(); ++i) {
      double g = kGrads[t - 1][i];
      if (decoupled) p[i] *= 1 - lr * o.weight_decay;
      else g += o.weight_decay * p[i];
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
      double m_hat = m[i] / (1 - std::pow(o.beta1, t));
      double v_hat = v[i] / (1 - std::pow(o.beta2, t));
      p[i] -= lr * m_hat / (std::sqrt(v_hat) + o.eps);
    }
  }
  return p;
}

template <typename Opt>
std::vector<double> run_steps(Opt& opt, const Tensor& p, int steps) {
  for (int t = 0; t < steps; ++t) {
    set_grad(p, kGrads[t]);
    opt.step();
  }
  return p.to_vector<double>();
}

void expect_near(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "element " << i;
}

// ---- SGD ----

TEST(Optim, SgdPlainStepIsLrTimesGradient) {
  Tensor p = param_of(kStart);
  SGD sgd({p}, 0.1);
  // 1 - 0.1*0.5, -2 + 0.1*1, 0.5 - 0.1*2
  expect_near(run_steps(sgd, p, 1), {0.95, -1.9, 0.3}, 1e-15);
}

TEST(Optim, SgdMomentumFirstBufferIsTheGradient) {
  // Constant gradient 1, lr 0.1, momentum 0.9: buffers 1, 1.9, 2.71 -> p = 0.9, 0.71, 0.439.
  Tensor p = param_of({1.0});
  SgdOptions o;
  o.momentum = 0.9;
  SGD sgd({p}, 0.1, o);
  std::vector<double> expected{0.9, 0.71, 0.439};
  for (double want : expected) {
    set_grad(p, {1.0});
    sgd.step();
    EXPECT_NEAR(p.item<double>(), want, 1e-14);
  }
  EXPECT_EQ(sgd.step_count(0), 3);
}

TEST(Optim, SgdNesterovLooksAheadAlongTheBuffer) {
  // Constant gradient 1, lr 0.1, momentum 0.9, Nesterov: steps 1.9, 2.71, 3.439 -> 0.81, 0.539, 0.1951.
  Tensor p = param_of({1.0});
  SgdOptions o;
  o.momentum = 0.9;
  o.nesterov = true;
  SGD sgd({p}, 0.1, o);
  for (double want : {0.81, 0.539, 0.1951}) {
    set_grad(p, {1.0});
    sgd.step();
    EXPECT_NEAR(p.item<double>(), want, 1e-14);
  }
}

TEST(Optim, SgdMomentumDampeningWeightDecayMatchThreeHandSteps) {
  SgdOptions o;
  o.momentum = 0.8;
  o.dampening = 0.3;
  o.weight_decay = 0.05;
  Tensor p = param_of(kStart);
  SGD sgd({p}, 0.2, o);
  expect_near(run_steps(sgd, p, 3), sgd_reference(0.2, o, 3), 1e-14);
  // First step by hand: g + wd*p = 0.5 + 0.05*1 = 0.55 -> p = 1 - 0.2*0.55 = 0.89.
  Tensor q = param_of(kStart);
  SGD one({q}, 0.2, o);
  EXPECT_NEAR(run_steps(one, q, 1)[0], 0.89, 1e-15);
}

TEST(Optim, SgdNesterovWithWeightDecayMatchesThreeHandSteps) {
  SgdOptions o;
  o.momentum = 0.9;
  o.nesterov = true;
  o.weight_decay = 0.1;
  Tensor p = param_of(kStart);
  SGD sgd({p}, 0.05, o);
  expect_near(run_steps(sgd, p, 3), sgd_reference(0.05, o, 3), 1e-14);
}

TEST(Optim, SgdRejectsNesterovWithoutMomentumOrWithDampening) {
  Tensor p = param_of(kStart);
  SgdOptions o;
  o.nesterov = true;
  EXPECT_THROW(SGD({p}, 0.1, o), Error);
  o.momentum = 0.9;
  o.dampening = 0.1;
  EXPECT_THROW(SGD({p}, 0.1, o), Error);
  EXPECT_THROW(SGD({p}, -1.0), Error);
  EXPECT_THROW(SGD({}, 0.1), Error);
  EXPECT_THROW(SGD({p, p}, 0.1), Error);  // the same tensor twice
}

// ---- Adam / AdamW ----

TEST(Optim, AdamFirstStepMovesEachWeightByLrTimesSignOfGradient) {
  // After one step m_hat = g and v_hat = g^2, so the update is lr * g / (|g| + eps).
  Tensor p = param_of(kStart);
  Adam adam({p}, 0.01);
  std::vector<double> got = run_steps(adam, p, 1);
  expect_near(got, {1.0 - 0.01, -2.0 + 0.01, 0.5 - 0.01}, 1e-9);
}

TEST(Optim, AdamWithL2WeightDecayMatchesThreeHandSteps) {
  AdamOptions o;
  o.beta1 = 0.8;
  o.beta2 = 0.95;
  o.eps = 1e-6;
  o.weight_decay = 0.1;
  Tensor p = param_of(kStart);
  Adam adam({p}, 0.05, o);
  expect_near(run_steps(adam, p, 3), adam_reference(0.05, o, false, 3), 1e-13);
  EXPECT_EQ(adam.step_count(0), 3);
}

TEST(Optim, AdamWDecaysWeightsBeforeTheAdamStep) {
  AdamOptions o;  // betas 0.9 / 0.999
  o.weight_decay = 0.2;
  Tensor p = param_of(kStart);
  AdamW adamw({p}, 0.01, o);
  expect_near(run_steps(adamw, p, 3), adam_reference(0.01, o, true, 3), 1e-13);
  // Decoupled and L2 decay give different weights.
  Tensor q = param_of(kStart);
  Adam adam({q}, 0.01, o);
  EXPECT_GT(std::abs(run_steps(adam, q, 3)[0] - p.to_vector<double>()[0]), 1e-6);
  // AdamW's default weight decay is PyTorch's 0.01.
  EXPECT_DOUBLE_EQ(AdamW({param_of({1.0})}).options().weight_decay, 0.01);
}

TEST(Optim, Float32StepsMatchTheDoubleReferenceOnALargeTensor) {
  // Large enough to be split across threads.
  const int64_t n = 100003;
  Generator gen(12);
  Tensor p64 = randn({n}, gen, f64);
  Tensor g64 = randn({n}, gen, f64);
  Tensor p32 = p64.to(f32);
  p64.requires_grad_(true);
  p32.requires_grad_(true);
  AdamOptions o;
  o.weight_decay = 0.01;
  AdamW a64({p64}, 0.01, o), a32({p32}, 0.01, o);
  SgdOptions so;
  so.momentum = 0.9;
  SGD s64({p64}, 0.01, so), s32({p32}, 0.01, so);
  for (int t = 0; t < 3; ++t) {
    p64.set_grad(g64);
    p32.set_grad(g64.to(f32));
    a64.step();
    a32.step();
    s64.step();
    s32.step();
  }
  std::vector<double> want = p64.to_vector<double>();
  std::vector<float> got = p32.to_vector<float>();
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
  EXPECT_LT(worst, 1e-5);
}

TEST(Optim, ParametersWithoutGradientAreSkippedAndKeepNoState) {
  Tensor a = param_of({1.0, 2.0}), b = param_of({3.0});
  SgdOptions o;
  o.momentum = 0.9;
  SGD sgd({a, b}, 0.5, o);
  set_grad(a, {1.0, 1.0});
  sgd.step();
  EXPECT_EQ(a.to_vector<double>(), (std::vector<double>{0.5, 1.5}));
  EXPECT_EQ(b.to_vector<double>(), std::vector<double>{3.0});
  EXPECT_EQ(sgd.step_count(1), 0);
  auto state = sgd.state_dict();
  EXPECT_TRUE(state.count("state.0.momentum_buffer"));
  EXPECT_FALSE(state.count("state.1.momentum_buffer"));
  sgd.zero_grad();
  EXPECT_FALSE(a.grad().defined());
}

TEST(Optim, StepBumpsTheParameterVersionSoStaleSavedTensorsAreCaught) {
  Tensor p = param_of({1.0, 2.0});
  Tensor y = mul(p, p);  // saves p for backward
  SGD sgd({p}, 0.1);
  uint64_t before = p.version();
  set_grad(p, {1.0, 1.0});
  sgd.step();
  EXPECT_GT(p.version(), before);
  EXPECT_THROW(sum(y).backward(), Error);
}

TEST(Optim, NonContiguousGradientIsUsedThroughADenseCopy) {
  Tensor p = from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2});
  p.requires_grad_(true);
  p.set_grad(from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2}).t());  // transposed view
  SGD sgd({p}, 1.0);
  sgd.step();
  EXPECT_EQ(p.to_vector<double>(), (std::vector<double>{0, -1, 1, 0}));
}

// ---- optimizer state dicts ----

struct Run {
  std::vector<Tensor> params;
  explicit Run(uint64_t seed) {
    Generator gen(seed);
    params = {randn({3, 4}, gen), randn({5}, gen)};
    for (Tensor& p : params) p.requires_grad_(true);
  }
  Run(const Run& other) {
    for (const Tensor& p : other.params) params.push_back(p.detach().clone().requires_grad_(true));
  }
  // Step t's gradients: the same for every run.
  void set_grads(int t) {
    Generator gen(1000 + t);
    for (Tensor& p : params) p.set_grad(randn(p.shape(), gen));
  }
  std::vector<std::vector<float>> values() const {
    std::vector<std::vector<float>> out;
    for (const Tensor& p : params) out.push_back(p.to_vector<float>());
    return out;
  }
};

template <typename Make>
void expect_resume_matches_uninterrupted_run(Make make) {
  Run straight(3), first_half(3);
  auto opt_straight = make(straight.params);
  auto opt_first = make(first_half.params);
  for (int t = 0; t < 3; ++t) {
    straight.set_grads(t);
    opt_straight->step();
    first_half.set_grads(t);
    opt_first->step();
  }
  opt_straight->set_lr(opt_straight->lr() * 0.5);  // a scheduler's change must travel too
  opt_first->set_lr(opt_first->lr() * 0.5);
  optim::OptimizerState saved = opt_first->state_dict();
  for (auto& entry : saved) entry.second = entry.second.clone();  // as if written to disk

  Run resumed(first_half);
  auto opt_resumed = make(resumed.params);
  opt_resumed->load_state_dict(saved);
  EXPECT_EQ(opt_resumed->lr(), opt_straight->lr());
  for (int t = 3; t < 6; ++t) {
    straight.set_grads(t);
    opt_straight->step();
    resumed.set_grads(t);
    opt_resumed->step();
  }
  EXPECT_EQ(resumed.values(), straight.values());
  EXPECT_EQ(opt_resumed->step_count(0), 6);
}

TEST(Optim, SgdStateDictResumesExactlyLikeAnUninterruptedRun) {
  SgdOptions o;
  o.momentum = 0.9;
  o.nesterov = true;
  o.weight_decay = 1e-3;
  expect_resume_matches_uninterrupted_run(
      [&](const std::vector<Tensor>& ps) { return std::make_unique<SGD>(ps, 0.05, o); });
}

TEST(Optim, AdamWStateDictResumesExactlyLikeAnUninterruptedRun) {
  expect_resume_matches_uninterrupted_run(
      [](const std::vector<Tensor>& ps) { return std::make_unique<AdamW>(ps, 0.01); });
}

TEST(Optim, StateDictHoldsHyperparametersAsScalarF64Tensors) {
  Tensor p = param_of(kStart);
  AdamOptions o;
  o.beta1 = 0.85;
  Adam adam({p}, 0.003, o);
  run_steps(adam, p, 2);
  auto state = adam.state_dict();
  for (const char* key : {"param_groups.lr", "param_groups.beta1", "param_groups.beta2", "param_groups.eps",
                          "param_groups.weight_decay", "param_groups.num_params", "state.0.step"}) {
    ASSERT_TRUE(state.count(key)) << key;
    EXPECT_EQ(state[key].dim(), 0) << key;
    EXPECT_EQ(state[key].dtype(), f64) << key;
  }
  EXPECT_EQ(state["param_groups.lr"].item<double>(), 0.003);
  EXPECT_EQ(state["param_groups.beta1"].item<double>(), 0.85);
  EXPECT_EQ(state["state.0.step"].item<double>(), 2.0);
  EXPECT_EQ(state["state.0.exp_avg"].shape(), (Shape{3}));
  EXPECT_EQ(state["state.0.exp_avg_sq"].shape(), (Shape{3}));

  // Loading overrides hyperparameters as well as state.
  Tensor q = param_of(kStart);
  Adam other({q}, 0.1);
  other.load_state_dict(state);
  EXPECT_EQ(other.lr(), 0.003);
  EXPECT_EQ(other.options().beta1, 0.85);
  EXPECT_EQ(other.step_count(0), 2);
}

TEST(Optim, LoadStateDictReportsEveryProblemAndChangesNothing) {
  Tensor p = param_of(kStart);
  SgdOptions o;
  o.momentum = 0.9;
  SGD sgd({p}, 0.1, o);
  run_steps(sgd, p, 1);
  auto state = sgd.state_dict();
  state["state.0.momentum_buffer"] = zeros({4}, f64);  // wrong shape
  state["state.7.momentum_buffer"] = zeros({3}, f64);  // no such parameter
  state.erase("param_groups.dampening");               // missing
  state["param_groups.num_params"] = scalar_tensor(2.0, f64);

  Tensor q = param_of(kStart);
  SGD target({q}, 0.5);
  try {
    target.load_state_dict(state);
    FAIL() << "load_state_dict accepted a bad state";
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const char* needle : {"state.0.momentum_buffer", "state.7.momentum_buffer", "param_groups.dampening",
                               "2 parameters", "4 problems"})
      EXPECT_NE(msg.find(needle), std::string::npos) << needle << " not in: " << msg;
  }
  EXPECT_EQ(target.lr(), 0.5);
  EXPECT_EQ(target.options().momentum, 0.0);
  EXPECT_EQ(target.step_count(0), 0);

  // Hyperparameters out of range are refused and the old ones kept.
  auto adam_state = Adam({param_of(kStart)}).state_dict();
  adam_state["param_groups.beta1"] = scalar_tensor(1.5, f64);
  Adam adam({q});
  EXPECT_THROW(adam.load_state_dict(adam_state), Error);
  EXPECT_EQ(adam.options().beta1, 0.9);
}

TEST(Optim, LoadedBuffersAreCopiesOnTheParameterDtype) {
  Tensor p = param_of(kStart);
  SgdOptions o;
  o.momentum = 0.5;
  SGD sgd({p}, 0.1, o);
  run_steps(sgd, p, 1);
  auto state = sgd.state_dict();
  Tensor q = param_of(kStart, f32);
  SGD target({q}, 0.1, o);
  target.load_state_dict(state);
  Tensor buf = target.state_dict()["state.0.momentum_buffer"];
  EXPECT_EQ(buf.dtype(), f32);
  EXPECT_NE(buf.storage(), state["state.0.momentum_buffer"].storage());
}

// ---- schedulers ----

TEST(Sched, StepLRFollowsBaseTimesGammaToTheFloorOfEpochOverStepSize) {
  Tensor p = param_of({1.0});
  SGD sgd({p}, 0.1);
  optim::StepLR sched(sgd, 3, 0.5);
  EXPECT_EQ(sched.last_epoch(), 0);
  EXPECT_DOUBLE_EQ(sgd.lr(), 0.1);
  const double expected[] = {0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125};
  for (int e = 1; e <= 9; ++e) {
    sched.step();
    EXPECT_EQ(sched.last_epoch(), e);
    EXPECT_DOUBLE_EQ(sgd.lr(), expected[e - 1]) << "epoch " << e;
    EXPECT_DOUBLE_EQ(sgd.lr(), 0.1 * std::pow(0.5, e / 3)) << "epoch " << e;
  }
}

TEST(Sched, CosineAnnealingFollowsTheClosedForm) {
  Tensor p = param_of({1.0});
  SGD sgd({p}, 0.1);
  optim::CosineAnnealingLR sched(sgd, 10, 0.001);
  EXPECT_DOUBLE_EQ(sgd.lr(), 0.1);
  const double pi = 3.14159265358979323846;
  for (int e = 1; e <= 10; ++e) {
    sched.step();
    EXPECT_NEAR(sgd.lr(), 0.001 + 0.099 * (1 + std::cos(pi * e / 10)) / 2, 1e-15) << "epoch " << e;
    if (e == 5) {
      EXPECT_NEAR(sgd.lr(), 0.0505, 1e-15);
    }
  }
  EXPECT_NEAR(sgd.lr(), 0.001, 1e-15);
}

TEST(Sched, SchedulerStateDictResumesTheSequence) {
  Tensor p = param_of({1.0});
  SGD a({p}, 0.2), b({p}, 0.2);
  optim::CosineAnnealingLR sa(a, 7, 0.01);
  for (int e = 0; e < 4; ++e) sa.step();
  auto state = sa.state_dict();
  EXPECT_EQ(state.at("last_epoch"), 4.0);

  optim::CosineAnnealingLR sb(b, 100, 0.5);  // other settings: replaced by the load
  sb.load_state_dict(state);
  b.set_lr(a.lr());  // the optimizer's state dict carries the lr
  for (int e = 0; e < 3; ++e) {
    sa.step();
    sb.step();
    EXPECT_EQ(b.lr(), a.lr());
  }
  optim::StepLR wrong(b, 2);
  EXPECT_THROW(wrong.load_state_dict(state), Error);  // cosine keys in a StepLR
}

TEST(Sched, ReduceLROnPlateauReducesAfterPatienceWithCooldownAndFloor) {
  Tensor p = param_of({1.0});
  SGD sgd({p}, 1.0);
  optim::PlateauOptions o;
  o.factor = 0.5;
  o.patience = 2;
  o.cooldown = 1;
  o.min_lr = 0.2;
  optim::ReduceLROnPlateau sched(sgd, o);
  // 10 and 9 improve; then 9 forever: three bad epochs (more than patience) reduce the rate, the
  // epoch after a reduction is cooldown; the floor 0.2 stops the third reduction at 0.2; 5 improves.
  const double metrics[] = {10, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 5};
  const double expected[] = {1,    1,    1,    1,    0.5, 0.5, 0.5, 0.5, 0.25,
                             0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2};
  for (int e = 0; e < 18; ++e) {
    sched.step(metrics[e]);
    EXPECT_DOUBLE_EQ(sgd.lr(), expected[e]) << "epoch " << e + 1;
  }
  EXPECT_EQ(sched.best(), 5.0);
  EXPECT_EQ(sched.num_bad_epochs(), 0);
  EXPECT_EQ(sched.last_epoch(), 18);
}

TEST(Sched, ReduceLROnPlateauMaxModeNeedsARelativeImprovement) {
  Tensor p = param_of({1.0});
  SGD sgd({p}, 0.1);
  optim::PlateauOptions o;
  o.mode = optim::PlateauOptions::Mode::max;
  o.patience = 1;
  o.threshold = 0.01;  // 1% better than the best to count
  optim::ReduceLROnPlateau sched(sgd, o);
  sched.step(0.80);   // best 0.80
  sched.step(0.805);  // +0.6%: bad 1
  EXPECT_DOUBLE_EQ(sgd.lr(), 0.1);
  sched.step(0.806);  // bad 2 > patience 1: reduce
  EXPECT_DOUBLE_EQ(sgd.lr(), 0.01);
  sched.step(0.9);  // +12.5%: improvement
  EXPECT_EQ(sched.best(), 0.9);
  sched.step(std::nan(""));  // NaN is a bad epoch
  EXPECT_EQ(sched.num_bad_epochs(), 1);

  // Its state dict round-trips the counters.
  SGD other({p}, 0.01);
  optim::ReduceLROnPlateau restored(other);
  restored.load_state_dict(sched.state_dict());
  EXPECT_EQ(restored.best(), 0.9);
  EXPECT_EQ(restored.num_bad_epochs(), 1);
  restored.step(0.1);  // bad 2 > 1: reduce, as the original would
  EXPECT_DOUBLE_EQ(other.lr(), 0.001);
}

// ---- gradient clipping ----

TEST(ClipGrad, ScalesAllGradientsByMaxNormOverTotalNorm) {
  Tensor a = param_of({0, 0}), b = param_of({0}), none = param_of({0});
  set_grad(a, {3, 4});
  set_grad(b, {12});
  double total = optim::clip_grad_norm_({a, b, none}, 6.5);
  EXPECT_DOUBLE_EQ(total, 13.0);  // sqrt(9 + 16 + 144)
  const double c = 6.5 / (13.0 + 1e-6);
  expect_near(a.grad().to_vector<double>(), {3 * c, 4 * c}, 1e-15);
  expect_near(b.grad().to_vector<double>(), {12 * c}, 1e-15);
  EXPECT_FALSE(none.grad().defined());

  // Below the limit nothing changes.
  set_grad(a, {3, 4});
  set_grad(b, {12});
  EXPECT_DOUBLE_EQ(optim::clip_grad_norm_({a, b}, 100.0), 13.0);
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{3, 4}));
}

TEST(ClipGrad, OtherNormsAndFloat32) {
  Tensor a = param_of({0, 0}, f32), b = param_of({0}, f32);
  set_grad(a, {3, -4});
  set_grad(b, {-12});
  EXPECT_NEAR(optim::clip_grad_norm_({a, b}, 1000.0, 1.0), 19.0, 1e-6);
  double total = optim::clip_grad_norm_({a, b}, 6.0, std::numeric_limits<double>::infinity());
  EXPECT_EQ(total, 12.0);
  EXPECT_NEAR(b.grad().item<double>(), -12.0 * 6.0 / (12.0 + 1e-6), 1e-6);
  set_grad(a, {1, 2});
  set_grad(b, {2});
  EXPECT_NEAR(optim::clip_grad_norm_({a, b}, 1000.0, 3.0), std::cbrt(17.0), 1e-6);
}

TEST(ClipGrad, NonFiniteTotalIsReturnedAndGradientsLeftAlone) {
  Tensor a = param_of({0, 0}), b = param_of({0});
  set_grad(a, {std::nan(""), 1.0});
  set_grad(b, {12});
  EXPECT_TRUE(std::isnan(optim::clip_grad_norm_({a, b}, 1.0)));
  EXPECT_EQ(b.grad().item<double>(), 12.0);
  EXPECT_TRUE(std::isnan(optim::clip_grad_norm_({a, b}, 1.0, std::numeric_limits<double>::infinity())));
  set_grad(a, {std::numeric_limits<double>::infinity(), 1.0});
  EXPECT_TRUE(std::isinf(optim::clip_grad_norm_({a, b}, 1.0)));
  EXPECT_EQ(b.grad().item<double>(), 12.0);
  EXPECT_EQ(optim::clip_grad_norm_({param_of({1.0})}, 1.0), 0.0);  // no gradients at all
}

}  // namespace
}  // namespace nn

namespace {

TEST(WarmupCosineLR, LinearWarmupThenCosineToTheFloor) {
  nn::Tensor p = nn::zeros({2}).requires_grad_(true);
  nn::optim::SGD sgd({p}, 0.1);
  nn::optim::WarmupCosineLR sched(sgd, 4, 14, 0.001);
  const double pi = 3.14159265358979323846;
  for (int64_t t = 0; t <= 16; ++t) {
    const double want = t < 4 ? 0.1 * (t + 1) / 4.0
                              : 0.001 + 0.099 * (1 + std::cos(pi * std::min(1.0, (t - 4) / 10.0))) / 2;
    EXPECT_NEAR(sgd.lr(), want, 1e-15) << "step " << t;
    sched.step();
  }
  // The state round-trips.
  nn::optim::SGD other({p}, 0.1);
  nn::optim::WarmupCosineLR again(other, 1, 2);
  again.load_state_dict(sched.state_dict());
  EXPECT_EQ(again.last_epoch(), sched.last_epoch());
  EXPECT_THROW(nn::optim::WarmupCosineLR(sgd, 5, 5), nn::Error);
}

}  // namespace
