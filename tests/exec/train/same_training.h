// The correctness criterion every distributed trainer is held to: after the same steps on the
// same global batches, its losses and parameters equal plain single-process training's
// (train_reference) within a relative error of 1e-5.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/model/module_tree.h"
#include "exec/train/reference_trainer.h"

namespace zp::exec::testing {

inline OptimizerSpec test_sgd() {
  return OptimizerSpec{.kind = OptimizerKind::kSgd, .lr = 0.1, .momentum = 0.9};
}

inline OptimizerSpec test_adamw() {
  return OptimizerSpec{.kind = OptimizerKind::kAdamW, .lr = 3e-3, .weight_decay = 0.01};
}

inline double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    diff += std::pow(static_cast<double>(got[i]) - want[i], 2);
    norm += std::pow(static_cast<double>(want[i]), 2);
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

// `losses` per step and `parameters` by ParamId, against `want`. GPT-2's attention biases are
// held to `attention_bias_tolerance`; every other parameter to 1e-5.
inline void expect_same_training(const ModuleTree& tree, const OptimizerSpec& optimizer,
                                 const ReferenceResult& want, const std::vector<double>& losses,
                                 const std::vector<std::vector<float>>& parameters,
                                 double attention_bias_tolerance = 1e-5) {
  ASSERT_EQ(losses.size(), want.losses.size());
  for (std::size_t s = 0; s < want.losses.size(); ++s)
    EXPECT_NEAR(losses[s], want.losses[s], 1e-5 * std::abs(want.losses[s])) << "step " << s;
  // The model learned something, so equal parameters are not equal initial values.
  EXPECT_LT(want.losses.back(), want.losses.front());
  ASSERT_EQ(parameters.size(), want.parameters.size());
  for (std::size_t p = 0; p < want.parameters.size(); ++p) {
    const std::string& name = tree.parameter(static_cast<ParamId>(p)).name;
    ASSERT_EQ(parameters[p].size(), want.parameters[p].size()) << "parameter " << name;
    std::vector<float> g = parameters[p], w = want.parameters[p];
    const bool attention_bias = name.ends_with("attn.c_attn.bias");
    // The key bias of GPT-2's attention has a gradient of exactly zero in exact arithmetic
    // (softmax ignores a shift shared by every key), so what it gets is rounding noise, which
    // AdamW normalises into full-size steps: no two summation orders agree on it.
    if (optimizer.kind == OptimizerKind::kAdamW && attention_bias) {
      const std::size_t h = g.size() / 3;
      std::fill(g.begin() + static_cast<std::ptrdiff_t>(h),
                g.begin() + static_cast<std::ptrdiff_t>(2 * h), 0.0f);
      std::fill(w.begin() + static_cast<std::ptrdiff_t>(h),
                w.begin() + static_cast<std::ptrdiff_t>(2 * h), 0.0f);
    }
    EXPECT_LT(relative_error(g, w), attention_bias ? attention_bias_tolerance : 1e-5)
        << "parameter " << p << " " << name;
  }
}

}  // namespace zp::exec::testing
