#include "exec/train/fused_optimizer.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include <ATen/ATen.h>
#include <torch/optim/optimizer.h>

#include "core/util/error.h"

namespace zp::exec {
namespace {

OptimizerSpec adamw() {
  OptimizerSpec o;
  o.kind = OptimizerKind::kAdamW;
  o.lr = 1e-2;
  o.weight_decay = 0.1;
  o.beta1 = 0.8;
  o.beta2 = 0.95;
  o.eps = 1e-6;
  return o;
}

OptimizerSpec sgd(double momentum) {
  OptimizerSpec o;
  o.kind = OptimizerKind::kSgd;
  o.lr = 0.05;
  o.momentum = momentum;
  o.weight_decay = 0.01;
  return o;
}

// Steps the same parameters with torch::optim and with FusedOptimizer, the same random gradients
// each step (an undefined one where `skip(step, i)`), and returns the largest difference.
template <typename Skip>
double largest_difference(const OptimizerSpec& spec, at::ScalarType dtype, int steps, Skip skip) {
  at::manual_seed(3);
  // Sizes around at::parallel_for's grain, so that a tensor is split among threads.
  const std::vector<std::int64_t> sizes = {7, 1000, 40000, 70001};
  std::vector<at::Tensor> theirs, ours;
  for (const std::int64_t n : sizes) {
    theirs.push_back(at::randn({n}, at::TensorOptions().dtype(dtype)).requires_grad_());
    ours.push_back(theirs.back().detach().clone());
  }
  const std::unique_ptr<torch::optim::Optimizer> reference = make_optimizer(spec, theirs);
  FusedOptimizer fused(spec);
  for (int step = 0; step < steps; ++step) {
    std::vector<at::Tensor> grads;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      at::Tensor g = at::randn({sizes[i]}, at::TensorOptions().dtype(dtype));
      if (skip(step, i)) g = at::Tensor();
      theirs[i].mutable_grad() = g.defined() ? g.clone() : at::Tensor();
      grads.push_back(g);
    }
    reference->step();
    fused.step(ours, grads);
  }
  double worst = 0.0;
  for (std::size_t i = 0; i < sizes.size(); ++i)
    worst = std::max(worst, (theirs[i].detach() - ours[i]).abs().max().item<double>());
  return worst;
}

double largest_difference(const OptimizerSpec& spec, at::ScalarType dtype) {
  return largest_difference(spec, dtype, 6, [](int, std::size_t) { return false; });
}

// fp32 on the CPU takes the one-pass loop; doubles torch's element-wise chain. Both must step as
// torch::optim does: fp32 to its rounding, doubles to theirs.
TEST(FusedOptimizer, AdamWStepsAsTorchOptimDoes) {
  EXPECT_LT(largest_difference(adamw(), at::kFloat), 1e-5);
  EXPECT_LT(largest_difference(adamw(), at::kDouble), 1e-12);
}

TEST(FusedOptimizer, AdamWWithoutWeightDecayStepsAsTorchOptimDoes) {
  OptimizerSpec o = adamw();
  o.weight_decay = 0.0;
  EXPECT_LT(largest_difference(o, at::kFloat), 1e-5);
  EXPECT_LT(largest_difference(o, at::kDouble), 1e-12);
}

TEST(FusedOptimizer, SgdWithMomentumStepsAsTorchOptimDoes) {
  EXPECT_LT(largest_difference(sgd(0.9), at::kFloat), 1e-5);
  EXPECT_LT(largest_difference(sgd(0.9), at::kDouble), 1e-12);
}

TEST(FusedOptimizer, SgdWithoutMomentumStepsAsTorchOptimDoes) {
  EXPECT_LT(largest_difference(sgd(0.0), at::kFloat), 1e-5);
  EXPECT_LT(largest_difference(sgd(0.0), at::kDouble), 1e-12);
}

// A parameter without a gradient is left alone, and its steps (AdamW's bias correction, SGD's
// first momentum) are counted apart from the others'.
TEST(FusedOptimizer, AParameterWithoutAGradientKeepsItsOwnCount) {
  const auto skip = [](int step, std::size_t i) { return i == 1 && step < 2; };
  EXPECT_LT(largest_difference(adamw(), at::kFloat, 5, skip), 1e-5);
  EXPECT_LT(largest_difference(adamw(), at::kDouble, 5, skip), 1e-12);
  EXPECT_LT(largest_difference(sgd(0.9), at::kDouble, 5, skip), 1e-12);
}

// The differences above are small because the arithmetic is the same, not because nothing moved.
TEST(FusedOptimizer, AStepMovesTheParameters) {
  at::Tensor p = at::zeros({5});
  FusedOptimizer fused(adamw());
  fused.step({p}, {at::ones({5})});
  // AdamW's first step moves each element by lr against the gradient's sign.
  EXPECT_NEAR(p[0].item<double>(), -1e-2, 1e-6);
}

TEST(FusedOptimizer, RefusesAGradientOfAnotherSize) {
  FusedOptimizer fused(adamw());
  EXPECT_THROW(fused.step({at::zeros({5})}, {at::ones({4})}), InternalError);
  FusedOptimizer other(adamw());
  other.step({at::zeros({5})}, {at::ones({5})});
  EXPECT_THROW(other.step({at::zeros({5}), at::zeros({2})}, {at::ones({5}), at::ones({2})}),
               InternalError);
}

}  // namespace
}  // namespace zp::exec
